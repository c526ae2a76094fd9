import fcntl
import os
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from .factories import UserFactory, api_client

# The fixtures integrators enable the same way (docs/testing.md).
pytest_plugins = ["django_idempotency.fixtures"]


@pytest.fixture
def client() -> APIClient:
    return api_client()


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()


@pytest.fixture
def user(db: None) -> User:
    return UserFactory()


@pytest.fixture
def user_client(user: User) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _one_backend_runs_servers_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    """tests/run_backends.py runs the backends' suites at once. Tests that
    start server processes take turns across them (a file lock it names):
    three sets of 21 workers on two cores would measure the machine's
    overload instead of the app."""
    lock_path = os.environ.get("IDEMPOTENCY_TEST_PROCESS_LOCK")
    if not lock_path or request.node.get_closest_marker("processes") is None:
        yield
        return
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@pytest.fixture
def server_session() -> Iterator[None]:
    """For tests that end the database session (tests.helpers.end_session):
    skipped on SQLite, and PostgreSQL takes connections again afterwards,
    even when a test failed while they were refused."""
    from django.db import connection

    from tests.helpers import allow_connections

    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server session to lose")
    yield
    if connection.vendor == "postgresql":
        allow_connections()
