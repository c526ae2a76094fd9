"""Waiting duplicates (option ``wait``): instead of a 409 at once, a duplicate
that finds its key in progress waits for the request holding it and looks again.

It waits between statements, in autocommit: no transaction, no row lock. It
learns that the key changed from the request holding it, which sends the key's
lookup hash once it stored its response or released the key:

- on PostgreSQL with ``NOTIFY`` (folded into the statement that stores or
  releases, so it costs no statement), heard by one ``LISTEN`` connection per
  process, of its own (never a request's);
- with the Redis front (``LOCK: "cache"``) by ``PUBLISH`` in the script that
  caches the response (no extra round trip), heard by one subscription per
  process;
- elsewhere (MySQL/MariaDB, SQLite, ``LISTEN_DATABASE: False``) it is not
  told, and looks again after a bounded exponential backoff.

Each look costs the statements of a duplicate (docs/recipes/wait.md counts them).
A notification can be lost (the listening connection broke; PgBouncer in
transaction mode delivers none), so even a notified waiter looks again at least
every ``SAFETY_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import timedelta

from django.core.cache import caches
from django.db import connections

from . import conf
from .connections import in_caller_transaction
from .outage_log import OutageLog

logger = logging.getLogger("django_idempotency")

#: The PostgreSQL channel (and, prefixed by the cache's KEY_PREFIX, the Redis one).
CHANNEL = "idempotency"
#: Backoff where nobody tells a waiter: 20 ms, doubling up to 250 ms.
BACKOFF_FIRST = 0.02
BACKOFF_MAX = 0.25
#: The longest a notified waiter goes without looking.
SAFETY_INTERVAL = 1.0
#: How long a listener that lost its connection waits before connecting again.
_RECONNECT_DELAY = 1.0
#: Notifications remembered for waiters that registered just after one arrived.
_REMEMBER = 10.0

Wake = Callable[[], None]


class Channel:
    """The wake-ups of one process on one channel, fed by a listener thread.

    A waiter registers after a look that found the key in progress. What
    changed after that look is notified after it; ``register`` refuses (look
    again now) when such a notification already came, or when the listener
    was not listening since the look, so no change goes unseen.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        #: The clock waiters' ``looked_at`` is read from.
        self._clock = clock
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Wake]] = {}
        self._heard: OrderedDict[str, float] = OrderedDict()
        #: monotonic time since when the listener has listened without a break.
        self.listening_since: float | None = None

    def register(self, lookup_hash: str, wake: Wake, looked_at: float) -> bool:
        with self._lock:
            since = self.listening_since
            if since is None or since > looked_at:
                return False
            if self._heard.get(lookup_hash, -1.0) >= looked_at:
                return False
            self._waiters.setdefault(lookup_hash, set()).add(wake)
            return True

    def unregister(self, lookup_hash: str, wake: Wake) -> None:
        with self._lock:
            waiting = self._waiters.get(lookup_hash)
            if waiting is not None:
                waiting.discard(wake)
                if not waiting:
                    del self._waiters[lookup_hash]

    def pending(self) -> int:
        """How many waiters are registered (0 once every wait has ended)."""
        with self._lock:
            return sum(len(w) for w in self._waiters.values())

    def heard(self, lookup_hash: str) -> None:
        now = self._clock()
        with self._lock:
            # Every process hears every request's notification: kept in the
            # order heard, so forgetting the old ones costs O(1) per
            # notification, however many arrive within _REMEMBER.
            self._heard[lookup_hash] = now
            self._heard.move_to_end(lookup_hash)
            while self._heard:
                oldest, when = next(iter(self._heard.items()))
                if now - when < _REMEMBER:
                    break
                del self._heard[oldest]
            woken = self._waiters.pop(lookup_hash, set())
        for wake in woken:
            wake()

    def listening(self) -> None:
        with self._lock:
            self.listening_since = self._clock()

    def deaf(self) -> None:
        """The connection broke: whatever was sent meanwhile is lost, so
        every waiter looks again."""
        with self._lock:
            self.listening_since = None
            woken = [wake for waiting in self._waiters.values() for wake in waiting]
            self._waiters.clear()
        for wake in woken:
            wake()


def _postgresql_notifications(alias: str, channel: Channel) -> Iterator[str]:
    """Payloads heard on a connection of our own (autocommit, as Django opens them)."""
    wrapper = connections.create_connection(alias)
    try:
        wrapper.ensure_connection()
        raw = wrapper.connection
        raw.execute(f"LISTEN {CHANNEL}")
        channel.listening()
        while not _stop.is_set():
            # The timeout bounds each call, so that stop_listening() is heard.
            for notify in raw.notifies(timeout=1):
                yield notify.payload
    finally:
        wrapper.close()


def redis_channel(cache_alias: str) -> str:
    """The channel a request with ``wait`` publishes its lookup hash on when it ends."""
    return str(caches[cache_alias].make_key(f"{CHANNEL}:done"))


def _redis_notifications(cache_alias: str, channel: Channel) -> Iterator[str]:
    from django_redis import get_redis_connection

    pubsub = get_redis_connection(cache_alias).pubsub(ignore_subscribe_messages=False)
    try:
        pubsub.subscribe(redis_channel(cache_alias))
        while not _stop.is_set():
            # Short reads: the cache's socket timeout applies to them too.
            message = pubsub.get_message(timeout=0.5)
            if message is None:
                continue
            if message["type"] == "subscribe":
                channel.listening()
            elif message["type"] == "message":
                data = message["data"]
                yield data.decode() if isinstance(data, bytes) else str(data)
    finally:
        pubsub.close()


