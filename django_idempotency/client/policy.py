"""When a request is retried, how long the client waits, and what it reports.

Shared by the httpx transports and the requests adapter, which only translate
their library's requests, responses and exceptions into the terms used here.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

logger = logging.getLogger("django_idempotency.client")

#: RFC 9110 section 9.2.1: a client may repeat these without a key.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

#: A 501 or 505 says the server cannot do this at all: asking again will not help.
DEFAULT_RETRY_STATUSES = frozenset(range(500, 600)) - {501, 505}

IN_PROGRESS_CODE = "idempotency_request_in_progress"


def new_key() -> str:
    return str(uuid.uuid4())


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    # ASCII digits only: str.isdigit() also accepts "²", which float() refuses.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _problem_code(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    code = document.get("code") if isinstance(document, dict) else None
    return code if isinstance(code, str) else None


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """What the transports retry, and how long they keep trying.

    ``clock``, ``sleep``, ``async_sleep`` and ``jitter`` are there so that tests
    (yours and ours) can count attempts against a fake clock.
    """

    header: str = "Idempotency-Key"
    #: Methods that get a fresh key when the request has none.
    methods: Iterable[str] = frozenset({"POST", "PATCH"})
    #: Retry GET, HEAD, OPTIONS and TRACE, which need no key to be repeated.
    retry_safe_methods: bool = True
    #: Attempts in all, the first one included.
    max_attempts: int = 5
    #: The first backoff's upper bound in seconds; it doubles with every retry.
    base_delay: float = 0.5
    #: No single wait is longer, whatever the backoff or ``Retry-After`` says.
    max_delay: float = 10.0
    #: Seconds from the first attempt after which no new attempt starts (None: no limit).
    deadline: float | None = 30.0
    #: Statuses that are retried (a 409 is retried only for ``in_progress_codes``).
    retry_statuses: Iterable[int] = DEFAULT_RETRY_STATUSES
    #: Problem ``code`` values of a 409 that mean "the first request is still running".
    in_progress_codes: Iterable[str] = frozenset({IN_PROGRESS_CODE})
    key_factory: Callable[[], str] = new_key
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: A number in [0, 1) for the jitter.
    jitter: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        methods = frozenset(method.upper() for method in self.methods)
        if methods & SAFE_METHODS:
            raise ValueError(
                f"methods: {', '.join(sorted(methods & SAFE_METHODS))} are safe and take no key"
            )
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))
        object.__setattr__(self, "in_progress_codes", frozenset(self.in_progress_codes))
        if not self.header or not self.header.isascii() or ":" in self.header:
            raise ValueError(f"header: {self.header!r} is not a header name")
        if self.max_attempts < 1:
            raise ValueError("max_attempts: must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("base_delay and max_delay: must not be negative")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("deadline: must be positive, or None for no limit")

    def backoff(self, retry: int) -> float:
        """Full jitter: a uniform wait below a bound that doubles with each retry."""
        bound = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return self.jitter() * bound

    def start(self, method: str, has_key: bool) -> Attempts:
        """The attempts of one request; says whether it needs a key first."""
        method = method.upper()
        key_needed = not has_key and method in self.methods
        if has_key or key_needed:
            reason = None
        elif method in SAFE_METHODS:
            reason = None if self.retry_safe_methods else "retry_safe_methods is False"
        else:
            reason = f"a {method} without {self.header} may not be repeated"
        return Attempts(self, method, key_needed, reason)


@dataclass
class RetryReport:
    """What happened to one request: on the response, or on the exception raised.

    httpx: ``response.extensions["idempotency"]``; requests:
    ``response.idempotency``; both: ``exception.idempotency``.
    """

    method: str
    key: str | None = None
    attempts: int = 0
    #: One entry per attempt: the status (with the problem code of a 409) or the exception.
    outcomes: list[str] = field(default_factory=list)
    #: The waits between attempts, in seconds.
    delays: list[float] = field(default_factory=list)
    #: Why the request could not be retried at all (no key, streaming body), if so.
    not_retryable: str | None = None
    #: ``"max_attempts"`` or ``"deadline"`` when the last answer was still a retryable one.
    gave_up: str | None = None
    elapsed: float = 0.0

    @property
    def replayed_or_retried(self) -> bool:
        return self.attempts > 1


class Attempts:
    """The retry loop's state; the transports drive it."""

    def __init__(
        self, policy: RetryPolicy, method: str, key_needed: bool, not_retryable: str | None
    ) -> None:
        self.policy = policy
        self.key_needed = key_needed
        self.report = RetryReport(method=method, not_retryable=not_retryable)
        self._started = policy.clock()

    def new_key(self) -> str:
        return self.policy.key_factory()

    def refuse(self, reason: str) -> None:
        if self.report.not_retryable is None:
            self.report.not_retryable = reason

    def begin(self) -> None:
        self.report.attempts += 1

    def wants_body(self, status: int) -> bool:
        """A 409 is retried only if its body says the first request is still running."""
        return status == 409 and self.report.not_retryable is None

    def after_response(
        self, status: int, retry_after: str | None, body: bytes = b""
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to return this response."""
        if status == 409:
            code = _problem_code(body)
            self.report.outcomes.append(f"409 {code}" if code else "409")
            retry = code is not None and code in self.policy.in_progress_codes
        else:
            self.report.outcomes.append(str(status))
            retry = status in self.policy.retry_statuses
        if not retry:
            self._finish(None)
            return None
        return self._next(f"status {self.report.outcomes[-1]}", parse_retry_after(retry_after))

    def after_error(self, error: BaseException) -> float | None:
        """Seconds to wait before the next attempt, or None to raise ``error``."""
        self.report.outcomes.append(type(error).__name__)
        delay = self._next(f"{type(error).__name__}: {error}", None)
        if delay is None:
            error.idempotency = self.report  # type: ignore[attr-defined]
            error.add_note(
                f"django_idempotency.client: {self.report.attempts} attempt(s), "
                f"key {self.report.key}, outcomes {self.report.outcomes}"
            )
        return delay

    def _next(self, what: str, retry_after: float | None) -> float | None:
        policy, report = self.policy, self.report
        if report.not_retryable is not None:
            self._finish(None)
            return None
        if report.attempts >= policy.max_attempts:
            self._finish("max_attempts")
            return None
        if retry_after is not None:
            # The server knows when it will be ready: waiting less is a wasted attempt.
            delay = min(retry_after, policy.max_delay)
        else:
            delay = policy.backoff(report.attempts)
        if policy.deadline is not None and (
            policy.clock() - self._started + delay > policy.deadline
        ):
            self._finish("deadline")
            return None
        report.delays.append(delay)
        logger.info(
            "%s attempt %d (key %s) failed with %s; retrying in %.2f s",
            report.method,
            report.attempts,
            report.key,
            what,
            delay,
        )
        return delay

    def _finish(self, gave_up: str | None) -> None:
        self.report.gave_up = gave_up
        self.report.elapsed = self.policy.clock() - self._started
        if gave_up is not None:
            logger.warning(
                "%s (key %s): giving up after %d attempt(s) (%s): %s",
                self.report.method,
                self.report.key,
                self.report.attempts,
                gave_up,
                ", ".join(self.report.outcomes),
            )
        return None
