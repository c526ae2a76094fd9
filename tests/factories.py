import datetime as dt
import hashlib
import json
import secrets
from typing import TYPE_CHECKING, Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from django_idempotency.identity import lookup_hash
from django_idempotency.models import IdempotencyRecord, State

#: The API key the test clients present (tests.testapp.authentication), and the
#: scope the default scope gives it: anonymous requests cannot send keys.
CLIENT_API_KEY = "test-client"
CLIENT_SCOPE = "auth:" + hashlib.sha256(CLIENT_API_KEY.encode()).hexdigest()


def api_client(api_key: str = CLIENT_API_KEY, **options: Any) -> APIClient:
    """A client identified by an API key, without a user."""
    return APIClient(HTTP_X_API_KEY=api_key, **options)


class UserFactory(factory.django.DjangoModelFactory[User]):
    if TYPE_CHECKING:
        # Calling a factory creates its model (factory_boy's metaclass __call__); its
        # declared __new__ is untyped. The model is not a subclass of the factory.
        def __new__(cls, **kwargs: Any) -> User:  # type: ignore[misc]
            ...

    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")


class RecordFactory(factory.django.DjangoModelFactory[IdempotencyRecord]):
    """A completed record, as a first request would have left it."""

    if TYPE_CHECKING:  # as for UserFactory

        def __new__(cls, **kwargs: Any) -> IdempotencyRecord:  # type: ignore[misc]
            ...

    class Meta:
        model = IdempotencyRecord

    class Params:
        per_endpoint = False
        #: A claim whose request still runs: no response yet, locked 5 more minutes.
        running = factory.Trait(
            state=State.IN_PROGRESS,
            locked_until=factory.LazyAttribute(lambda o: o.created_at + dt.timedelta(minutes=5)),
            completed_at=None,
            response_status=None,
            response_body=None,
            response_headers="",
        )

    key = factory.Sequence(lambda n: f"key-{n}")
    scope = CLIENT_SCOPE
    endpoint = "POST function/"
    method = "POST"
    path = "/function/"
    lookup_hash = factory.LazyAttribute(
        lambda o: lookup_hash(o.scope, o.key, o.endpoint if o.per_endpoint else None)
    )
    fingerprint = "0" * 64
    state = State.COMPLETED
    token = factory.LazyFunction(lambda: secrets.token_hex(16))
    request_id = factory.LazyFunction(lambda: secrets.token_hex(8))
    created_at = factory.LazyFunction(timezone.now)
    locked_until = factory.LazyAttribute(lambda o: o.created_at + dt.timedelta(seconds=60))
    expires_at = factory.LazyAttribute(lambda o: o.created_at + dt.timedelta(hours=24))
    completed_at = factory.LazyAttribute(lambda o: o.created_at)
    response_status = 201
    response_headers = json.dumps([["Content-Type", "application/json"]])
    response_body = b'{"id": 1}'
