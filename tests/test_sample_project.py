"""The sample project reproduces four public APIs' idempotency with options alone.

One test class per endpoint group, one test per column of the table in the
docs (header, key rule, retention, scope, replay, reuse with another body,
other), driven through DRF's APIClient like a client of that API would.
"""

from __future__ import annotations

import io
import json
import shlex
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.contrib.auth.models import User
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord
from django_idempotency.testing import (
    IdempotentAPIClient,
    assert_not_replayed,
    assert_replayed,
    assert_runs_once,
)
from sample_project.demo.models import Card, IdentityCheck, Letter, Payment, Transfer

from .factories import UserFactory, api_client

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _sample_urls() -> Iterator[None]:
    with override_settings(ROOT_URLCONF="sample_project.urls"):
        yield


def _client_for(user: User) -> APIClient:
    client = api_client()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def alice(db: None) -> User:
    return UserFactory(username="alice")


@pytest.fixture
def bob(db: None) -> User:
    return UserFactory(username="bob")


@pytest.fixture
def as_alice(alice: User) -> APIClient:
    return _client_for(alice)


@pytest.fixture
def as_bob(bob: User) -> APIClient:
    return _client_for(bob)


def post(
    client: APIClient,
    path: str,
    body: Any,
    key: str | None = None,
    header: str = "Idempotency-Key",
    headers: dict[str, str] | None = None,
    form: bool = False,
) -> Any:
    """POST like an API client: JSON, or form fields as ``curl -d`` sends them."""
    headers = dict(headers or {})
    if key is not None:
        headers[header] = key
    if form:
        return client.post(
            path,
            urlencode(body),
            content_type="application/x-www-form-urlencoded",
            headers=headers,
        )
    return client.post(path, body, format="json", headers=headers)


def problem_code(response: Any) -> str:
    assert response["Content-Type"] == PROBLEM
    code: str = response.json()["code"]
    return code


def assert_replay_of(replay: Any, original: Any, status: int | None = None) -> None:
    assert replay.status_code == (status or original.status_code)
    assert replay.content == original.content
    assert replay["Idempotent-Replayed"] == "true"
    assert replay["X-Request-Id"] == original["X-Request-Id"]


def assert_remembered_for_24_hours(key: str) -> None:
    record = IdempotencyRecord.objects.get(key=key)
    assert abs(record.expires_at - record.created_at - timedelta(hours=24)) < timedelta(seconds=1)


def expire(key: str) -> None:
    """What 24 hours do to a record, without waiting for them."""
    an_hour_ago = timezone.now() - timedelta(hours=1)
    IdempotencyRecord.objects.filter(key=key).update(expires_at=an_hour_ago)


COFFEE = {"amount": 1250, "currency": "EUR", "description": "Coffee beans"}
TEA = {"amount": 900, "currency": "EUR", "description": "Green tea"}
CARD = {"type": "VIRTUAL", "memo": "Travel", "spend_limit": 50000}
IDENTITY = {"country": "MA", "reference": "customer-1"}
LETTER = {
    "recipient": "Mr John Smith",
    "address": "123 Sample Street, Sampletown, AB12 3CD, GB",
    "pages": "Hello John",
    "test": "true",
}
TRANSFER = {"amount": "25.00", "currency": "USDT", "destination": "wallet-7"}


