"""The optional Redis front (``IDEMPOTENCY = {"LOCK": "cache", "CACHE_ALIAS": ...}``).

Redis answers duplicates without a database round trip: a replay from its
response cache, a 422 from the fingerprint of its cache or its lock. A lock
held for the same request sends a duplicate on to the database, which alone
knows whether that request still runs. It only
ever says "no" or replays something the database already committed; the
database claim still runs behind it for every request Redis lets through, so
exactly-once never depends on Redis. When Redis is unreachable (or loses its
data), requests simply take the database path.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeGuard

from django.core.cache import caches
from django.db import connections, transaction

from . import conf
from .connections import in_caller_transaction
from .encryption import Unreadable, cache_aad
from .outage_log import OutageLog
from .store import StoredResponse
from .waiting import redis_channel

# Imported here, never on the request path: threads of a cold worker racing to
# import a module for the first time fail with "partially initialized module".
try:
    from django_redis import get_redis_connection
except ImportError:  # the optional extra is not installed; check E005 says so
    get_redis_connection = None

logger = logging.getLogger("django_idempotency")


_outage = OutageLog()

# One round trip: the cached response if any, else the lock (taken if free).
_CHECK = """
local cached = redis.call('GET', KEYS[1])
if cached then return {'R', cached} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'A'} end
return {'L', redis.call('GET', KEYS[2]) or ''}
"""
# Store the response and drop the lock, but only while the lock is still ours;
# with a channel (ARGV[4], option ``wait``) wake the duplicates waiting on it.
_COMPLETE = """
if ARGV[3] ~= '' then redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if ARGV[4] then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
"""


@dataclass(frozen=True)
class Acquired:
    lock_value: str


@dataclass(frozen=True)
class Held:
    same_request: bool


@dataclass(frozen=True)
class Cached:
    same_request: bool
    response: StoredResponse


_scripts: dict[str, Any] = {}


def _run_script(client: Any, source: str, keys: list[str], args: list[Any]) -> Any:
    """EVALSHA with the script's hash (loaded on first NOSCRIPT), not its source."""
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = client.register_script(source)
    return script(keys=keys, args=args, client=client)


def _client(alias: str) -> Any:
    if get_redis_connection is None:
        raise LookupError("django-redis is not installed")
    return get_redis_connection(alias)


def _response_key(alias: str, lookup_hash: str) -> str:
    return str(caches[alias].make_key(f"idempotency:response:{lookup_hash}"))


def _client_and_keys(alias: str, lookup_hash: str) -> tuple[Any, str, str]:
    return (
        _client(alias),
        _response_key(alias, lookup_hash),
        str(caches[alias].make_key(f"idempotency:lock:{lookup_hash}")),
    )


def _encode(lookup_hash: str, fingerprint: str, stored: StoredResponse) -> bytes:
    expires = None if stored.expires_at is None else stored.expires_at.isoformat()
    head = json.dumps([fingerprint, stored.status, stored.headers, stored.request_id, expires])
    # JSON never contains a raw NUL, so it separates the head from the body.
    plain = head.encode() + b"\0" + stored.body
    ring = conf.get_settings().keyring
    return plain if ring is None else ring.seal(plain, cache_aad(lookup_hash))


def _decode(lookup_hash: str, raw: bytes) -> tuple[str, StoredResponse]:
    ring = conf.get_settings().keyring
    # A plain entry starts with its JSON head; a sealed one with its version byte.
    if raw[:1] == b"[":
        if ring is not None:
            # Written before encryption was turned on, or by someone who can
            # write to Redis but has no key: the database decides.
            raise Unreadable("a plain entry while ENCRYPTION_KEYS is set")
        plain = raw
    elif ring is None:
        raise Unreadable("sealed, and ENCRYPTION_KEYS is empty")
    else:
        plain = ring.open(raw, cache_aad(lookup_hash))
    head, _, body = plain.partition(b"\0")
    # Entries cached by earlier versions have no expiry (4 fields).
    fingerprint, status, headers, request_id, *rest = json.loads(head)
    expires = rest[0] if rest else None
    return fingerprint, StoredResponse(
        status=status,
        headers=[(n, v) for n, v in headers],
        body=body,
        request_id=request_id,
        expires_at=None if expires is None else datetime.fromisoformat(expires),
    )


