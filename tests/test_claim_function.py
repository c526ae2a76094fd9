"""The claim on PostgreSQL: a call of the newest function the migrations
created (0005: version 2, 0004: version 1), and the same behaviour from the
plain statement where no function is there (a database created without
migrations, or migrated back while a process runs)."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from django_idempotency import conf, store
from tests.factories import RecordFactory
from tests.helpers import assert_problem, fingerprint_for, post
from tests.testapp.models import Payment

_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def records() -> BaseDatabaseWrapper:
    return connections[conf.get_settings().database]


@pytest.fixture(autouse=True)
def _postgresql_only(db: None) -> Iterator[None]:
    if records().vendor != "postgresql":
        pytest.skip("the claim function exists on PostgreSQL only")
    store.forget_claim_function()
    yield
    store.forget_claim_function()


def sent(client: APIClient, key: str, data: Any = None) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(records()) as captured:
        response = post(client, "/function/", data, key=key)
    sql = [q["sql"] for q in captured.captured_queries]
    return response, [s for s in sql if not s.lstrip().upper().startswith(_CONTROL)]


V1 = "django_idempotency_claim_v1"
V2 = "django_idempotency_claim_v2"


def claims(sql: list[str]) -> list[str]:
    return [s for s in sql if "_claim_v" in s or s.startswith("WITH ins")]


def called(sql: list[str]) -> list[str]:
    """What each claim statement is: a function's name, or "WITH ins"."""
    return [
        "WITH ins" if s.startswith("WITH ins") else s.split("(")[0].removeprefix("SELECT * FROM ")
        for s in claims(sql)
    ]


def function_exists(name: str) -> bool:
    with records().cursor() as cursor:
        cursor.execute("SELECT to_regproc(%s) IS NOT NULL", [name])
        return bool(cursor.fetchone()[0])


def drop_function(name: str) -> None:
    with records().cursor() as cursor:
        cursor.execute(f"DROP FUNCTION {name}")


def test_the_migrations_create_both_functions() -> None:
    assert function_exists(V1) and function_exists(V2)


@pytest.mark.parametrize(
    ("dropped", "claimed_by"),
    [((), V2), ((V2,), V1), ((V2, V1), "WITH ins")],
    ids=["migrated", "migrated to 0004 only", "no function"],
)
def test_the_claim_goes_through_the_newest_function_there_with_the_same_answers(
    client: APIClient, dropped: tuple[str, ...], claimed_by: str
) -> None:
    # Versions 1 and 2 read and write in another order, and the statement
    # form is another text again: what a request gets must not depend on
    # which of them its database has.
    for name in dropped:
        drop_function(name)  # rolled back with the test's transaction
    RecordFactory(
        key="running",
        running=True,
        fingerprint=fingerprint_for("/function/", {"amount": 7}),
    )

    first, first_sql = sent(client, "k")
    replay, replay_sql = sent(client, "k")
    other, other_sql = sent(client, "k", {"amount": 11})
    running, running_sql = sent(client, "running", {"amount": 7})

    assert first.status_code == 201
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert_problem(other, 422, "idempotency_key_reused")
    assert_problem(running, 409, "idempotency_request_in_progress")
    for sql in (first_sql, replay_sql, other_sql, running_sql):
        assert called(sql) == [claimed_by]
    assert len(replay_sql) == len(other_sql) == len(running_sql) == 1
    assert Payment.objects.count() == 1


def test_the_probe_for_the_function_is_not_counted_as_a_statement(client: APIClient) -> None:
    _, probed = sent(client, "k1")  # the process's first claim asks
    _, known = sent(client, "k2")

    assert len(probed) == len(known)
    assert not [s for s in probed if "to_regprocedure" in s]


@pytest.mark.django_db(transaction=True)
def test_a_function_gone_while_the_process_runs_fails_no_request(client: APIClient) -> None:
    assert sent(client, "before")[0].status_code == 201  # the process now knows the function
    call_command("migrate", "django_idempotency", "0003", verbosity=0)
    try:
        assert not function_exists(V1) and not function_exists(V2)

        response, _ = sent(client, "after")
        again, again_sql = sent(client, "after")

        assert response.status_code == 201
        assert again["Idempotent-Replayed"] == "true"
        assert [s[:8] for s in claims(again_sql)] == ["WITH ins"]  # asked once, not again
        assert Payment.objects.count() == 2
    finally:
        call_command("migrate", "django_idempotency", verbosity=0)
    assert function_exists(V2)
    store.forget_claim_function()
    assert called(sent(client, "migrated")[1]) == [V2]


@pytest.mark.django_db(transaction=True)
def test_migrating_back_to_the_first_function_while_the_process_runs_fails_no_request(
    client: APIClient,
) -> None:
    assert called(sent(client, "before")[1]) == [V2]  # the process now knows version 2
    call_command("migrate", "django_idempotency", "0004", verbosity=0)
    try:
        assert function_exists(V1) and not function_exists(V2)

        response, during = sent(client, "after")  # version 2 is gone: the statement instead
        again, again_sql = sent(client, "after")  # asked again: version 1 is there

        assert response.status_code == 201
        assert called(during) == [V2, "WITH ins"]  # the call that failed, then the statement
        assert again["Idempotent-Replayed"] == "true" and called(again_sql) == [V1]
        assert Payment.objects.count() == 2
    finally:
        call_command("migrate", "django_idempotency", verbosity=0)
    assert function_exists(V2)
