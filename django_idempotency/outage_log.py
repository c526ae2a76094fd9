"""Rate-limited warnings for a service that keeps failing (Redis, a
listener's connection): one traceback a minute per process, not one per
request."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("django_idempotency")


class OutageLog:
    """Warnings about a service failing, at most one per ``every`` seconds per
    process with the number left out (``what``: what is counted): during an
    outage every request or reconnection fails, and a traceback each would
    bury the rest of the log."""

    def __init__(
        self,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        what: str = "Redis failures",
    ) -> None:
        self.every = every
        self.clock = clock
        self.what = what
        self._lock = threading.Lock()
        self._last: float | None = None
        self._left_out = 0

    def warn(self, message: str) -> None:
        now = self.clock()
        with self._lock:
            if self._last is not None and now - self._last < self.every:
                self._left_out += 1
                return
            left_out, self._left_out, self._last = self._left_out, 0, now
        if left_out:
            message += f" ({left_out} more {self.what} since the last warning)"
        logger.warning(message, exc_info=True)