class RedisFront:
    """The Redis front as one request sees it: ``check`` before the database,
    then exactly one of ``finish`` (the outcome is committed) or ``forget``
    (the request ends without one). Callers need not track whether ``check``
    took the lock: only what is ours is dropped."""

    def __init__(
        self,
        alias: str,
        lookup_hash: str,
        fingerprints: tuple[str, ...],
        *,
        ttl: timedelta,
        lock_timeout: timedelta,
        publish: bool = False,
    ) -> None:
        self.alias = alias
        #: Tell waiting duplicates (option ``wait``) when the key is free or cached.
        self.publish = publish
        self.lookup_hash = lookup_hash
        self.fingerprints = fingerprints
        self.ttl = ttl
        self.lock_timeout = lock_timeout
        self._lock_value: str | None = None
        self._started = time.monotonic()
        #: Redis could not answer the check: this request leaves it alone,
        #: rather than wait on an unreachable server a second time.
        self._unanswered = False

    def check(self, token: str) -> Held | Cached | None:
        """What Redis knows; None sends the request to the database (with our
        lock taken, or Redis unavailable).

        A lock held for the same request (``Held(same_request=True)``) says
        that request is being handled, not that its operation still runs:
        its holder may be a duplicate reading the completed record from the
        database (Redis restarted, was flushed, or a takeover completed it).
        So it may be waited on (that holder caches the record and tells the
        waiters) but not answered "in progress" (``answers_alone``). A lock
        held for another request is not answered 422 either: the database
        says whose the record is."""
        found = check(self.alias, self.lookup_hash, self.fingerprints, token, self.lock_timeout)
        self._unanswered = found is None
        if isinstance(found, Acquired):
            self._lock_value = found.lock_value
            return None
        return found

    def cache_replay(self, stored: StoredResponse) -> None:
        """The database answered with a completed record that Redis did not
        have (Redis restarted or was flushed, a record stored while it was
        down or by a takeover): cache it for the next duplicates until the
        record expires, and drop our lock."""
        if self._unanswered:
            return
        ttl_left = (
            None
            if stored.expires_at is None
            else stored.expires_at - datetime.now(stored.expires_at.tzinfo)
        )
        if ttl_left is None or ttl_left <= timedelta(0):
            self._finish(None, fresh=False, publish=False)
            return
        self._send(stored, ttl_left, publish=self.publish and self._lock_value is not None)

    def finish(self, stored: StoredResponse | None, *, fresh: bool) -> None:
        """The outcome is committed: cache ``stored`` if it may be replayed
        from Redis, and drop our lock."""
        self._finish(stored, fresh=fresh, publish=self.publish)

    def _finish(self, stored: StoredResponse | None, *, fresh: bool, publish: bool) -> None:
        # Redis forgets the response when the record expires; the record's
        # clock started at the claim, and a takeover (not ``fresh``) keeps the
        # first request's, which we cannot know.
        ttl_left = self.ttl - timedelta(seconds=time.monotonic() - self._started)
        cacheable = stored is not None and fresh and ttl_left > timedelta(0)
        if self._lock_value is None and (self._unanswered or not (cacheable or publish)):
            return  # nothing of ours in Redis, nothing to tell, or no Redis
        # Without our lock too: a duplicate sent on to the database by a lock
        # held for the same request may win the claim there and run the view,
        # and the requests waiting on Redis must hear of its outcome.
        self._send(
            stored if cacheable else None, ttl_left if cacheable else self.ttl, publish=publish
        )

    def _send(self, stored: StoredResponse | None, ttl: timedelta, *, publish: bool) -> None:
        """Cache ``stored`` (if any) for ``ttl`` and drop our lock (if any)."""
        lock_value, self._lock_value = self._lock_value, None
        cache_and_unlock(
            self.alias,
            self.lookup_hash,
            lock_value,
            self.fingerprints[0],
            stored,
            ttl,
            publish=publish,
        )

    def forget(self, *, changed: bool) -> None:
        """The request ends without a stored outcome: drop our lock only.

        Waiting duplicates are told only when the key ``changed`` (this
        request claimed it, then released it): a duplicate that took a lock
        Redis had lost, found the record in progress and goes back to
        waiting changed nothing, and telling would wake every waiter, itself
        included, to do the same, over and over."""
        self._finish(None, fresh=False, publish=self.publish and changed)


