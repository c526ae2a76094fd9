"""Helpers for testing your own idempotent views (docs/testing.md).

``IdempotentAPIClient`` sends a fresh key with every unsafe request, as a
well-behaved client does, so that tests of protected views need not invent
keys; ``resend()`` is the client's retry. The assertions check what the
client of a payment API relies on: a retry is a replay, and N duplicates ran
the view once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.http.response import HttpResponse, HttpResponseBase
from rest_framework.test import APIClient

from .signals import idempotency_replayed, idempotency_stored

__all__ = [
    "FRESH",
    "IdempotentAPIClient",
    "assert_not_replayed",
    "assert_replayed",
    "assert_runs_once",
    "count_outcomes",
]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Fresh:
    def __repr__(self) -> str:
        return "FRESH"


#: ``idempotency_key=FRESH`` (the default): a new UUID for this request.
FRESH: Any = _Fresh()


class IdempotentAPIClient(APIClient):
    """An ``APIClient`` that sends a new ``Idempotency-Key`` with every POST,
    PUT, PATCH and DELETE.

    Pass ``idempotency_key="..."`` to send a given key, or ``None`` to send
    none. ``resend()`` repeats the last unsafe request with its key, as a
    client retrying after a timeout does. ``key_header`` names the header for
    views configured with another one (``header`` option).
    """

    def __init__(self, *args: Any, key_header: str = "Idempotency-Key", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_header = key_header
        self.last_idempotency_key: str | None = None
        self._last_unsafe: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    def generic(  # type: ignore[override]  # the stubs' three bases disagree
        self,
        method: str,
        path: str,
        data: Any = "",
        content_type: str = "application/octet-stream",
        secure: bool = False,
        **extra: Any,
    ) -> Any:
        # Every verb helper (post, put, ...) of Django's and DRF's test
        # clients ends here with its extra keyword arguments.
        key = extra.pop("idempotency_key", FRESH)
        if method.upper() in UNSAFE_METHODS:
            environ_name = "HTTP_" + self.key_header.upper().replace("-", "_")
            # A key the test sets itself, as a header, wins.
            given = environ_name in extra or self.key_header.lower() in {
                name.lower() for name in (extra.get("headers") or {})
            }
            if not given:
                if key is FRESH:
                    key = str(uuid.uuid4())
                if key is not None:
                    extra[environ_name] = key
                self.last_idempotency_key = key
            self._last_unsafe = ((method, path, data, content_type, secure), dict(extra))
        return super().generic(method, path, data, content_type, secure, **extra)

    def resend(self) -> Any:
        """Send the last POST/PUT/PATCH/DELETE again, with the same key."""
        if self._last_unsafe is None:
            raise AssertionError("resend(): this client has sent no unsafe request yet")
        args, kwargs = self._last_unsafe
        return super().generic(*args, **kwargs)


def assert_replayed(
    response: HttpResponseBase,
    first: HttpResponseBase | None = None,
    *,
    header: str = "Idempotent-Replayed",
) -> None:
    """The response is a replay; given ``first``, of that response's status and body."""
    value = response.get(header)
    assert value == "true", (
        f"expected a replay ({header}: true), got {response.status_code} with {header}: {value!r}"
    )
    if first is not None:
        assert response.status_code == first.status_code, (
            f"replayed status {response.status_code} is not the first answer's {first.status_code}"
        )
        assert _content(response) == _content(first), "the replayed body differs from the first"


def assert_not_replayed(response: HttpResponseBase, *, header: str = "Idempotent-Replayed") -> None:
    """The view answered this request itself."""
    assert header not in response, (
        f"expected the view's own answer, got a replay ({header}: {response[header]})"
    )


@dataclass
class Outcomes:
    """What the engine did while ``count_outcomes()`` was open."""

    stored: int = 0
    replayed: int = 0
    keys: list[str] = field(default_factory=list)


@contextmanager
def count_outcomes() -> Iterator[Outcomes]:
    """Count stored and replayed responses (from the app's signals), whatever
    the replay header is configured to be."""
    outcomes = Outcomes()

    def on_stored(sender: Any, key: str, **kwargs: Any) -> None:
        outcomes.stored += 1
        outcomes.keys.append(key)

    def on_replayed(sender: Any, **kwargs: Any) -> None:
        outcomes.replayed += 1

    idempotency_stored.connect(on_stored, weak=False)
    idempotency_replayed.connect(on_replayed, weak=False)
    try:
        yield outcomes
    finally:
        idempotency_stored.disconnect(on_stored)
        idempotency_replayed.disconnect(on_replayed)


def assert_runs_once(
    send: Callable[[], HttpResponseBase], times: int = 3
) -> list[HttpResponseBase]:
    """Call ``send`` (one request with a fixed key) ``times`` times and assert
    that the view ran for the first only and every other call replayed its
    status and body. Returns the responses.

    Requests sent one after another, as the test client does; the race
    between simultaneous duplicates is the app's own test suite's job.
    """
    if times < 2:
        raise ValueError("assert_runs_once needs at least 2 requests")
    with count_outcomes() as outcomes:
        responses = [send() for _ in range(times)]
    first, *rest = responses
    assert outcomes.stored == 1, (
        f"the view's answer was stored {outcomes.stored} times for {times} duplicates "
        f"(first answer: {first.status_code}); a stored answer is what retries get"
    )
    assert outcomes.replayed == times - 1, (
        f"{outcomes.replayed} of {times - 1} retries were replays"
    )
    for response in rest:
        assert response.status_code == first.status_code, (
            f"a retry got {response.status_code}, the first request {first.status_code}"
        )
        assert _content(response) == _content(first), "a retry's body differs from the first"
    return responses


def _content(response: HttpResponseBase) -> bytes:
    # Streaming answers are never stored, so never compared here.
    return response.content if isinstance(response, HttpResponse) else b""
