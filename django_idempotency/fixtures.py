"""pytest fixtures for projects that test their idempotent views.

Enable them in your ``conftest.py``::

    pytest_plugins = ["django_idempotency.fixtures"]
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from .testing import IdempotentAPIClient


@pytest.fixture
def idempotent_client() -> IdempotentAPIClient:
    """An ``IdempotentAPIClient``: a fresh key on every unsafe request."""
    return IdempotentAPIClient()


@pytest.fixture(autouse=True)
def _idempotency_listeners_closed() -> Iterator[None]:
    """A test whose views waited (option ``wait``) opened a LISTEN connection
    to the test database, which would keep it from being dropped: closed
    after the test (nothing to do, and no cost, for every other test)."""
    yield
    waiting = sys.modules.get("django_idempotency.waiting")  # only if a view waited
    if waiting is not None:
        waiting.stop_listening()