def answers_alone(found: Held | Cached) -> TypeGuard[Cached]:
    """Can Redis answer this request by itself? Only from a cached response
    (a replay, or 422 for another request), which is written after the
    record committed. A lock answers nothing: it says which request is being
    handled, not which one holds the record. Its holder may be a duplicate
    that got the lock while the first request's own lock was gone (dropped
    by another duplicate's 409, expired, lost with Redis) and is about to
    hear 422 from the database, while the record belongs to this request."""
    return isinstance(found, Cached)


def check(
    alias: str,
    lookup_hash: str,
    fingerprints: tuple[str, ...],
    token: str,
    lock_timeout: timedelta,
) -> Acquired | Held | Cached | None:
    """None means Redis could not answer: fall back to the database alone.

    ``fingerprints``: the request's, under each secret key; the first is written.
    """
    try:
        client, response_key, lock_key = _client_and_keys(alias, lookup_hash)
        lock_value = f"{token}:{fingerprints[0]}"
        result = _run_script(
            client,
            _CHECK,
            [response_key, lock_key],
            [lock_value, int(lock_timeout.total_seconds() * 1000)],
        )
        kind = result[0].decode() if isinstance(result[0], bytes) else result[0]
        if kind == "A":
            return Acquired(lock_value)
        if kind == "R":
            cached_fingerprint, stored = _decode(lookup_hash, result[1])
            return Cached(cached_fingerprint in fingerprints, stored)
        holder = result[1].decode() if isinstance(result[1], bytes) else result[1]
        return Held(holder.rpartition(":")[2] in fingerprints)
    except Unreadable as exc:
        # Not an outage: the record in the database answers (or says it is
        # unreadable there too).
        logger.warning("Cached idempotency response not usable (%s); asking the database", exc)
        return None
    except Exception:
        # Redis down, a broken entry, a misconfigured client: the front is an
        # optimisation, so any failure of it falls back to the database.
        _outage.warn("Redis unavailable for idempotency lock; using the database only")
        return None


def cache_and_unlock(
    alias: str,
    lookup_hash: str,
    lock_value: str | None,
    fingerprint: str,
    stored: StoredResponse | None,
    ttl: timedelta,
    *,
    publish: bool = False,
) -> None:
    """Cache a stored response (after the database committed it) and/or drop
    our lock; ``publish`` tells the duplicates waiting for it."""
    try:
        client, response_key, lock_key = _client_and_keys(alias, lookup_hash)
        payload = _encode(lookup_hash, fingerprint, stored) if stored is not None else b""
        args: list[Any] = [lock_value or "", int(ttl.total_seconds() * 1000), payload]
        if publish:
            args += [redis_channel(alias), lookup_hash]
        _run_script(client, _COMPLETE, [response_key, lock_key], args)
    except Exception:
        # A lock left behind expires after lock_timeout; the database decides meanwhile.
        _outage.warn("Redis unavailable while finishing an idempotency key")


def drop_responses(alias: str, lookup_hashes: list[str], *, strict: bool = False) -> None:
    """Drop the cached responses of deleted records: the database is the
    source of truth, and a deleted record lets the next retry run again.

    ``strict`` raises when Redis cannot be reached (erasure must not report
    success while Redis still holds the responses); otherwise it logs."""
    if not lookup_hashes:
        return
    try:
        client = _client(alias)
        for start in range(0, len(lookup_hashes), 1000):
            batch = lookup_hashes[start : start + 1000]
            client.delete(*(_response_key(alias, h) for h in batch))
    except Exception:
        if strict:
            raise
        logger.warning(
            "Could not drop %d deleted idempotency records from Redis; they are "
            "replayed from Redis until their expiry",
            len(lookup_hashes),
            exc_info=True,
        )


def forget_deleted(database: str, lookup_hashes: list[str]) -> None:
    """After records were deleted on ``database``: forget them in Redis once
    the deletion is committed (at once in autocommit)."""
    app_settings = conf.get_settings()
    if app_settings.lock != "cache" or not lookup_hashes:
        return

    def run() -> None:
        drop_responses(app_settings.cache_alias, lookup_hashes)

    if in_caller_transaction(connections[database]):
        transaction.on_commit(run, using=database)
    else:
        run()
