"""A process's wake-up channel (django_idempotency.waiting.Channel): which
notifications it remembers for waiters that register just after one arrived.
The clock is moved, not waited for."""

from __future__ import annotations

import pytest

from django_idempotency import waiting


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _registers(channel: waiting.Channel, lookup_hash: str, looked_at: float) -> bool:
    registered = channel.register(lookup_hash, lambda: None, looked_at)
    channel.unregister(lookup_hash, lambda: None)
    return registered


def test_a_waiter_that_looked_before_a_notification_is_told_to_look_again(clock: Clock) -> None:
    channel = waiting.Channel(clock)
    channel.listening()
    looked_at = clock.now
    clock.now += 0.1
    channel.heard("done")
    assert not _registers(channel, "done", looked_at)
    assert _registers(channel, "done", clock.now + 0.1)


def test_notifications_are_remembered_for_a_while_however_many_arrive(clock: Clock) -> None:
    channel = waiting.Channel(clock)
    channel.listening()
    looked_at = clock.now
    clock.now += 0.1
    # Every process hears every request's notification: thousands a second.
    for n in range(20_000):
        channel.heard(f"key-{n}")
        clock.now += 0.0001
    assert not _registers(channel, "key-0", looked_at)
    assert not _registers(channel, "key-19999", looked_at)

    clock.now += waiting._REMEMBER
    channel.heard("later")
    # Forgotten: a waiter registering this late looked after the notification.
    assert list(channel._heard) == ["later"]
    channel.heard("key-5")
    assert list(channel._heard) == ["later", "key-5"]


def test_a_listener_that_keeps_failing_warns_once_a_minute(
    clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from collections.abc import Iterator

    from django_idempotency.outage_log import OutageLog

    monkeypatch.setattr(
        waiting, "_listener_outage", OutageLog(clock=clock, what="failed reconnections")
    )
    monkeypatch.setattr(waiting, "_RECONNECT_DELAY", 0)
    attempts = 0

    def unreachable(channel: waiting.Channel) -> Iterator[str]:
        nonlocal attempts
        attempts += 1
        if attempts == 30:
            clock.now += 61  # a minute of reconnecting, one try a second
        if attempts == 31:
            waiting._stop.set()
        return iter(()) if attempts > 31 else _failing()

    def _failing() -> Iterator[str]:
        raise ConnectionError("Redis is down")
        yield ""  # type: ignore[unreachable]  # a generator, as the real ones

    caplog.set_level("WARNING", logger="django_idempotency")
    try:
        waiting._listen(waiting.Channel(clock), unreachable)
    finally:
        waiting._stop.clear()

    warnings = [r for r in caplog.records if "Lost the connection" in r.getMessage()]
    assert attempts == 31
    assert len(warnings) == 2
    assert warnings[0].exc_info is not None
    assert "(28 more failed reconnections since the last warning)" in warnings[1].getMessage()
