"""Option ``wait`` (docs/recipes/wait.md): a duplicate that arrives while the
first request runs waits for it, over real worker processes, and gets what a
retry after it would get.

The views sleep 2 s: that is the request the duplicates wait for, not time
passing for the app. Waiting is woken by NOTIFY on PostgreSQL, by Redis
pub/sub with the Redis front, and backs off elsewhere (MySQL/MariaDB, SQLite).
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection, connections

from django_idempotency.models import IdempotencyRecord
from django_idempotency.shards import rendezvous
from tests.factories import CLIENT_API_KEY
from tests.helpers import needs_redis
from tests.testapp.models import Payment

from .conftest import SHARDS, Server, ServerFactory
from .helpers import Background, wait_for_claim, wait_until

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

CONCURRENT = 20
#: How late the last duplicate may be answered after the first request's answer
#: (woken, it answers within milliseconds; not woken, about 28 s late).
LATEST = 5.0

MODES = [
    # PostgreSQL: NOTIFY; MySQL/MariaDB and SQLite: backoff.
    pytest.param("wait/", {}, id="sync"),
    pytest.param("wait/", {"SERVER_LOCK": "cache"}, id="sync+redis", marks=needs_redis),
    pytest.param("async-wait/", {"SERVER_ASGI": "1"}, id="async"),
    pytest.param(
        "async-wait/",
        {"SERVER_ASGI": "1", "SERVER_LOCK": "cache"},
        id="async+redis",
        marks=needs_redis,
    ),
]


def _server(server_factory: ServerFactory, env: dict[str, str]) -> Server:
    # A sync worker serves one request at a time: one each, so that every
    # duplicate waits in the app and none in the listen queue.
    workers = 2 if env.get("SERVER_ASGI") else CONCURRENT + 1
    return server_factory(workers=workers, **env)


def _fire_timed(server: Server, path: str, key: str, n: int, **headers: str) -> Any:
    """n identical requests at the same moment: [(response, when it was answered)]."""
    barrier = threading.Barrier(n)
    results: list[tuple[requests.Response, float] | BaseException | None] = [None] * n

    def one(i: int) -> None:
        barrier.wait()
        try:
            response = server.post(path, key, headers=headers)
            results[i] = (response, time.monotonic())
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [r for r in results if not isinstance(r, tuple)]
    assert not errors, f"requests failed: {errors[:3]}\n{server.log.read_text()[-3000:]}"
    return results


def _listening_backends(database: str | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN idempotency'"
            " AND (%s::text IS NULL OR datname = %s)",
            [database, database],
        )
        return int(cursor.fetchone()[0])


@pytest.mark.parametrize(("path", "env"), MODES)
def test_duplicates_wait_for_the_first_request_and_get_its_answer(
    server_factory: ServerFactory, path: str, env: dict[str, str]
) -> None:
    # wait=30 and a safety look every 60 s: a duplicate that is never woken
    # (by NOTIFY, by Redis, or by its backoff's looks) is answered at its
    # deadline, about 28 s after the first. LATEST is far from that and far
    # above what a busy machine delays a woken one by.
    server = _server(server_factory, {**env, "SERVER_SAFETY_INTERVAL": "60"})
    path = path.replace("wait/", "wait-long/")
    key = f"wait-{path.strip('/')}-{len(env)}"
    # A first round, so that every worker has imported the views and connected
    # its listener: on a busy machine cold workers would be measured instead.
    _fire_timed(server, path, f"{key}-warm-up", CONCURRENT, **{"X-Sleep": "0.5"})

    results = _fire_timed(server, path, key, CONCURRENT, **{"X-Sleep": "2"})

    responses = [r for r, _ in results]
    statuses = [r.status_code for r in responses]
    assert statuses == [201] * CONCURRENT, statuses
    assert Payment.objects.filter(reference=key).count() == 1
    originals = [(r, t) for r, t in results if "Idempotent-Replayed" not in r.headers]
    assert len(originals) == 1
    original, finished = originals[0]
    assert {r.content for r in responses} == {original.content}
    assert {r.headers["X-Request-Id"] for r in responses} == {original.headers["X-Request-Id"]}
    latest = max(t for _, t in results) - finished
    print(f"\n[{path} {env}] last duplicate answered {latest * 1000:.0f} ms after the first")
    assert latest <= LATEST, f"a duplicate was answered {latest:.2f} s after the first"
    if connection.vendor == "postgresql" and "SERVER_LOCK" not in env:
        # Woken by NOTIFY: the workers listen on connections of their own.
        assert _listening_backends() >= 1


@pytest.mark.parametrize(("path", "env"), MODES)
def test_when_the_first_request_fails_one_waiting_duplicate_runs_it(
    server_factory: ServerFactory, path: str, env: dict[str, str]
) -> None:
    server = _server(server_factory, env)
    key = f"wait-fails-{path.strip('/')}-{len(env)}"
    first = Background(lambda: server.post(path, key, headers={"X-Sleep": "2", "X-Fail": "1"}))
    wait_for_claim(key)

    duplicates = [r for r, _ in _fire_timed(server, path, key, 5)]

    assert first.result().status_code == 500
    assert [r.status_code for r in duplicates] == [201] * 5
    assert len([r for r in duplicates if "Idempotent-Replayed" not in r.headers]) == 1
    assert len({r.content for r in duplicates}) == 1
    assert Payment.objects.filter(reference=key).count() == 1


def test_a_duplicate_waits_no_longer_than_wait_then_gets_409(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = _server(server_factory, {})
    key = "wait-short"
    release = tmp_path / "release"
    first = Background(lambda: server.post("wait-short/", key, headers={"X-Hold": str(release)}))
    wait_for_claim(key)

    started = time.monotonic()
    duplicate = server.post("wait-short/", key)
    waited = time.monotonic() - started

    assert first.running, "the duplicate waited for the first request to finish"
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "idempotency_request_in_progress"
    assert duplicate.headers["Retry-After"]
    # wait=1 s. The upper bound leaves room for a loaded machine (3.3 s has
    # been seen): a wait that ignored the option would last the first
    # request's hold, 60 s, and see it finished.
    assert 1.0 <= waited < 10.0, waited
    release.touch()
    assert first.result().status_code == 201
    assert Payment.objects.filter(reference=key).count() == 1


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"SERVER_ASGI": "1"}, id="async"),
        pytest.param(
            {"SERVER_ASGI": "1", "SERVER_LOCK": "cache"}, id="async+redis", marks=needs_redis
        ),
    ],
)
def test_a_waiting_duplicate_whose_client_goes_away_leaves_nothing_behind(
    server_factory: ServerFactory, env: dict[str, str]
) -> None:
    server = server_factory(workers=1, **env)  # one process: its waiters are counted
    key = f"wait-gone-{len(env)}"
    first = Background(lambda: server.post("async-wait/", key, headers={"X-Sleep": "3"}))
    record = wait_for_claim(key)

    def pending() -> int:
        answer = requests.get(server.url + "waiters/", headers={"X-Api-Key": CLIENT_API_KEY})
        return int(answer.json()["pending"])

    # The client gives up after 1.5 s and closes its connection.
    duplicate = Background(
        lambda: requests.post(
            server.url + "async-wait/",
            json={"amount": 1},
            timeout=1.5,
            headers={"Idempotency-Key": key, "X-Api-Key": CLIENT_API_KEY},
        )
    )
    if "SERVER_LOCK" in env or connection.vendor == "postgresql":
        # Woken by a notification: registered with the process's listener.
        wait_until(lambda: pending() == 1, "the duplicate to wait", timeout=5)
    assert isinstance(duplicate.error(), requests.Timeout)
    wait_until(lambda: pending() == 0, "the cancelled duplicate to stop waiting", timeout=5)
    original = first.result()
    assert original.status_code == 201
    # The record is still the first request's: the duplicate claimed nothing.
    record.refresh_from_db()
    assert record.request_id == original.headers["X-Request-Id"]
    retry = server.post("async-wait/", key)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.content == original.content
    assert Payment.objects.filter(reference=key).count() == 1
    assert IdempotencyRecord.objects.filter(key=key).count() == 1


def _wait_for_a_listener(server: Server, alias: str) -> None:
    """A listener that lost its connection is back within a second."""
    database = connections[alias].settings_dict["NAME"]
    try:
        wait_until(lambda: _listening_backends(database) >= 1, f"a LISTEN on {alias}", 10)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{server.log.read_text()[-3000:]}") from None


@pytest.mark.django_db(transaction=True, databases=["default", *SHARDS])
def test_duplicates_wait_on_the_shard_of_their_scope(server_factory: ServerFactory) -> None:
    """Records sharded across two databases: each shard's waiters are woken
    from that shard (PostgreSQL: a LISTEN on each)."""
    # One sync worker per duplicate, and no more: each may hold a connection to
    # the default database, to each shard and a LISTEN on each, and the
    # suite's PostgreSQL has max_connections = 100.
    server = server_factory(workers=11, SERVER_SHARDED="1", SERVER_SAFETY_INTERVAL="60")
    tenants = {
        rendezvous("auth:" + hashlib.sha256(f"tenant-{n}".encode()).hexdigest(), SHARDS): n
        for n in range(32)
    }
    assert sorted(tenants) == sorted(SHARDS)
    for alias, tenant in sorted(tenants.items()):
        key = f"wait-sharded-{alias}"
        api_key = {"X-Api-Key": f"tenant-{tenant}"}
        _fire_timed(server, "wait-long/", f"{key}-warm-up", 10, **{"X-Sleep": "0.5", **api_key})

        # 1 s of work against the view's 30 s of wait: room for a loaded machine.
        started = time.monotonic()
        results = _fire_timed(server, "wait-long/", key, 10, **{"X-Sleep": "1", **api_key})

        answers = [(r.status_code, round(t - started, 2), r.content[:200]) for r, t in results]
        assert [r.status_code for r, _ in results] == [201] * 10, (
            f"on {alias}: {answers}\n{server.log.read_text()[-3000:]}"
        )
        assert Payment.objects.filter(reference=key).count() == 1
        assert IdempotencyRecord.objects.using(alias).filter(key=key).exists()
        originals = [(r, t) for r, t in results if "Idempotent-Replayed" not in r.headers]
        assert len(originals) == 1
        latest = max(t for _, t in results) - originals[0][1]
        assert latest <= LATEST, f"a duplicate on {alias} was answered {latest:.2f} s late"
        if connection.vendor == "postgresql":
            # Right after the round that was woken through it (without one,
            # the waiters' backoff would have answered them as fast).
            _wait_for_a_listener(server, alias)


@needs_redis
@pytest.mark.parametrize(
    ("path", "env"),
    [
        pytest.param("wait/", {"SERVER_LOCK": "cache"}, id="sync+redis"),
        pytest.param("async-wait/", {"SERVER_ASGI": "1", "SERVER_LOCK": "cache"}, id="async+redis"),
    ],
)
def test_waiters_that_find_the_redis_lock_gone_do_not_wake_each_other(
    server_factory: ServerFactory, path: str, env: dict[str, str]
) -> None:
    """Redis lost the first request's lock (a restart, an eviction): each
    waiter then takes the lock, finds the record in progress in the database
    and drops the lock again. That changed nothing, so it tells nobody: the
    only message on the channel is the first request's when it is done."""
    import redis

    from tests.settings import REDIS_URL

    server = _server(server_factory, env)
    key = f"wait-lock-lost-{path.strip('/')}"
    client = redis.Redis.from_url(REDIS_URL)
    listener = client.pubsub()  # type: ignore[no-untyped-call,unused-ignore]  # typed in redis 8
    listener.psubscribe("*idempotency:done")
    first = Background(lambda: server.post(path, key, headers={"X-Sleep": "3"}))
    record = wait_for_claim(key)
    locks = list(client.scan_iter(match=f"*idempotency:lock:{record.lookup_hash}"))
    assert len(locks) == 1
    client.delete(*locks)

    results = _fire_timed(server, path, key, 10)
    assert first.result().status_code == 201

    assert [r.status_code for r, _ in results] == [201] * 10
    assert Payment.objects.filter(reference=key).count() == 1
    told = 0
    while (message := listener.get_message(timeout=0.5)) is not None:
        told += message["type"] == "pmessage" and message["data"] == record.lookup_hash.encode()
    listener.close()
    assert told == 1, f"{told} messages woke the waiters"
