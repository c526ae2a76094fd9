"""Guarantee 1 of docs/concurrency.md: N identical requests that arrive at once
on separate worker processes run the view exactly once."""

import os
from typing import Any

import pytest

from django_idempotency.models import IdempotencyRecord
from tests.testapp.models import Payment

from .conftest import SHARDS, ServerFactory

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

ROUNDS = 10
CONCURRENT = 20


@pytest.mark.parametrize(
    ("path", "env"),
    [
        pytest.param("plain/", {}, id="plain"),
        pytest.param("atomic/", {}, id="atomic"),
        pytest.param("plain/", {"SERVER_LOCK": "cache"}, id="plain+redis"),
        pytest.param("atomic/", {"SERVER_LOCK": "cache"}, id="atomic+redis"),
        # adrf async views under uvicorn's worker processes.
        pytest.param("async-plain/", {"SERVER_ASGI": "1"}, id="async"),
        pytest.param("async-atomic/", {"SERVER_ASGI": "1"}, id="async-atomic"),
        pytest.param(
            "async-plain/", {"SERVER_ASGI": "1", "SERVER_LOCK": "cache"}, id="async+redis"
        ),
    ],
)
def test_simultaneous_duplicates_run_the_view_once(
    server_factory: ServerFactory, path: str, env: dict[str, Any]
) -> None:
    if env.get("SERVER_LOCK") and os.environ.get("IDEMPOTENCY_TEST_REDIS_AVAILABLE") == "0":
        pytest.skip("Redis is not reachable")
    server = server_factory(**env)
    for round_ in range(ROUNDS):
        key = f"race-{path.strip('/')}-{len(env)}-{round_}"
        responses = server.fire(path, key, CONCURRENT, headers={"X-Sleep": "0.3"})

        assert Payment.objects.filter(reference=key).count() == 1
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {201, 409}, statuses
        originals = [
            r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers
        ]
        assert len(originals) == 1, statuses
        # Every 201 is the same operation: replays carry the first answer.
        ids = {r.json()["id"] for r in responses if r.status_code == 201}
        assert len(ids) == 1


@pytest.mark.django_db(transaction=True, databases=["default", *SHARDS])
@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"SERVER_SHARDED": "1"}, id="sharded"),
        pytest.param({"SERVER_SHARDED": "1", "SERVER_ASGI": "1"}, id="sharded-async"),
    ],
)
def test_simultaneous_duplicates_run_the_view_once_with_records_sharded(
    server_factory: ServerFactory, env: dict[str, str]
) -> None:
    path = "async-plain/" if env.get("SERVER_ASGI") else "plain/"
    server = server_factory(**env)
    for round_ in range(ROUNDS):
        key = f"race-sharded-{len(env)}-{round_}"
        # A scope per round: the rounds spread over both shards.
        headers = {"X-Sleep": "0.3", "X-Api-Key": f"tenant-{round_}"}
        responses = server.fire(path, key, CONCURRENT, headers=headers)

        assert Payment.objects.filter(reference=key).count() == 1
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {201, 409}, statuses
        assert len({r.json()["id"] for r in responses if r.status_code == 201}) == 1
    per_shard = [IdempotencyRecord.objects.using(alias).count() for alias in SHARDS]
    assert sum(per_shard) == ROUNDS
    assert all(per_shard), per_shard  # both shards took claims
