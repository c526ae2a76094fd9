"""Guarantee 2: a duplicate is answered while the first request still runs,
not after it, in atomic mode and under ATOMIC_REQUESTS too (PostgreSQL and
MySQL/MariaDB; SQLite has one writer, see docs/concurrency.md)."""

import os
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.testapp.models import Payment

from .conftest import ServerFactory
from .helpers import Background, wait_for_claim

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

MODES = [
    pytest.param("plain/", {}, id="plain"),
    pytest.param("atomic/", {}, id="atomic"),
    pytest.param("plain/", {"SERVER_ATOMIC_REQUESTS": "1"}, id="plain+ATOMIC_REQUESTS"),
    pytest.param("atomic/", {"SERVER_ATOMIC_REQUESTS": "1"}, id="atomic+ATOMIC_REQUESTS"),
    pytest.param("plain/", {"SERVER_LOCK": "cache"}, id="plain+redis"),
    pytest.param("async-plain/", {"SERVER_ASGI": "1"}, id="async"),
    pytest.param("async-atomic/", {"SERVER_ASGI": "1"}, id="async-atomic"),
]


@pytest.mark.parametrize(("path", "env"), MODES)
def test_duplicate_is_answered_while_the_first_request_runs(
    server_factory: ServerFactory, path: str, env: dict[str, Any], tmp_path: Path
) -> None:
    if env.get("SERVER_LOCK") and os.environ.get("IDEMPOTENCY_TEST_REDIS_AVAILABLE") == "0":
        pytest.skip("Redis is not reachable")
    if connection.vendor == "sqlite" and ("atomic" in path or "SERVER_ATOMIC_REQUESTS" in env):
        pytest.skip("SQLite has one writer: duplicates wait for a writing transaction")
    server = server_factory(**env)
    key = f"slow-{path.strip('/')}-{len(env)}"
    release = tmp_path / "release"
    first = Background(lambda: server.post(path, key, headers={"X-Hold": str(release)}))
    wait_for_claim(key)

    duplicate = server.post(path, key)
    assert first.running, "the duplicate was only answered after the first request finished"
    assert duplicate.status_code == 409
    assert duplicate.headers["Content-Type"] == "application/problem+json"
    assert duplicate.json()["code"] == "idempotency_request_in_progress"
    assert duplicate.headers["Retry-After"]

    # Rule 7: another body while the first runs is a reuse, not "in progress".
    other_body = server.post(path, key, json={"amount": 99})
    assert first.running
    assert other_body.status_code == 422
    assert other_body.json()["code"] == "idempotency_key_reused"

    release.touch()
    original = first.result()
    assert original.status_code == 201
    retry = server.post(path, key)
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == original.json()
    assert retry.headers["X-Request-Id"] == original.headers["X-Request-Id"]
    assert Payment.objects.filter(reference=key).count() == 1
