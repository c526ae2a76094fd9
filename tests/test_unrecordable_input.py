"""Input that no record can hold is the client's error (400), never an outage
(503 + Retry-After, which tells clients to retry forever)."""

import logging
from typing import Any

import pytest
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord
from tests.factories import api_client
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db


def _post(client: APIClient, path: str, key: str | None = "nul-1", **extra: Any) -> Any:
    headers: dict[str, Any] = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(path, {"amount": 1}, format="json", **headers, **extra)


def test_a_nul_byte_in_the_path_is_a_400_problem_and_runs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="django_idempotency")
    client = api_client()
    response = _post(client, "/items/a%00b/")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_request_unrecordable"
    assert "Retry-After" not in response
    assert Payment.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_same_path_without_a_key_runs_the_view() -> None:
    response = _post(api_client(), "/items/a%00b/", key=None)
    assert response.status_code == 201


def test_a_normal_path_on_the_same_route_is_recorded() -> None:
    client = api_client()
    first = _post(client, "/items/ab/", key="nul-2")
    replay = _post(client, "/items/ab/", key="nul-2")
    assert first.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_a_scope_callable_returning_a_nul_is_not_reported_as_an_outage() -> None:
    response = _post(api_client(), "/nul-scope/", key="nul-3")
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_request_unrecordable"
    assert Payment.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_path_the_records_table_character_set_cannot_hold_is_a_400_on_mariadb(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from django.db import connection

    if connection.vendor != "mysql":
        pytest.skip("a column's own character set is a MySQL/MariaDB matter")
    table = IdempotencyRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW FULL COLUMNS FROM {table} LIKE 'path'")
        _, column_type, collation, *_ = cursor.fetchone()
        # A table created under a latin1 server default (the column is
        # declared without a character set of its own).
        cursor.execute(
            f"ALTER TABLE {table} MODIFY path {column_type} CHARACTER SET latin1 NOT NULL"
        )
    try:
        client = api_client()
        refused = _post(client, "/items/%D0%B6/", key="latin1-1")
        recorded = _post(client, "/items/ab/", key="latin1-2")
    finally:
        charset = collation.split("_")[0]
        with connection.cursor() as cursor:
            cursor.execute(
                f"ALTER TABLE {table} MODIFY path {column_type} "
                f"CHARACTER SET {charset} COLLATE {collation} NOT NULL"
            )

    assert refused.status_code == 400
    assert refused.json()["code"] == "idempotency_request_unrecordable"
    assert "Retry-After" not in refused
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert recorded.status_code == 201
    assert Payment.objects.count() == 1  # the refused request ran nothing
