"""django_idempotency.testing: the client and assertions integrators use to
test their own views (docs/testing.md)."""

from typing import Any

import pytest
from django.contrib.auth.models import User

from django_idempotency.models import IdempotencyRecord
from django_idempotency.testing import (
    IdempotentAPIClient,
    assert_not_replayed,
    assert_replayed,
    assert_runs_once,
    count_outcomes,
)
from tests.factories import CLIENT_API_KEY
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db

AMOUNT = {"amount": 10}


@pytest.fixture
def client() -> IdempotentAPIClient:
    return IdempotentAPIClient(HTTP_X_API_KEY=CLIENT_API_KEY)


def test_every_unsafe_request_gets_a_fresh_key(client: IdempotentAPIClient) -> None:
    first = client.post("/function/", AMOUNT, format="json")
    second = client.post("/function/", AMOUNT, format="json")

    assert_not_replayed(first)
    assert_not_replayed(second)
    assert Payment.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 2
    assert len(set(IdempotencyRecord.objects.values_list("key", flat=True))) == 2


def test_safe_requests_carry_no_key(client: IdempotentAPIClient) -> None:
    client.get("/function/")

    assert client.last_idempotency_key is None
    assert IdempotencyRecord.objects.count() == 0


def test_resend_is_a_retry_with_the_same_key(client: IdempotentAPIClient) -> None:
    first = client.post("/function/", AMOUNT, format="json")
    retry = client.resend()

    assert_replayed(retry, first)
    assert Payment.objects.count() == 1
    assert IdempotencyRecord.objects.get().key == client.last_idempotency_key


def test_a_given_key_is_sent_and_none_sends_no_key(client: IdempotentAPIClient) -> None:
    client.post("/function/", AMOUNT, format="json", idempotency_key="pay-1")
    client.post("/function/", AMOUNT, format="json", idempotency_key=None)

    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["pay-1"]
    assert Payment.objects.count() == 2


def test_a_key_header_set_by_the_test_wins(client: IdempotentAPIClient) -> None:
    client.post("/function/", AMOUNT, format="json", headers={"Idempotency-Key": "mine"})

    assert IdempotencyRecord.objects.get().key == "mine"


def test_another_key_header_for_views_configured_with_one() -> None:
    client = IdempotentAPIClient(HTTP_X_API_KEY=CLIENT_API_KEY, key_header="X-Idempotency-Key")

    assert client.post("/letters/", AMOUNT, format="json").status_code == 201
    assert client.resend().status_code == 409  # that view answers replays with 409


def test_assert_runs_once_passes_for_a_protected_view(client: IdempotentAPIClient) -> None:
    responses = assert_runs_once(
        lambda: client.post("/function/", AMOUNT, format="json", idempotency_key="once"), times=4
    )

    assert len(responses) == 4
    assert Payment.objects.count() == 1


def test_assert_runs_once_fails_for_a_view_without_protection(client: IdempotentAPIClient) -> None:
    with pytest.raises(AssertionError, match="stored 0 times"):
        assert_runs_once(
            lambda: client.post("/bare/", AMOUNT, format="json", idempotency_key="twice")
        )
    assert Payment.objects.count() == 3


def test_assert_runs_once_fails_when_a_retry_is_answered_otherwise(
    client: IdempotentAPIClient,
) -> None:
    def send() -> Any:
        return client.post(
            "/function/",
            {"amount": 10 + Payment.objects.count()},
            format="json",
            idempotency_key="changing",
        )

    with pytest.raises(AssertionError):
        assert_runs_once(send)


def test_assert_replayed_fails_on_a_first_answer(client: IdempotentAPIClient) -> None:
    with pytest.raises(AssertionError, match="expected a replay"):
        assert_replayed(client.post("/function/", AMOUNT, format="json"))


def test_assert_not_replayed_fails_on_a_replay(client: IdempotentAPIClient) -> None:
    client.post("/function/", AMOUNT, format="json")

    with pytest.raises(AssertionError, match="got a replay"):
        assert_not_replayed(client.resend())


def test_outcomes_are_counted_without_the_replay_header(client: IdempotentAPIClient) -> None:
    with count_outcomes() as outcomes:
        client.post("/options/no-replayed-header/", AMOUNT, format="json")
        retry = client.resend()

    assert "Idempotent-Replayed" not in retry
    assert (outcomes.stored, outcomes.replayed) == (1, 1)


def test_the_pytest_fixture_is_a_client_that_sends_fresh_keys(
    idempotent_client: IdempotentAPIClient, user: User
) -> None:
    idempotent_client.force_authenticate(user)

    first = idempotent_client.post("/function/", AMOUNT, format="json")

    assert_replayed(idempotent_client.resend(), first)
    assert IdempotencyRecord.objects.get().scope == f"user:{user.pk}"
