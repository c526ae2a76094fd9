"""Guarantee 5: database errors while claiming answer 503 and the view does
not run; errors while storing never replay what was not stored and never run
again what the database already committed.

The errors are real: a trigger on the records table, switched on by a row in
a side table, makes the database itself refuse the claim or the store.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord, State
from tests.factories import api_client
from tests.helpers import postgres_admin_connection
from tests.testapp.models import Payment

from .conftest import ServerFactory
from .helpers import Background, wait_for_claim, wait_for_lock_expiry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.concurrency.urls")]

TABLE = "django_idempotency_idempotencyrecord"

DDL = {
    "postgresql": [
        "CREATE TABLE idem_fail (what varchar(10) PRIMARY KEY)",
        """CREATE FUNCTION idem_fail_fn() RETURNS trigger AS $$
        BEGIN
          IF TG_OP = 'INSERT' AND EXISTS (SELECT 1 FROM idem_fail WHERE what = 'claim') THEN
            RAISE EXCEPTION 'claim refused by the test';
          END IF;
          IF TG_OP = 'UPDATE' AND NEW.state = 'completed'
             AND EXISTS (SELECT 1 FROM idem_fail WHERE what = 'store') THEN
            RAISE EXCEPTION 'store refused by the test';
          END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql""",
        f"CREATE TRIGGER idem_fail_trg BEFORE INSERT OR UPDATE ON {TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION idem_fail_fn()",
    ],
    "mysql": [
        "CREATE TABLE idem_fail (what varchar(10) PRIMARY KEY)",
        f"""CREATE TRIGGER idem_fail_ins BEFORE INSERT ON {TABLE} FOR EACH ROW BEGIN
          IF EXISTS (SELECT 1 FROM idem_fail WHERE what = 'claim') THEN
            SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'claim refused by the test';
          END IF;
        END""",
        f"""CREATE TRIGGER idem_fail_upd BEFORE UPDATE ON {TABLE} FOR EACH ROW BEGIN
          IF NEW.state = 'completed' AND EXISTS (SELECT 1 FROM idem_fail WHERE what = 'store') THEN
            SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'store refused by the test';
          END IF;
        END""",
    ],
    "sqlite": [
        "CREATE TABLE idem_fail (what varchar(10) PRIMARY KEY)",
        f"""CREATE TRIGGER idem_fail_ins BEFORE INSERT ON {TABLE}
        WHEN EXISTS (SELECT 1 FROM idem_fail WHERE what = 'claim')
        BEGIN SELECT RAISE(ABORT, 'claim refused by the test'); END""",
        f"""CREATE TRIGGER idem_fail_upd BEFORE UPDATE ON {TABLE}
        WHEN NEW.state = 'completed' AND EXISTS (SELECT 1 FROM idem_fail WHERE what = 'store')
        BEGIN SELECT RAISE(ABORT, 'store refused by the test'); END""",
    ],
}
DROP = {
    "postgresql": [
        f"DROP TRIGGER IF EXISTS idem_fail_trg ON {TABLE}",
        "DROP FUNCTION IF EXISTS idem_fail_fn()",
        "DROP TABLE IF EXISTS idem_fail",
    ],
    "mysql": [
        "DROP TRIGGER IF EXISTS idem_fail_ins",
        "DROP TRIGGER IF EXISTS idem_fail_upd",
        "DROP TABLE IF EXISTS idem_fail",
    ],
    "sqlite": [
        "DROP TRIGGER IF EXISTS idem_fail_ins",
        "DROP TRIGGER IF EXISTS idem_fail_upd",
        "DROP TABLE IF EXISTS idem_fail",
    ],
}


class Failures:
    def _run(self, sql: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql)

    def on(self, what: str) -> None:
        self._run(f"INSERT INTO idem_fail (what) VALUES ('{what}')")

    def off(self) -> None:
        self._run("DELETE FROM idem_fail")


@pytest.fixture
def failures() -> Iterator[Failures]:
    with connection.cursor() as cursor:
        for sql in DROP[connection.vendor]:
            cursor.execute(sql)
        for sql in DDL[connection.vendor]:
            cursor.execute(sql)
    yield Failures()
    with connection.cursor() as cursor:
        for sql in DROP[connection.vendor]:
            cursor.execute(sql)


def post(client: APIClient, path: str, key: str) -> Any:
    return client.post(f"/{path}", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.parametrize("path", ["plain/", "atomic/"])
def test_claim_error_answers_503_and_does_not_run_the_view(failures: Failures, path: str) -> None:
    client = api_client()
    failures.on("claim")
    response = post(client, path, "claim-fails")
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert Payment.objects.filter(reference="claim-fails").count() == 0
    assert not IdempotencyRecord.objects.filter(key="claim-fails").exists()

    failures.off()
    retry = post(client, path, "claim-fails")
    assert retry.status_code == 201
    assert Payment.objects.filter(reference="claim-fails").count() == 1


def test_store_error_in_atomic_mode_keeps_nothing_and_the_retry_runs_once(
    failures: Failures,
) -> None:
    client = api_client()
    failures.on("store")
    response = post(client, "atomic/", "store-fails-atomic")
    assert response.status_code == 503
    assert response.json()["code"] == "idempotency_unavailable"
    assert Payment.objects.filter(reference="store-fails-atomic").count() == 0
    assert not IdempotencyRecord.objects.filter(key="store-fails-atomic").exists()

    failures.off()
    retry = post(client, "atomic/", "store-fails-atomic")
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry.headers
    assert Payment.objects.filter(reference="store-fails-atomic").count() == 1


def test_store_error_outside_atomic_mode_keeps_the_key_locked(failures: Failures) -> None:
    client = api_client()
    key = "store-fails-plain"
    failures.on("store")
    response = post(client, "plain/", key)
    # The operation happened: the client gets its real answer, nothing is replayed later.
    assert response.status_code == 201
    assert Payment.objects.filter(reference=key).count() == 1
    assert IdempotencyRecord.objects.get(key=key).state == State.IN_PROGRESS

    failures.off()
    retry = post(client, "plain/", key)
    assert retry.status_code == 409  # not a second execution
    assert Payment.objects.filter(reference=key).count() == 1

    # The documented window: once lock_timeout passes, the claim counts as
    # abandoned and a retry runs the view again (docs/concurrency.md).
    wait_for_lock_expiry(key)
    late = post(client, "plain/", key)
    assert late.status_code == 201
    assert Payment.objects.filter(reference=key).count() == 2


@pytest.mark.processes
def test_a_connection_lost_before_the_claim_is_replaced_and_the_view_runs_once(
    server_factory: ServerFactory,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("terminating a server-side session is shown on PostgreSQL")
    server = server_factory(workers=1, SERVER_CONN_MAX_AGE="1")
    assert server.post("plain/", "warm-up").status_code == 201  # a persistent connection
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    # The worker's connection is dead; the claim is tried again on a new one.
    response = server.post("plain/", "connection-lost")
    assert response.status_code == 201
    assert Payment.objects.filter(reference="connection-lost").count() == 1
    retry = server.post("plain/", "connection-lost")
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert Payment.objects.filter(reference="connection-lost").count() == 1


@pytest.mark.processes
def test_a_claim_answers_503_when_the_database_stays_away(server_factory: ServerFactory) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("refusing connections to one database is shown on PostgreSQL")
    server = server_factory(workers=1, SERVER_CONN_MAX_AGE="1")
    assert server.post("plain/", "warm-up").status_code == 201  # a persistent connection
    name = connection.ops.quote_name(connection.settings_dict["NAME"])
    connection.ensure_connection()
    ours = connection.connection.info.backend_pid  # the test's own connection stays
    with postgres_admin_connection() as admin:
        admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> %s",
                [connection.settings_dict["NAME"], ours],
            )
            response = server.post("plain/", "database-away")
        finally:
            admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
    assert response.status_code == 503
    assert response.json()["code"] == "idempotency_unavailable"
    # Django drops the broken connection at the end of that request.
    retry = server.post("plain/", "database-away")
    assert retry.status_code == 201
    assert Payment.objects.filter(reference="database-away").count() == 1


@pytest.mark.processes
def test_atomic_mode_answers_503_when_the_database_goes_away_during_the_view(
    server_factory: ServerFactory,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("terminating a server-side session is shown on PostgreSQL")
    server = server_factory(workers=1, SERVER_CONN_MAX_AGE="1")
    assert server.post("atomic/", "atomic-warm-up").status_code == 201
    key = "atomic-outage"
    slow = Background(lambda: server.post("atomic/", key, headers={"X-Sleep": "1.5"}))
    wait_for_claim(key)
    # The view's writes are in its open transaction; now the database goes
    # away for the worker: its session dies and new connections are refused.
    db = connection.settings_dict
    name = connection.ops.quote_name(db["NAME"])
    admin = postgres_admin_connection()
    try:
        admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> %s",
            [db["NAME"], connection.connection.info.backend_pid],
        )
        response = slow.result()
    finally:
        admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
        admin.close()
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_unavailable"
    assert "Retry-After" in response.headers
    assert Payment.objects.filter(reference=key).count() == 0  # rolled back with the session
    # The release could not reach the database either: the claim stays until
    # lock_timeout, and until then a retry is told to wait, never run.
    early = server.post("atomic/", key)
    assert early.status_code == 409
    assert "Retry-After" in early.headers
    assert Payment.objects.filter(reference=key).count() == 0
    wait_for_lock_expiry(key)
    retry = server.post("atomic/", key)
    assert retry.status_code == 201
    assert Payment.objects.filter(reference=key).count() == 1
