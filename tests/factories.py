import datetime as dt
import json
import secrets

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from django_idempotency.identity import lookup_hash
from django_idempotency.models import IdempotencyRecord, State


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")


class RecordFactory(factory.django.DjangoModelFactory):
    """A completed record, as a first request would have left it."""

    class Meta:
        model = IdempotencyRecord

    class Params:
        per_endpoint = False

    key = factory.Sequence(lambda n: f"key-{n}")
    scope = "anonymous"
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
