"""Idempotency keys for Django REST Framework views, recorded in the database."""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["IdempotencyMixin", "erase", "idempotent"]

if TYPE_CHECKING:
    from .decorators import idempotent
    from .erasure import erase
    from .mixins import IdempotencyMixin


def __getattr__(name: str) -> Any:
    # Imported lazily: this package is in INSTALLED_APPS, and the engine needs
    # the models, which cannot be imported before the app registry is ready.
    if name == "idempotent":
        from .decorators import idempotent

        return idempotent
    if name == "IdempotencyMixin":
        from .mixins import IdempotencyMixin

        return IdempotencyMixin
    if name == "erase":
        from .erasure import erase

        return erase
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
