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
