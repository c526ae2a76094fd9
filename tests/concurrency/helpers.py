import threading
import time
from collections.abc import Callable
from typing import Any

from django_idempotency.models import IdempotencyRecord, State
from tests.clock import pass_lock_timeout


class Background:
    """Run a request in a thread; ``result()`` joins it."""

    def __init__(self, func: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = func()
            except BaseException as exc:
                self._error = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def result(self) -> Any:
        self.thread.join()
        if self._error is not None:
            raise self._error
        return self._value

    def error(self) -> BaseException | None:
        self.thread.join()
        return self._error


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_for_claim(key: str) -> IdempotencyRecord:
    wait_until(
        lambda: IdempotencyRecord.objects.filter(key=key, state=State.IN_PROGRESS).exists(),
        f"the claim of {key}",
    )
    return IdempotencyRecord.objects.get(key=key)


def wait_for_lock_expiry(key: str) -> None:
    """Let the claim's lock_timeout pass, by the database's clock (and Redis's)."""
    pass_lock_timeout(key)
