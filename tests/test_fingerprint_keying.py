"""The stored fingerprint is an HMAC keyed from SECRET_KEY: a short body
cannot be recovered from a row by brute force, and rotating the secret (the
old one in SECRET_KEY_FALLBACKS) keeps live keys replaying."""

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord
from tests.factories import api_client
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db


def post(client: APIClient, key: str, amount: int) -> Any:
    return client.post("/function/", {"amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def _unkeyed_guesses(amount_range: Iterable[int]) -> Iterator[tuple[int, str]]:
    """What an attacker with the row could compute without the secret: the
    old scheme (SHA-256 of method, path, query and SHA-256 of the body)."""
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from django_idempotency.identity import default_fingerprint

    factory = APIRequestFactory()
    for amount in amount_range:
        request = Request(factory.post("/function/", {"amount": amount}, format="json"))
        yield amount, default_fingerprint(request).hex()


def test_the_stored_fingerprint_cannot_be_matched_without_the_secret() -> None:
    post(api_client(), "pin-1", 4821)
    stored = IdempotencyRecord.objects.get(key="pin-1").fingerprint
    assert all(guess != stored for _, guess in _unkeyed_guesses(range(4815, 4830)))
    assert stored not in {hashlib.sha256(b'{"amount":4821}').hexdigest()}


def test_another_secret_gives_another_fingerprint() -> None:
    with override_settings(SECRET_KEY="first-secret"):
        post(api_client(), "pin-2", 1)
    with override_settings(SECRET_KEY="second-secret"):
        post(api_client(), "pin-3", 1)
    first = IdempotencyRecord.objects.get(key="pin-2").fingerprint
    second = IdempotencyRecord.objects.get(key="pin-3").fingerprint
    assert first != second


def test_a_rotated_secret_in_the_fallbacks_keeps_live_keys_replaying() -> None:
    client = api_client()
    with override_settings(SECRET_KEY="old-secret"):
        first = post(client, "rot-1", 7)
    with override_settings(SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=["old-secret"]):
        replay = post(client, "rot-1", 7)
        other_body = post(client, "rot-1", 8)
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert other_body.status_code == 422
    assert Payment.objects.count() == 1


def test_without_the_old_secret_a_retry_is_refused_not_run_again() -> None:
    client = api_client()
    with override_settings(SECRET_KEY="old-secret"):
        post(client, "rot-2", 7)
    with override_settings(SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=[]):
        retry = post(client, "rot-2", 7)
    assert retry.status_code == 422  # documented: keep the old secret in the fallbacks
    assert Payment.objects.count() == 1
