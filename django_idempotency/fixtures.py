"""pytest fixtures for projects that test their idempotent views.

Enable them in your ``conftest.py``::

    pytest_plugins = ["django_idempotency.fixtures"]
"""

from __future__ import annotations

import pytest

from .testing import IdempotentAPIClient


@pytest.fixture
def idempotent_client() -> IdempotentAPIClient:
    """An ``IdempotentAPIClient``: a fresh key on every unsafe request."""
    return IdempotentAPIClient()
