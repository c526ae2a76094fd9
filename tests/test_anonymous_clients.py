"""Keys from clients that cannot be told apart: refused by default, scoped to
the session with ``user_or_session`` (docs/http.md, "Anonymous clients")."""

import hashlib
from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_django import DjangoAssertNumQueries
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord
from tests.factories import UserFactory
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db


def _post(client: APIClient, url: str, key: str, amount: int = 10) -> Any:
    return client.post(url, {"amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def _guest() -> APIClient:
    """A browser that opened the checkout page: it has a saved session."""
    browser = APIClient()
    assert browser.get("/checkout/").status_code == 200
    return browser


def _assert_anonymous_refusal(response: Any) -> None:
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_key_anonymous"
    assert "Retry-After" not in response
    assert "Idempotent-Replayed" not in response


def test_a_key_from_an_anonymous_client_is_refused_before_the_view_runs(
    anonymous_client: APIClient, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    with django_assert_num_queries(0):
        response = _post(anonymous_client, "/function/", "guest-1")

    _assert_anonymous_refusal(response)
    assert Payment.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


def test_two_anonymous_clients_never_share_a_stored_response() -> None:
    first = _post(APIClient(), "/function/", "predictable")
    second = _post(APIClient(), "/function/", "predictable")

    _assert_anonymous_refusal(first)
    _assert_anonymous_refusal(second)
    assert Payment.objects.count() == 0


def test_an_anonymous_request_without_a_key_runs_unprotected(anonymous_client: APIClient) -> None:
    response = anonymous_client.post("/function/", {"amount": 10}, format="json")

    assert response.status_code == 201
    assert Payment.objects.count() == 1


def test_required_keys_still_answer_key_missing_to_anonymous_clients(
    anonymous_client: APIClient,
) -> None:
    response = anonymous_client.post("/options/required/", {"amount": 10}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_missing"


def test_the_refusal_carries_the_request_id(anonymous_client: APIClient) -> None:
    response = _post(anonymous_client, "/function/", "guest-1")

    assert response["X-Request-Id"]


def test_an_authenticated_user_keeps_the_user_scope(user_client: APIClient, user: User) -> None:
    assert _post(user_client, "/function/", "u-1").status_code == 201

    assert IdempotencyRecord.objects.get(key="u-1").scope == f"user:{user.pk}"


# user_or_session: a browser checkout that lets guests pay ---------------------


def test_a_guest_retry_in_the_same_session_is_replayed() -> None:
    guest = _guest()
    first = _post(guest, "/guest-orders/", "order-1")
    retry = _post(guest, "/guest-orders/", "order-1")

    assert first.status_code == 201
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert Payment.objects.count() == 1


def test_two_guests_with_one_key_are_two_operations() -> None:
    first = _post(_guest(), "/guest-orders/", "order-1")
    second = _post(_guest(), "/guest-orders/", "order-1")

    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert first.json()["id"] != second.json()["id"]
    assert Payment.objects.count() == 2


def test_a_guest_without_a_session_is_told_to_start_one() -> None:
    response = _post(APIClient(), "/guest-orders/", "order-1")

    _assert_anonymous_refusal(response)
    assert "session" in response.json()["detail"]
    assert Payment.objects.count() == 0


def test_a_session_cookie_the_server_does_not_know_is_no_session() -> None:
    forger = APIClient()
    forger.cookies["sessionid"] = "x" * 32

    _assert_anonymous_refusal(_post(forger, "/guest-orders/", "order-1"))
    assert Payment.objects.count() == 0


def test_the_session_key_is_not_stored_in_the_record() -> None:
    guest = _guest()
    _post(guest, "/guest-orders/", "order-1")

    session_key = guest.cookies["sessionid"].value
    scope = IdempotencyRecord.objects.get(key="order-1").scope
    assert session_key not in scope
    assert scope == "session:" + hashlib.sha256(session_key.encode()).hexdigest()


def test_a_signed_in_customer_under_user_or_session_has_the_user_scope() -> None:
    user = UserFactory()
    customer = APIClient()
    customer.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    assert _post(customer, "/guest-orders/", "order-1").status_code == 201
    assert IdempotencyRecord.objects.get(key="order-1").scope == f"user:{user.pk}"
