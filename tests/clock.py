"""Letting time pass without sleeping.

Every time the app compares is taken from the database's clock (and Redis
keeps its own TTLs), so a test moves time forward for a record by moving the
record back: its timestamps, and the TTLs of its Redis lock and cached
response. To the app that is indistinguishable from waiting, and it costs no
seconds and leaves no margin for a loaded machine to eat.
"""

from __future__ import annotations

import os
from datetime import timedelta

from django.db import connections
from django.db.models import F

from django_idempotency.models import IdempotencyRecord

_TIMESTAMPS = ("created_at", "locked_until", "expires_at", "completed_at")


def advance(seconds: float, *, key: str | None = None, using: str = "default") -> None:
    """Let ``seconds`` pass for the record of ``key`` (for every record if None)."""
    delta = timedelta(seconds=seconds)
    records = IdempotencyRecord.objects.using(using)
    if key is not None:
        records = records.filter(key=key)
    hashes = list(records.values_list("lookup_hash", flat=True))
    records.update(**{name: F(name) - delta for name in _TIMESTAMPS})
    _advance_redis(hashes, delta)


def pass_lock_timeout(key: str, *, using: str = "default") -> None:
    """Let the claim on ``key`` run past its ``lock_timeout``, and no further."""
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT {_now(using)}")
        now = cursor.fetchone()[0]
    locked_until = IdempotencyRecord.objects.using(using).get(key=key).locked_until
    if isinstance(now, str):  # SQLite returns its clock as text
        from datetime import datetime

        now = datetime.fromisoformat(now).replace(tzinfo=locked_until.tzinfo)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=locked_until.tzinfo)
    left = (locked_until - now).total_seconds()
    advance(max(left, 0) + 0.001, key=key, using=using)


def _now(using: str) -> str:
    vendor = connections[using].vendor
    if vendor == "postgresql":
        return "statement_timestamp()"
    if vendor == "mysql":
        return "UTC_TIMESTAMP(6)"
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def _advance_redis(lookup_hashes: list[str], delta: timedelta) -> None:
    """Shorten the TTLs of the Redis lock and cached response of these records."""
    if not lookup_hashes or os.environ.get("IDEMPOTENCY_TEST_REDIS_AVAILABLE") == "0":
        return
    import redis

    from tests.settings import REDIS_URL

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        for lookup_hash in lookup_hashes:
            for name in client.scan_iter(match=f"*idempotency:*:{lookup_hash}"):
                left = client.pttl(name)
                if left < 0:
                    continue  # no TTL, or gone meanwhile
                if left <= delta / timedelta(milliseconds=1):
                    client.delete(name)
                else:
                    client.pexpire(name, left - int(delta / timedelta(milliseconds=1)))
    except redis.ConnectionError:
        return  # no Redis in this run: nothing of these records lives there
    finally:
        client.close()
