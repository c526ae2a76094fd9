"""The claim on PostgreSQL: a call of the function migration 0004 creates,
and the same behaviour from the plain statement where the function is missing
(a database created without migrations, or migrated back while a process runs)."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from django_idempotency import conf, store
from tests.helpers import assert_problem, post
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


def claims(sql: list[str]) -> list[str]:
    return [s for s in sql if "_claim_v1(" in s or s.startswith("WITH ins")]


def function_exists() -> bool:
    with records().cursor() as cursor:
        cursor.execute("SELECT to_regproc('django_idempotency_claim_v1') IS NOT NULL")
        return bool(cursor.fetchone()[0])


def drop_function() -> None:
    with records().cursor() as cursor:
        cursor.execute("DROP FUNCTION django_idempotency_claim_v1")


def test_the_migration_creates_the_function_and_the_claim_calls_it(client: APIClient) -> None:
    assert function_exists()

    first, first_sql = sent(client, "k")
    replay, replay_sql = sent(client, "k")
    other, other_sql = sent(client, "k", {"amount": 11})

    assert first.status_code == 201
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert_problem(other, 422, "idempotency_key_reused")
    for sql in (first_sql, replay_sql, other_sql):
        assert [s.split("(")[0] for s in claims(sql)] == [
            "SELECT * FROM django_idempotency_claim_v1"
        ]
    assert len(replay_sql) == len(other_sql) == 1
    assert Payment.objects.count() == 1


def test_without_the_function_the_claim_is_one_statement_with_the_same_answers(
    client: APIClient,
) -> None:
    drop_function()  # rolled back with the test's transaction

    first, first_sql = sent(client, "k")
    replay, replay_sql = sent(client, "k")
    other, other_sql = sent(client, "k", {"amount": 11})

    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()
    assert_problem(other, 422, "idempotency_key_reused")
    for sql in (first_sql, replay_sql, other_sql):
        assert [s[:8] for s in claims(sql)] == ["WITH ins"]
    assert len(replay_sql) == len(other_sql) == 1
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
        assert not function_exists()

        response, _ = sent(client, "after")
        again, again_sql = sent(client, "after")

        assert response.status_code == 201
        assert again["Idempotent-Replayed"] == "true"
        assert [s[:8] for s in claims(again_sql)] == ["WITH ins"]  # asked once, not again
        assert Payment.objects.count() == 2
    finally:
        call_command("migrate", "django_idempotency", verbosity=0)
    assert function_exists()
    store.forget_claim_function()
    assert sent(client, "migrated")[1][0].startswith("SELECT * FROM django_idempotency_claim_v1")