def test_root_url_indexes_the_endpoint_groups_without_authentication(client: APIClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    groups = {group["name"]: group for group in response.json()["groups"]}
    assert list(groups) == ["ietf", "lithic", "txcloud", "stannp", "orzcash", "async"]
    assert groups["stannp"]["options"]["replay_status"] == 409


def test_endpoints_require_a_token_before_any_key_is_looked_at(
    client: APIClient, as_alice: APIClient
) -> None:
    first = post(as_alice, "/ietf/payments/", COFFEE, key="k-auth")

    anonymous = post(client, "/ietf/payments/", COFFEE, key="k-auth")

    assert first.status_code == 201
    assert anonymous.status_code == 401
    assert b"Coffee" not in anonymous.content


class TestDefaults:
    """The app's defaults: the IETF draft's behaviour."""

    def test_header_is_optional_and_without_it_the_view_runs_unprotected(
        self, as_alice: APIClient
    ) -> None:
        post(as_alice, "/ietf/payments/", COFFEE)
        post(as_alice, "/ietf/payments/", COFFEE)

        assert Payment.objects.count() == 2
        assert not IdempotencyRecord.objects.exists()

    def test_key_rule_is_visible_ascii_up_to_255_characters(self, as_alice: APIClient) -> None:
        longest = post(as_alice, "/ietf/payments/", COFFEE, key="k" * 255)
        too_long = post(as_alice, "/ietf/payments/", COFFEE, key="k" * 256)
        with_space = post(as_alice, "/ietf/payments/", COFFEE, key="a b")

        assert longest.status_code == 201
        assert too_long.status_code == 400
        assert problem_code(too_long) == "idempotency_key_invalid"
        assert "at most 255" in too_long.json()["detail"]
        assert problem_code(with_space) == "idempotency_key_invalid"
        assert Payment.objects.count() == 1

    def test_retention_is_24_hours_then_the_key_is_new(self, as_alice: APIClient) -> None:
        post(as_alice, "/ietf/payments/", COFFEE, key="k-ttl")
        assert_remembered_for_24_hours("k-ttl")
        expire("k-ttl")

        again = post(as_alice, "/ietf/payments/", COFFEE, key="k-ttl")

        assert again.status_code == 201
        assert "Idempotent-Replayed" not in again
        assert Payment.objects.count() == 2

    def test_scope_is_the_user(self, as_alice: APIClient, as_bob: APIClient, bob: User) -> None:
        alices = post(as_alice, "/ietf/payments/", COFFEE, key="k-shared")

        bobs = post(as_bob, "/ietf/payments/", COFFEE, key="k-shared")

        assert bobs.status_code == 201
        assert "Idempotent-Replayed" not in bobs
        assert bobs.json()["id"] != alices.json()["id"]
        assert Payment.objects.get(pk=bobs.json()["id"]).owner == bob

    def test_replay_is_the_original_status_and_body_marked_replayed(
        self, as_alice: APIClient
    ) -> None:
        original = post(as_alice, "/ietf/payments/", COFFEE, key="k-replay")

        replay = post(as_alice, "/ietf/payments/", COFFEE, key="k-replay")

        assert original.status_code == 201
        assert "Idempotent-Replayed" not in original
        assert_replay_of(replay, original)
        assert Payment.objects.count() == 1

    def test_reuse_with_another_body_is_422(self, as_alice: APIClient) -> None:
        post(as_alice, "/ietf/payments/", COFFEE, key="k-reuse")

        reuse = post(as_alice, "/ietf/payments/", TEA, key="k-reuse")

        assert reuse.status_code == 422
        assert problem_code(reuse) == "idempotency_key_reused"
        assert reuse.json()["type"].endswith("/errors/#idempotency-key-reused")
        assert Payment.objects.count() == 1

    def test_patch_is_protected_and_put_ignores_the_key(self, as_alice: APIClient) -> None:
        payment = post(as_alice, "/ietf/payments/", COFFEE).json()
        url = f"/ietf/payments/{payment['id']}/"

        patched = as_alice.patch(
            url, {"description": "A"}, format="json", headers={"Idempotency-Key": "k-patch"}
        )
        replayed = as_alice.patch(
            url, {"description": "A"}, format="json", headers={"Idempotency-Key": "k-patch"}
        )
        put = as_alice.put(url, COFFEE, format="json", headers={"Idempotency-Key": "k-put"})

        assert_replay_of(replayed, patched)
        assert put.status_code == 200
        assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k-patch"]

    def test_viewset_action_is_protected_too(self, as_alice: APIClient) -> None:
        payment = post(as_alice, "/ietf/payments/", COFFEE).json()
        url = f"/ietf/payments/{payment['id']}/refund/"

        first = post(as_alice, url, {"amount": 250}, key="k-refund")
        retry = post(as_alice, url, {"amount": 250}, key="k-refund")

        assert first.status_code == 200
        assert_replay_of(retry, first)
        assert Payment.objects.get().refunded_amount == 250


class TestLithic:
    """Lithic: Idempotency-Key on POST, any key up to 255, 24 h per account,
    original status and response (500s included), reuse is an error."""

    def test_header_is_honoured_on_post_only(self, as_alice: APIClient) -> None:
        card = post(as_alice, "/lithic/cards/", CARD, key="k-card").json()
        url = f"/lithic/cards/{card['token']}/"

        first = as_alice.patch(
            url, {"memo": "A"}, format="json", headers={"Idempotency-Key": "k-p"}
        )
        second = as_alice.patch(
            url, {"memo": "B"}, format="json", headers={"Idempotency-Key": "k-p"}
        )

        assert (first.status_code, second.status_code) == (200, 200)
        assert second.json()["memo"] == "B"
        assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k-card"]

    def test_any_key_of_at_most_255_characters(self, as_alice: APIClient) -> None:
        odd = post(as_alice, "/lithic/cards/", CARD, key="Ab9!#$%&'*+-.^_`|~")
        longest = post(as_alice, "/lithic/cards/", CARD, key="x" * 255)
        too_long = post(as_alice, "/lithic/cards/", CARD, key="x" * 256)

        assert (odd.status_code, longest.status_code) == (201, 201)
        assert problem_code(too_long) == "idempotency_key_invalid"
        assert Card.objects.count() == 2

    def test_retention_is_24_hours(self, as_alice: APIClient) -> None:
        post(as_alice, "/lithic/cards/", CARD, key="k-ttl")

        assert_remembered_for_24_hours("k-ttl")

    def test_scope_is_the_account(self, as_alice: APIClient, as_bob: APIClient) -> None:
        post(as_alice, "/lithic/cards/", CARD, key="k-shared")

        bobs = post(as_bob, "/lithic/cards/", CARD, key="k-shared")

        assert bobs.status_code == 201
        assert "Idempotent-Replayed" not in bobs
        assert Card.objects.count() == 2

    def test_replay_is_the_original_status_and_response(self, as_alice: APIClient) -> None:
        original = post(as_alice, "/lithic/cards/", CARD, key="k-replay")

        replay = post(as_alice, "/lithic/cards/", CARD, key="k-replay")

        assert_replay_of(replay, original, status=201)
        assert Card.objects.count() == 1

    def test_even_a_500_is_stored_and_replayed(self, as_alice: APIClient) -> None:
        failed = post(as_alice, "/lithic/cards/", CARD, key="k-500", headers={"X-Demo-Fail": "500"})

        retry = post(as_alice, "/lithic/cards/", CARD, key="k-500")

        assert failed.status_code == 500
        assert_replay_of(retry, failed, status=500)
        assert not Card.objects.exists()

    def test_reuse_with_other_parameters_is_an_error(self, as_alice: APIClient) -> None:
        post(as_alice, "/lithic/cards/", CARD, key="k-reuse")

        reuse = post(as_alice, "/lithic/cards/", {**CARD, "memo": "Groceries"}, key="k-reuse")

        assert reuse.status_code == 422
        assert problem_code(reuse) == "idempotency_key_reused"
        assert Card.objects.get().memo == "Travel"

    def test_renew_action_runs_once(self, as_alice: APIClient) -> None:
        card = post(as_alice, "/lithic/cards/", CARD).json()
        url = f"/lithic/cards/{card['token']}/renew/"

        first = post(as_alice, url, {}, key="k-renew")
        retry = post(as_alice, url, {}, key="k-renew")

        assert_replay_of(retry, first, status=200)
        assert Card.objects.get().renewals == 1


class TestTXCloud:
    """TXCloud: 10-255 of [A-Za-z0-9_-], 24 h per API key and endpoint,
    Idempotent-Replayed and the original X-Request-Id, reuse is a conflict,
    GET and DELETE unaffected."""

    VERIFY = "/txcloud/identity/verify"
    SESSIONS = "/txcloud/identity/sessions"

    @pytest.mark.parametrize(
        ("key", "status"),
        [
            ("k" * 9, 400),
            ("k" * 10, 201),
            ("user_123_verify-2025", 201),
            ("k" * 255, 201),
            ("k" * 256, 400),
            ("user.123.verify", 400),
            ("user:123:verify", 400),
        ],
    )
    def test_key_rule(self, as_alice: APIClient, key: str, status: int) -> None:
        response = post(as_alice, self.VERIFY, IDENTITY, key=key)

        assert response.status_code == status
        if status == 400:
            assert problem_code(response) == "idempotency_key_invalid"
            assert not IdentityCheck.objects.exists()

    def test_retention_is_24_hours(self, as_alice: APIClient) -> None:
        post(as_alice, self.VERIFY, IDENTITY, key="verify_attempt_1")

        assert_remembered_for_24_hours("verify_attempt_1")

    def test_same_key_on_two_endpoints_is_two_operations(self, as_alice: APIClient) -> None:
        verify = post(as_alice, self.VERIFY, IDENTITY, key="attempt_0001")
        session = post(as_alice, self.SESSIONS, IDENTITY, key="attempt_0001")

        assert (verify.status_code, session.status_code) == (201, 201)
        assert "Idempotent-Replayed" not in session
        assert sorted(IdentityCheck.objects.values_list("kind", flat=True)) == [
            "session",
            "verification",
        ]

    def test_scope_is_the_api_key(self, alice: User, as_alice: APIClient) -> None:
        first = post(as_alice, self.VERIFY, IDENTITY, key="attempt_0001")
        Token.objects.filter(user=alice).delete()
        with_new_key = _client_for(alice)

        again = post(with_new_key, self.VERIFY, IDENTITY, key="attempt_0001")

        assert again.status_code == 201
        assert "Idempotent-Replayed" not in again
        assert again.json()["id"] != first.json()["id"]
        assert not IdempotencyRecord.objects.filter(scope__contains=Token.objects.get().key)

    def test_replay_carries_idempotent_replayed_and_the_original_request_id(
        self, as_alice: APIClient
    ) -> None:
        original = post(
            as_alice, self.VERIFY, IDENTITY, key="attempt_0001", headers={"X-Request-Id": "req-42"}
        )

        replay = post(as_alice, self.VERIFY, IDENTITY, key="attempt_0001")

        assert original["X-Request-Id"] == "req-42"
        assert_replay_of(replay, original, status=201)
        assert replay["X-Request-Id"] == "req-42"
        assert IdentityCheck.objects.count() == 1

    def test_reuse_with_another_body_is_a_conflict(self, as_alice: APIClient) -> None:
        post(as_alice, self.VERIFY, IDENTITY, key="attempt_0001")

        reuse = post(as_alice, self.VERIFY, {**IDENTITY, "country": "FR"}, key="attempt_0001")

        assert reuse.status_code == 409
        assert problem_code(reuse) == "idempotency_key_reused"
        assert IdentityCheck.objects.get().country == "MA"

    def test_get_and_delete_are_not_affected(self, as_alice: APIClient) -> None:
        check = post(as_alice, self.VERIFY, IDENTITY).json()
        url = f"/txcloud/identity/checks/{check['id']}"
        key = {"Idempotency-Key": "attempt_0001"}

        got = as_alice.get(url, headers=key)
        deleted = as_alice.delete(url, headers=key)
        deleted_again = as_alice.delete(url, headers=key)

        assert got.status_code == 200
        assert "Idempotent-Replayed" not in got
        assert (deleted.status_code, deleted_again.status_code) == (204, 404)
        assert not IdempotencyRecord.objects.exists()


class TestStannp:
    """Stannp: optional X-Idempotency-Key on POST, 10-1024 characters, 24 h per
    account, the original body with 409, only identical bodies match."""

    URL = "/stannp/letters/"

    def letter(self, client: APIClient, key: str | None = None, body: Any = LETTER) -> Any:
        return post(client, self.URL, body, key=key, header="X-Idempotency-Key", form=True)

    def test_header_is_x_idempotency_key_and_optional(self, as_alice: APIClient) -> None:
        plain = [self.letter(as_alice), self.letter(as_alice)]
        other_header = [
            post(as_alice, self.URL, LETTER, key="k" * 20, form=True),
            post(as_alice, self.URL, LETTER, key="k" * 20, form=True),
        ]

        assert [r.status_code for r in plain + other_header] == [200, 200, 200, 200]
        assert Letter.objects.count() == 4
        assert not IdempotencyRecord.objects.exists()

    def test_key_on_get_has_no_effect(self, as_alice: APIClient) -> None:
        self.letter(as_alice, key="letter-key-1")

        listed = as_alice.get(self.URL, headers={"X-Idempotency-Key": "letter-key-1"})

        assert listed.status_code == 200
        assert "Idempotent-Replayed" not in listed
        assert len(listed.json()["data"]) == 1

    @pytest.mark.parametrize(("length", "status"), [(9, 400), (10, 200), (1024, 200), (1025, 400)])
    def test_key_length_is_10_to_1024(self, as_alice: APIClient, length: int, status: int) -> None:
        response = self.letter(as_alice, key="k" * length)

        assert response.status_code == status
        if status == 400:
            assert problem_code(response) == "idempotency_key_invalid"

    def test_retention_is_24_hours(self, as_alice: APIClient) -> None:
        self.letter(as_alice, key="letter-key-1")

        assert_remembered_for_24_hours("letter-key-1")

    def test_scope_is_the_account(self, as_alice: APIClient, as_bob: APIClient) -> None:
        self.letter(as_alice, key="letter-key-1")

        bobs = self.letter(as_bob, key="letter-key-1")

        assert bobs.status_code == 200
        assert Letter.objects.count() == 2

    def test_replay_is_the_original_body_with_409(self, as_alice: APIClient) -> None:
        original = self.letter(as_alice, key="letter-key-1")

        replay = self.letter(as_alice, key="letter-key-1")

        assert original.status_code == 200
        assert_replay_of(replay, original, status=409)
        assert Letter.objects.count() == 1

    def test_another_body_is_not_a_retry_but_a_new_letter(self, as_alice: APIClient) -> None:
        first = self.letter(as_alice, key="letter-key-1")

        other = self.letter(as_alice, key="letter-key-1", body={**LETTER, "recipient": "Jane"})
        first_again = self.letter(as_alice, key="letter-key-1")

        assert other.status_code == 200
        assert "Idempotent-Replayed" not in other
        assert other.json()["data"]["recipient"] == "Jane"
        assert_replay_of(first_again, first, status=409)
        assert Letter.objects.count() == 2


class TestAsyncGroup:
    """The ORZCash transfer as an adrf async view, called through Django's
    ASGI request path (AsyncClient), as uvicorn serves it in make demo-asgi."""

    URL = "/async/transfers/"

    @staticmethod
    def send(user: User, key: str | None = None, body: Any = TRANSFER) -> Any:
        from asgiref.sync import async_to_sync
        from django.test import AsyncClient

        token, _ = Token.objects.get_or_create(user=user)
        headers = {"Authorization": f"Token {token.key}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return async_to_sync(AsyncClient().post)(
            TestAsyncGroup.URL, body, content_type="application/json", headers=headers
        )

    @pytest.mark.django_db(transaction=True)
    def test_a_retry_gets_the_first_transfer_and_another_account_its_own(
        self, alice: User, bob: User
    ) -> None:
        key = str(uuid.uuid4())
        first = self.send(alice, key)
        retry = self.send(alice, key)
        bobs = self.send(bob, key)

        assert first.status_code == 201
        assert retry.status_code == 201
        assert retry["Idempotent-Replayed"] == "true"
        assert retry.json() == first.json()
        assert bobs.status_code == 201
        assert "Idempotent-Replayed" not in bobs
        assert Transfer.objects.count() == 2

    @pytest.mark.django_db(transaction=True)
    def test_the_key_is_required_and_a_uuid(self, alice: User) -> None:
        missing = self.send(alice)
        not_a_uuid = self.send(alice, "transfer-0001")

        assert problem_code(missing) == "idempotency_key_missing"
        assert problem_code(not_a_uuid) == "idempotency_key_invalid"
        assert not Transfer.objects.exists()


class TestORZCash:
    """ORZCash: Idempotency-Key required on every POST, a UUID, 24 h per account,
    the original response, reuse is an error, transient failures are not stored."""

    URL = "/orzcash/transfers/"

    def test_key_is_required_on_post(self, as_alice: APIClient) -> None:
        response = post(as_alice, self.URL, TRANSFER)

        assert response.status_code == 400
        assert problem_code(response) == "idempotency_key_missing"
        assert not Transfer.objects.exists()

    def test_get_needs_no_key(self, as_alice: APIClient) -> None:
        assert as_alice.get(self.URL).status_code == 200

    @pytest.mark.parametrize(
        ("key", "status"),
        [
            (str(uuid.uuid4()), 201),
            (str(uuid.uuid4()).upper(), 201),
            (uuid.uuid4().hex, 400),
            ("transfer-0001", 400),
            (str(uuid.uuid4()) + "0", 400),
        ],
    )
    def test_key_is_a_uuid(self, as_alice: APIClient, key: str, status: int) -> None:
        response = post(as_alice, self.URL, TRANSFER, key=key)

        assert response.status_code == status
        if status == 400:
            assert problem_code(response) == "idempotency_key_invalid"

    def test_retention_is_24_hours(self, as_alice: APIClient) -> None:
        key = str(uuid.uuid4())
        post(as_alice, self.URL, TRANSFER, key=key)

        assert_remembered_for_24_hours(key)

    def test_scope_is_the_account(self, as_alice: APIClient, as_bob: APIClient) -> None:
        key = str(uuid.uuid4())
        post(as_alice, self.URL, TRANSFER, key=key)

        bobs = post(as_bob, self.URL, TRANSFER, key=key)

        assert bobs.status_code == 201
        assert Transfer.objects.count() == 2

    def test_replay_is_the_original_response(self, as_alice: APIClient) -> None:
        key = str(uuid.uuid4())
        original = post(as_alice, self.URL, TRANSFER, key=key)

        replay = post(as_alice, self.URL, TRANSFER, key=key)

        assert_replay_of(replay, original, status=201)
        assert Transfer.objects.count() == 1

    def test_reuse_with_another_body_is_an_error(self, as_alice: APIClient) -> None:
        key = str(uuid.uuid4())
        post(as_alice, self.URL, TRANSFER, key=key)

        reuse = post(as_alice, self.URL, {**TRANSFER, "amount": "2500.00"}, key=key)

        assert reuse.status_code == 422
        assert problem_code(reuse) == "idempotency_key_reused"
        assert str(Transfer.objects.get().amount) == "25.00"

    @pytest.mark.parametrize("failure", ["500", "502", "503", "504"])
    def test_transient_failure_is_not_stored_and_the_retry_completes(
        self, as_alice: APIClient, failure: str
    ) -> None:
        key = str(uuid.uuid4())
        failed = post(as_alice, self.URL, TRANSFER, key=key, headers={"X-Demo-Fail": failure})

        retry = post(as_alice, self.URL, TRANSFER, key=key)
        again = post(as_alice, self.URL, TRANSFER, key=key)

        assert failed.status_code == int(failure)
        assert retry.status_code == 201
        assert "Idempotent-Replayed" not in retry
        assert_replay_of(again, retry)
        assert Transfer.objects.count() == 1


def _curl_to_request(line: str) -> tuple[str, str, dict[str, str], str]:
    """Method, path, headers and body of one printed curl command."""
    words = shlex.split(line)
    assert words[0] == "curl"
    method, url, headers, body = "GET", "", {}, ""
    rest = iter(words[1:])
    for word in rest:
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, _, value = next(rest).partition(": ")
            headers[name] = value
        elif word == "-d":
            body = next(rest)
        elif word.startswith("http"):
            url = word
    return method, url.removeprefix("http://127.0.0.1:8000"), headers, body


class TestDemoCommands:
    def test_demo_setup_is_idempotent(self, db: None) -> None:
        first, second = io.StringIO(), io.StringIO()

        call_command("demo_setup", stdout=first)
        call_command("demo_setup", stdout=second)

        tokens = dict(Token.objects.values_list("user__username", "key"))
        assert sorted(tokens) == ["alice", "bob"]
        for out in (first, second):
            assert tokens["alice"] in out.getvalue()
            assert tokens["bob"] in out.getvalue()

    def test_printed_curl_lines_behave_as_their_comments_say(self, db: None) -> None:
        out = io.StringIO()
        call_command("demo_setup", stdout=out)
        lines = [line for line in out.getvalue().splitlines() if line.startswith("curl ")]
        assert len(lines) == 4
        assert " & sleep 1; curl " in lines[3]
        client = api_client()

        answers = []
        for line in lines[:3]:
            method, path, headers, body = _curl_to_request(line)
            content_type = headers.pop("Content-Type")
            answers.append(client.generic(method, path, body, content_type, headers=headers))

        first, replay, reuse = answers
        assert first.status_code == 201
        assert_replay_of(replay, first)
        assert reuse.status_code == 422
        assert json.loads(reuse.content)["code"] == "idempotency_key_reused"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a duplicate in flight needs two requests served at once


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sample_server(transactional_db: None) -> Iterator[str]:
    """The sample project served over real HTTP, as ``make demo`` serves it."""
    server = make_server(
        "127.0.0.1", 0, WSGIHandler(), server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join()


def test_walkthrough_finds_every_behaviour_as_documented(sample_server: str) -> None:
    """``make demo-script`` in miniature: real HTTP, a real duplicate in flight."""
    out = io.StringIO()

    call_command("demo_walkthrough", url=sample_server, stdout=out)

    text = out.getvalue()
    assert "Every response was as documented." in text
    assert "Retry-After: 1" in text
    assert "NOT AS DOCUMENTED" not in text


def test_the_retrying_client_makes_one_transfer_per_operation_through_timeouts(
    sample_server: str, alice: Any
) -> None:
    """``manage.py demo_client``: every first attempt times out (the transfer
    takes longer than the client waits); retries with the same key get the
    409 and then the replay, and each operation makes one transfer."""
    Token.objects.get_or_create(user=alice)
    out = io.StringIO()

    call_command("demo_client", url=sample_server, transfers=2, delay=1.0, timeout=0.3, stdout=out)

    text = out.getvalue()
    assert "2 transfers asked for, 2 made." in text
    assert text.count("replayed: True") == 2
    assert "ReadTimeout" in text
    assert Transfer.objects.count() == 2


class TestWithTheTestingHelpers:
    """The sample project tested the way docs/testing.md tells integrators to."""

    @pytest.fixture
    def alice_client(self, alice: User) -> IdempotentAPIClient:
        client = IdempotentAPIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=alice)[0]}")
        return client

    def test_a_payment_runs_once_for_three_duplicates(
        self, alice_client: IdempotentAPIClient
    ) -> None:
        assert_runs_once(
            lambda: alice_client.post(
                "/ietf/payments/", COFFEE, format="json", idempotency_key="pay-1"
            )
        )
        assert Payment.objects.count() == 1

    def test_a_card_renewal_retried_after_a_timeout_is_replayed(
        self, alice_client: IdempotentAPIClient
    ) -> None:
        card = alice_client.post("/lithic/cards/", CARD, format="json").json()
        first = alice_client.post(f"/lithic/cards/{card['token']}/renew/", {}, format="json")

        assert_replayed(alice_client.resend(), first)
        assert Card.objects.get().renewals == 1

    def test_each_new_payment_gets_a_new_key(self, alice_client: IdempotentAPIClient) -> None:
        assert_not_replayed(alice_client.post("/ietf/payments/", COFFEE, format="json"))
        assert_not_replayed(alice_client.post("/ietf/payments/", COFFEE, format="json"))
        assert Payment.objects.count() == 2


class TestDocs:
    """The docs describe the code: generated parts are current, links resolve."""

    def test_option_reference_and_readme_table_are_generated_from_the_specs(self) -> None:
        from docs import hooks

        stale = hooks.stale_files()

        assert stale == [], "run `python docs/hooks.py` to regenerate " + ", ".join(map(str, stale))

    def test_every_problem_type_uri_has_its_anchor_on_the_errors_page(self) -> None:
        from django_idempotency import exceptions

        errors_page = (Path(__file__).parent.parent / "docs" / "errors.md").read_text()
        codes = [
            error.default_code
            for error in vars(exceptions).values()
            if isinstance(error, type)
            and issubclass(error, exceptions.IdempotencyError)
            and error is not exceptions.IdempotencyError
        ]

        assert len(codes) >= 5
        for code in codes:
            anchor = code.replace("_", "-")
            assert f"{{ #{anchor} }}" in errors_page, code
            assert exceptions.TYPE_BASE.endswith("/errors/#")
