"""Option ``wait`` in one process: its validation, and what it costs a
request that does not wait (the waiting itself is tested over real processes
in tests/concurrency/test_wait.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from django_idempotency import conf, idempotent
from django_idempotency.models import IdempotencyRecord
from tests.helpers import post

_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START TRANSACTION")


def _statements(
    client: APIClient, url: str, data: Any = None, **kwargs: Any
) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connections[conf.get_settings().database]) as captured:
        response = post(client, url, data, **kwargs)
    sql = [q["sql"] for q in captured.captured_queries]
    return response, [s for s in sql if not s.lstrip().upper().startswith(_CONTROL)]


@pytest.mark.parametrize("value", [0, 0.0, timedelta(0), 2, 2.5, timedelta(seconds=30)])
def test_wait_accepts_zero_and_durations_shorter_than_lock_timeout(value: Any) -> None:
    idempotent(wait=value)


@pytest.mark.parametrize("value", [-1, "5", True, None, timedelta(seconds=-1)])
def test_wait_refuses_what_is_not_a_duration(value: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match="'wait'"):
        idempotent(wait=value)


@pytest.mark.parametrize("value", [-1, -0.5, timedelta(seconds=-1)])
def test_a_negative_wait_is_told_that_zero_is_allowed(value: Any) -> None:
    with pytest.raises(
        ImproperlyConfigured, match=r"must be 0 \(do not wait\) or longer than zero"
    ):
        idempotent(wait=value)


@pytest.mark.parametrize("wait", [60, 61])
def test_wait_must_be_shorter_than_lock_timeout(wait: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"'wait'.*'lock_timeout'"):
        idempotent(wait=wait, lock_timeout=60)


def test_wait_in_the_setting_is_checked_against_lock_timeout_too() -> None:
    with (
        override_settings(IDEMPOTENCY={"WAIT": 5, "LOCK_TIMEOUT": 5}),
        pytest.raises(ImproperlyConfigured, match="'wait'"),
    ):
        conf.get_settings()
    with override_settings(IDEMPOTENCY={"WAIT": 5}):
        assert conf.get_settings().view_defaults["wait"] == timedelta(seconds=5)


@pytest.mark.parametrize("value", [0, "", ["other"]])
def test_listen_database_must_be_an_alias_none_or_false(value: Any) -> None:
    with (
        override_settings(IDEMPOTENCY={"LISTEN_DATABASE": value}),
        pytest.raises(ImproperlyConfigured, match="LISTEN_DATABASE"),
    ):
        conf.get_settings()


@pytest.mark.django_db
def test_a_first_request_that_may_be_waited_for_costs_no_extra_statement(
    client: APIClient,
) -> None:
    _, without = _statements(client, "/options/replay-status/", key="k1")
    response, sql = _statements(client, "/options/wait/", key="k2")

    assert response.status_code == 201
    assert len(sql) == len(without)
    notifying = [s for s in sql if "pg_notify" in s]
    if connections["default"].vendor == "postgresql":
        # Folded into the statement that stores the response.
        assert len(notifying) == 1 and "UPDATE" in notifying[0]
    else:
        assert notifying == []


@pytest.mark.django_db
def test_a_released_first_request_that_may_be_waited_for_costs_no_extra_statement(
    client: APIClient,
) -> None:
    _, without = _statements(client, "/options/replay-status/", {"amount": "x"}, key="k1")
    response, sql = _statements(client, "/options/wait/", {"amount": "x"}, key="k2")

    assert response.status_code == 400
    assert len(sql) == len(without)
    assert not IdempotencyRecord.objects.filter(key="k2").exists()


@pytest.mark.django_db(transaction=True)
def test_postgresql_tells_listeners_when_the_response_is_stored(client: APIClient) -> None:
    connection = connections["default"]
    if connection.vendor != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's")
    params = connection.get_connection_params()
    params.pop("context", None), params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute("LISTEN idempotency")
        response = post(client, "/options/wait/", key="told")
        assert response.status_code == 201
        heard = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]

    assert heard == [IdempotencyRecord.objects.get(key="told").lookup_hash]
