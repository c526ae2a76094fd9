"""Guarantee 6: the Redis front (LOCK = "cache") answers duplicates without a
database round trip, never runs an operation twice, and falls back to the
database alone when Redis is unreachable. Against a real Redis server."""

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from pytest_django import DjangoCaptureOnCommitCallbacks
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord, State
from tests.factories import CLIENT_SCOPE, RecordFactory, api_client
from tests.helpers import needs_redis
from tests.settings import REDIS_URL
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db


def _settings(location: str, prefix: str) -> override_settings:
    return override_settings(
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": location,
                "KEY_PREFIX": prefix,
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
            },
        },
        IDEMPOTENCY={"LOCK": "cache", "CACHE_ALIAS": "redis"},
    )


class PrefixedRedis(redis.Redis):
    """The type of ``redis_lock``: a client that knows the test's key prefix."""

    prefix: str


@pytest.fixture
def redis_lock() -> Iterator[PrefixedRedis]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    client = cast(PrefixedRedis, redis.Redis.from_url(REDIS_URL))
    client.prefix = prefix  # other test runs share this Redis: look at our keys only
    with _settings(REDIS_URL, prefix):
        yield client
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def post(client: APIClient, key: str, amount: int = 1) -> Any:
    return client.post("/function/", {"amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def statements(queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [q for q in queries if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))]


@needs_redis
def test_replay_and_mismatch_come_from_redis_without_a_database_query(
    redis_lock: PrefixedRedis,
) -> None:
    client = api_client()
    first = post(client, "redis-1")
    assert first.status_code == 201
    assert any(
        b"idempotency:response:" in k for k in redis_lock.scan_iter(f"{redis_lock.prefix}:*")
    )

    with CaptureQueriesContext(connection) as replay_queries:
        replay = post(client, "redis-1")
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert replay.headers["X-Request-Id"] == first.headers["X-Request-Id"]
    assert statements(replay_queries.captured_queries) == []

    with CaptureQueriesContext(connection) as mismatch_queries:
        mismatch = post(client, "redis-1", amount=2)
    assert mismatch.status_code == 422
    assert mismatch.json()["code"] == "idempotency_key_reused"
    assert statements(mismatch_queries.captured_queries) == []
    assert Payment.objects.count() == 1


@needs_redis
def test_a_lock_held_for_another_request_lets_the_record_decide(
    redis_lock: PrefixedRedis,
) -> None:
    # This request's first try runs its view; its own Redis lock is gone (a
    # duplicate that got 409 had taken and dropped it, or it expired), and a
    # request with another body holds the lock now, on its way to the 422 the
    # database will give it. The record, not that lock, says whose key it is.
    client = api_client()
    post(client, "redis-done")  # the same body: the same fingerprint
    fingerprint = IdempotencyRecord.objects.get(key="redis-done").fingerprint
    RecordFactory(key="redis-running", fingerprint=fingerprint, running=True)
    redis_lock.set(_lock_key("redis-running"), "othertoken:" + "f" * 64, px=60_000)

    busy = post(client, "redis-running")

    assert busy.status_code == 409  # not 422: a client must not give up on its payment
    assert busy.json()["code"] == "idempotency_request_in_progress"
    assert Payment.objects.count() == 1


@needs_redis
def test_a_lock_held_for_another_request_does_not_hide_this_ones_stored_response(
    redis_lock: PrefixedRedis,
) -> None:
    client = api_client()
    first = post(client, "redis-stored")
    _forget_everything(redis_lock)  # Redis lost the cached response
    redis_lock.set(_lock_key("redis-stored"), "othertoken:" + "f" * 64, px=60_000)

    retry = post(client, "redis-stored")

    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert Payment.objects.count() == 1


@needs_redis
def test_database_still_decides_when_redis_lost_its_data(redis_lock: PrefixedRedis) -> None:
    client = api_client()
    first = post(client, "redis-lost")
    for k in redis_lock.scan_iter(f"{redis_lock.prefix}:*"):  # a Redis restart, in effect
        redis_lock.delete(k)
    replay = post(client, "redis-lost")
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert Payment.objects.count() == 1


@needs_redis
def test_exception_in_view_releases_both_locks(redis_lock: PrefixedRedis) -> None:
    client = api_client()
    with pytest.raises(RuntimeError):
        client.post(
            "/function/?fail=raise", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="redis-exc"
        )
    assert not IdempotencyRecord.objects.filter(key="redis-exc").exists()
    assert not any(
        b"idempotency:lock:" in k for k in redis_lock.scan_iter(f"{redis_lock.prefix}:*")
    )
    retry = client.post(
        "/function/", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="redis-exc"
    )
    assert retry.status_code == 201


def test_unreachable_redis_falls_back_to_the_database() -> None:
    # Nothing listens on port 1: every Redis call fails at once.
    with _settings("redis://127.0.0.1:1/0", "down"):
        client = api_client()
        first = post(client, "redis-down")
        replay = post(client, "redis-down")
        mismatch = post(client, "redis-down", amount=5)
    assert first.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert mismatch.status_code == 422
    assert Payment.objects.count() == 1
    assert IdempotencyRecord.objects.get(key="redis-down").state == State.COMPLETED


@needs_redis
def test_a_broken_redis_entry_falls_back_to_the_database(redis_lock: PrefixedRedis) -> None:
    client = api_client()
    first = post(client, "redis-garbage")
    for k in redis_lock.scan_iter(f"{redis_lock.prefix}:*"):
        if b"idempotency:response:" in k:
            redis_lock.set(k, b"not json at all")
    replay = post(client, "redis-garbage")
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert Payment.objects.count() == 1


def test_the_redis_client_is_imported_before_any_request() -> None:
    import subprocess
    import sys

    code = (
        "import sys, django; django.setup()\n"
        "import django_idempotency.engine\n"
        "assert 'django_redis' in sys.modules, 'django_redis is imported lazily'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def _replayed_then_deleted(client: APIClient, key: str, delete: Callable[[], object]) -> Any:
    assert post(client, key).status_code == 201
    assert post(client, key).headers["Idempotent-Replayed"] == "true"  # from Redis
    delete()
    again = post(client, key)
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers  # the view ran again
    return again


@needs_redis
def test_deleting_records_through_the_orm_makes_redis_forget_them(
    redis_lock: PrefixedRedis,
) -> None:
    client = api_client()
    _replayed_then_deleted(
        client, "forget-qs", lambda: IdempotencyRecord.objects.filter(key="forget-qs").delete()
    )
    _replayed_then_deleted(
        client, "forget-obj", lambda: IdempotencyRecord.objects.get(key="forget-obj").delete()
    )
    assert Payment.objects.count() == 4


@needs_redis
def test_deleting_a_record_in_the_admin_makes_redis_forget_it(
    redis_lock: PrefixedRedis, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    admin = Client()
    admin.force_login(
        get_user_model().objects.create_superuser("forget-admin", "a@example.com", "pw")
    )

    def delete_in_admin() -> None:
        record = IdempotencyRecord.objects.get(key="forget-admin")
        url = reverse("admin:django_idempotency_idempotencyrecord_delete", args=[record.pk])
        # The admin deletes in a transaction: Redis forgets once it commits.
        with django_capture_on_commit_callbacks(execute=True):
            assert admin.post(url, {"post": "yes"}).status_code == 302
        assert not IdempotencyRecord.objects.filter(pk=record.pk).exists()

    _replayed_then_deleted(api_client(), "forget-admin", delete_in_admin)


@needs_redis
def test_purging_records_makes_redis_forget_them(redis_lock: PrefixedRedis) -> None:
    import datetime as dt

    from django.utils import timezone

    from django_idempotency.purge import purge

    def expire_and_purge() -> None:
        # The database says it expired (Redis still holds its copy): purge it.
        IdempotencyRecord.objects.filter(key="forget-purge").update(
            expires_at=timezone.now() - dt.timedelta(minutes=1)
        )
        assert purge().expired == 1

    _replayed_then_deleted(api_client(), "forget-purge", expire_and_purge)


def test_an_outage_is_logged_once_a_minute_not_on_every_request(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_idempotency import cache_lock
    from django_idempotency.outage_log import OutageLog

    clock = [0.0]
    monkeypatch.setattr(cache_lock, "_outage", OutageLog(clock=lambda: clock[0]))
    with _settings("redis://127.0.0.1:1/0", "down"), caplog.at_level("WARNING"):
        client = api_client()
        for n in range(10):
            assert post(client, f"during-the-outage-{n}").status_code == 201
        clock[0] += 61
        assert post(client, "a-minute-later").status_code == 201

    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 2
    assert warnings[0].exc_info is not None
    # The other nine requests' failures are counted in the next warning.
    assert "(9 more Redis failures since the last warning)" in warnings[1].getMessage()


def _lock_key(key: str) -> str:
    from django.core.cache import caches

    from django_idempotency.identity import lookup_hash

    return str(caches["redis"].make_key(f"idempotency:lock:{lookup_hash(CLIENT_SCOPE, key, None)}"))


def _forget_everything(redis_lock: PrefixedRedis) -> None:
    """What a Redis restart without persistence, or a FLUSHALL, leaves."""
    for k in redis_lock.scan_iter(f"{redis_lock.prefix}:*"):
        redis_lock.delete(k)


@needs_redis
def test_a_replay_redis_did_not_have_is_cached_for_the_next_duplicates(
    redis_lock: PrefixedRedis,
) -> None:
    client = api_client()
    first = post(client, "redis-recache")
    _forget_everything(redis_lock)

    from_database = post(client, "redis-recache")
    with CaptureQueriesContext(connection) as queries:
        from_redis = post(client, "redis-recache")

    assert from_database.headers["Idempotent-Replayed"] == "true"
    assert from_redis.status_code == 201
    assert from_redis.headers["Idempotent-Replayed"] == "true"
    assert from_redis.content == first.content
    assert statements(queries.captured_queries) == []
    # Our lookup's lock is gone with the caching: no duplicate is told to wait.
    assert redis_lock.get(_lock_key("redis-recache")) is None
    assert Payment.objects.count() == 1


@needs_redis
def test_the_lock_of_a_duplicate_still_asking_the_database_never_answers_409(
    redis_lock: PrefixedRedis,
) -> None:
    client = api_client()
    first = post(client, "redis-looking")
    _forget_everything(redis_lock)
    # Another duplicate took the lock an instant ago and is reading the
    # completed record from the database; this one must not be told that the
    # operation is still running.
    fingerprint = IdempotencyRecord.objects.get(key="redis-looking").fingerprint
    redis_lock.set(_lock_key("redis-looking"), f"othertoken:{fingerprint}", px=60_000)

    retry = post(client, "redis-looking")

    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert Payment.objects.count() == 1


@needs_redis
def test_a_duplicate_of_a_running_request_is_told_409_by_the_record(
    redis_lock: PrefixedRedis,
) -> None:
    client = api_client()
    post(client, "redis-done")  # the same body: the same fingerprint
    fingerprint = IdempotencyRecord.objects.get(key="redis-done").fingerprint
    # The first request of this key holds the Redis lock and runs its view.
    RecordFactory(
        key="redis-running",
        fingerprint=fingerprint,
        state=State.IN_PROGRESS,
        locked_until=timezone.now() + dt.timedelta(minutes=1),
    )
    redis_lock.set(_lock_key("redis-running"), f"othertoken:{fingerprint}", px=60_000)

    with CaptureQueriesContext(connection) as queries:
        busy = post(client, "redis-running")

    assert busy.status_code == 409
    assert busy.json()["code"] == "idempotency_request_in_progress"
    # The claim, finding the record (MariaDB and SQLite: the INSERT, then the SELECT).
    assert len(statements(queries.captured_queries)) == (
        1 if connection.vendor == "postgresql" else 2
    )
    assert Payment.objects.count() == 1


@needs_redis
def test_a_duplicate_that_runs_the_view_without_the_redis_lock_caches_and_announces_it(
    redis_lock: PrefixedRedis,
) -> None:
    from django_idempotency.cache_lock import RedisFront, answers_alone
    from django_idempotency.identity import lookup_hash
    from django_idempotency.store import StoredResponse
    from django_idempotency.waiting import redis_channel

    hashed = lookup_hash(CLIENT_SCOPE, "redis-winner", None)

    def front() -> RedisFront:
        return RedisFront(
            "redis",
            hashed,
            ("f" * 64,),
            ttl=dt.timedelta(hours=1),
            lock_timeout=dt.timedelta(seconds=30),
            publish=True,
        )

    holder, winner = front(), front()
    assert holder.check("holdertoken") is None  # took the Redis lock
    # The same request behind that lock goes on to the database, where it
    # claims the key first and runs the view.
    held = winner.check("winnertoken")
    assert held is not None and not answers_alone(held)
    listener = redis_lock.pubsub()  # type: ignore[no-untyped-call,unused-ignore]  # typed in redis 8
    listener.subscribe(redis_channel("redis"))
    listener.get_message(timeout=1)  # the subscription's confirmation

    stored = StoredResponse(status=201, headers=[], body=b'{"id": 7}', request_id="r-1")
    winner.finish(stored, fresh=True)

    message = listener.get_message(timeout=2)
    listener.close()
    assert message is not None and message["data"] == hashed.encode()
    replay = front().check("latertoken")
    assert replay is not None and getattr(replay, "response", None) == stored
    # The holder's lock is still its own, for it to drop.
    assert redis_lock.get(_lock_key("redis-winner")) == b"holdertoken:" + b"f" * 64