def _listen(channel: Channel, notifications: Callable[[Channel], Iterator[str]]) -> None:
    """The listener thread: until stop_listening(), reconnecting after a failure."""
    while not _stop.is_set():
        try:
            for lookup_hash in notifications(channel):
                channel.heard(lookup_hash)
        except Exception:
            _listener_outage.warn(
                "Lost the connection waiting duplicates are woken through; they "
                "back off until it is back"
            )
        channel.deaf()
        _stop.wait(_RECONNECT_DELAY)


# While Redis or the database is down the listener fails on every reconnect
# (each second, in every process): one warning a minute says it all.
_listener_outage = OutageLog(what="failed reconnections")

_channels: dict[tuple[int, str, str], Channel] = {}
_channels_lock = threading.Lock()
_threads: list[threading.Thread] = []
_stop = threading.Event()


def stop_listening(timeout: float = 5.0) -> None:
    """Close this process's listener connections; the next wait opens them again.

    A test database cannot be dropped while a LISTEN connection is open on it:
    the pytest fixtures (``django_idempotency.fixtures``) call this after each
    test that waited. Waiters still waiting back off instead.
    """
    with _channels_lock:
        channels = list(_channels.values())
        threads = list(_threads)
        _channels.clear()
        _threads.clear()
    if not threads:
        return
    _stop.set()
    for channel in channels:
        channel.deaf()
    for thread in threads:
        thread.join(timeout)
    _stop.clear()


def _channel(kind: str, alias: str) -> Channel:
    # Per process: a listener thread does not survive a fork (preloading servers).
    key = (os.getpid(), kind, alias)
    with _channels_lock:
        channel = _channels.get(key)
        if channel is None:
            channel = _channels[key] = Channel()
            source: Callable[[Channel], Iterator[str]]
            if kind == "redis":
                source = lambda c: _redis_notifications(alias, c)  # noqa: E731
            else:
                source = lambda c: _postgresql_notifications(alias, c)  # noqa: E731
            thread = threading.Thread(
                target=_listen,
                args=(channel, source),
                name=f"idempotency-{kind}-listener",
                daemon=True,
            )
            _threads.append(thread)
            thread.start()
    return channel


def _route(records_alias: str) -> tuple[str, str] | None:
    """How a duplicate of a request on ``records_alias`` is told: (kind, alias) or None."""
    app_settings = conf.get_settings()
    if app_settings.lock == "cache":
        return ("redis", app_settings.cache_alias)
    listen = app_settings.listen_database(records_alias)
    if listen is not None and connections[records_alias].vendor == "postgresql":
        return ("postgresql", listen)
    return None


def may_wait_on(records_alias: str) -> bool:
    """False where waiting would hold a lock the awaited request needs: on
    SQLite inside the caller's transaction (ATOMIC_REQUESTS), the claim joins
    that transaction and its write lock."""
    connection = connections[records_alias]
    return not (connection.vendor == "sqlite" and in_caller_transaction(connection))


def notify_postgresql(options_wait: timedelta, records_alias: str) -> bool:
    """Does a request with this ``wait`` send NOTIFY on ``records_alias``?
    Only where its duplicates listen there: else it costs nothing."""
    if not options_wait:
        return False
    route = _route(records_alias)
    return route is not None and route[0] == "postgresql"


def pending() -> int:
    """Waiters registered in this process, on every channel."""
    pid = os.getpid()
    with _channels_lock:
        mine = [c for (p, _, _), c in _channels.items() if p == pid]
    return sum(c.pending() for c in mine)


class Waiter:
    """One duplicate's wait: ``looking()`` before each look, ``may_wait()``
    when it found the key in progress, then ``pause()`` (or ``apause()``)."""

    def __init__(self, wait: timedelta, lookup_hash: str, records_alias: str) -> None:
        self.deadline = time.monotonic() + wait.total_seconds()
        self.lookup_hash = lookup_hash
        self.route = _route(records_alias)
        self._looked_at = time.monotonic()
        self._backoffs = 0
        self._pauses = 0

    def looking(self) -> None:
        self._looked_at = time.monotonic()

    @property
    def paused(self) -> bool:
        """Has it waited yet? Then a look starts with a read (``still_running``)."""
        return self._backoffs > 0 or self._pauses > 0

    def may_wait(self) -> bool:
        return time.monotonic() < self.deadline

    def _backoff(self) -> float:
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**self._backoffs)
        self._backoffs += 1
        # Jitter: duplicates that arrived together do not all look at once.
        return min(random.uniform(delay / 2, delay), self._left())

    def _left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def _listening_channel(self) -> Channel | None:
        if self.route is None:
            return None
        try:
            channel = _channel(*self.route)
        except Exception:  # e.g. the thread could not start
            logger.warning("Cannot listen for idempotency keys; backing off", exc_info=True)
            return None
        return channel if channel.listening_since is not None else None

    def pause(self) -> None:
        self._pauses += 1
        channel = self._listening_channel()
        if channel is None:
            time.sleep(self._backoff())
            return
        woken = threading.Event()
        if not channel.register(self.lookup_hash, woken.set, self._looked_at):
            return
        try:
            woken.wait(min(self._left(), SAFETY_INTERVAL))
        finally:
            channel.unregister(self.lookup_hash, woken.set)

    async def apause(self) -> None:
        """``pause`` for the event loop: it never blocks it."""
        self._pauses += 1
        channel = self._listening_channel()
        if channel is None:
            await asyncio.sleep(self._backoff())
            return
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:  # called in the listener thread
            # A closed loop raises RuntimeError: nobody waits there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(woken.set)

        if not channel.register(self.lookup_hash, wake, self._looked_at):
            return
        try:
            await asyncio.wait_for(woken.wait(), min(self._left(), SAFETY_INTERVAL))
        except TimeoutError:
            pass
        finally:
            # Also when cancelled (the client went away): nothing stays registered.
            channel.unregister(self.lookup_hash, wake)
