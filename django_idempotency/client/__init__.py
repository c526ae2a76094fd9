"""Retrying HTTP clients for APIs protected by idempotency keys.

Nothing here imports Django: a service that calls another one over HTTP can use
these transports without settings. ``httpx`` and ``requests`` are imported only
when their transport is first used, so either one alone is enough
(``pip install "django-idempotency[client]"`` installs both).
"""

from typing import TYPE_CHECKING, Any

from .policy import RetryPolicy, RetryReport

__all__ = [
    "AsyncIdempotentTransport",
    "IdempotentAdapter",
    "IdempotentTransport",
    "RetryPolicy",
    "RetryReport",
]

if TYPE_CHECKING:
    from ._httpx import AsyncIdempotentTransport, IdempotentTransport
    from ._requests import IdempotentAdapter


def __getattr__(name: str) -> Any:
    if name in ("IdempotentTransport", "AsyncIdempotentTransport"):
        from . import _httpx

        return getattr(_httpx, name)
    if name == "IdempotentAdapter":
        from ._requests import IdempotentAdapter

        return IdempotentAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
