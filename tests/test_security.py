"""Who can see a stored response, what is stored, and which keys are refused."""

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord
from tests.factories import UserFactory, api_client
from tests.helpers import assert_problem, post, record_for
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db


def client_for(user: User) -> APIClient:
    client = api_client()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


# Scope isolation ----------------------------------------------------------------


@pytest.mark.parametrize("url", ["/function/", "/apiview/", "/generic/", "/viewset/refund/"])
def test_another_user_with_the_same_key_gets_its_own_operation(url: str) -> None:
    alice, bob = UserFactory(), UserFactory()
    key = "5f0c6a8e-2b1d-4c7e-9a3f-0123456789ab"

    a = post(client_for(alice), url, {"amount": 100, "reference": "alice"}, key=key)
    b = post(client_for(bob), url, {"amount": 100, "reference": "alice"}, key=key)

    assert a.status_code == b.status_code == 201
    assert "Idempotent-Replayed" not in b
    assert b.json()["id"] != a.json()["id"]
    assert b["X-Request-Id"] != a["X-Request-Id"]
    assert Payment.objects.count() == 2
    assert sorted(IdempotencyRecord.objects.values_list("scope", flat=True)) == sorted(
        [f"user:{alice.pk}", f"user:{bob.pk}"]
    )


def test_another_user_with_a_different_body_is_not_a_mismatch() -> None:
    alice, bob = UserFactory(), UserFactory()
    post(client_for(alice), "/function/", {"amount": 1}, key="k")

    response = post(client_for(bob), "/function/", {"amount": 2}, key="k")

    # A 422 would tell Bob that Alice used this key: it must look brand new.
    assert response.status_code == 201
    assert response.json()["amount"] == 2


def test_another_user_does_not_see_a_request_in_progress() -> None:
    alice, bob = UserFactory(), UserFactory()
    post(client_for(alice), "/function/", key="k")
    IdempotencyRecord.objects.filter(scope=f"user:{alice.pk}").update(state="in_progress")

    response = post(client_for(bob), "/function/", key="k")

    assert response.status_code == 201


# Replays never bypass authentication, permissions or throttles -------------------


def test_replay_requires_authentication(user_client: APIClient) -> None:
    first = post(user_client, "/private/", key="k")
    anonymous = post(APIClient(), "/private/", key="k")

    assert first.status_code == 201
    assert anonymous.status_code in (401, 403)
    assert "Idempotent-Replayed" not in anonymous
    assert first.content not in anonymous.content
    assert Payment.objects.count() == 1


def test_replay_requires_valid_credentials(user_client: APIClient, user: User) -> None:
    post(user_client, "/private/", key="k")
    Token.objects.filter(user=user).delete()

    response = post(user_client, "/private/", key="k")

    assert response.status_code == 401
    assert "Idempotent-Replayed" not in response


def test_replay_rechecks_permissions() -> None:
    admin = UserFactory(is_staff=True)
    client = client_for(admin)
    first = post(client, "/admin-only/", key="k")
    admin.is_staff = False
    admin.save()

    retry = post(client, "/admin-only/", key="k")

    assert first.status_code == 201
    assert retry.status_code == 403
    assert "Idempotent-Replayed" not in retry
    assert Payment.objects.count() == 1


def test_replays_count_against_throttles(client: APIClient) -> None:
    first = post(client, "/throttled/", key="k")
    replay = post(client, "/throttled/", key="k")
    throttled = post(client, "/throttled/", key="k")

    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert throttled.status_code == 429
    assert "Idempotent-Replayed" not in throttled
    assert "Retry-After" in throttled
    assert Payment.objects.count() == 1


# What is stored ---------------------------------------------------------------------


def test_credentials_and_rate_limits_are_never_stored(client: APIClient) -> None:
    first = post(client, "/headers/", key="k")
    stored = {name.lower(): value for name, value in record_for("k").headers}

    for name in (
        "set-cookie",
        "authorization",
        "cookie",
        "www-authenticate",
        "ratelimit-remaining",
        "x-ratelimit-limit",
    ):
        assert name not in stored, name
    assert "secret" not in record_for("k").response_headers
    assert stored["location"] == "/payments/1/"
    assert stored["content-type"] == "application/json"
    assert stored["etag"] == '"v1"'
    assert stored["x-custom"] == "kept"
    assert first.cookies["auth-cookie"].value == "secret"  # the first answer is untouched


def test_replay_carries_kept_headers_only(client: APIClient) -> None:
    post(client, "/headers/", key="k")
    retry = post(client, "/headers/", key="k")

    assert retry["Location"] == "/payments/1/"
    assert retry["ETag"] == '"v1"'
    assert retry["Content-Type"] == "application/json"
    for name in ("Authorization", "Cookie", "WWW-Authenticate", "X-RateLimit-Limit"):
        assert name not in retry
    assert "auth-cookie" not in retry.cookies


def test_request_bodies_are_never_stored_only_a_fingerprint(client: APIClient) -> None:
    secret = "4111111111111111"
    post(client, "/function/", {"amount": 10, "card_number": secret, "cvc": "987"}, key="k")

    record = record_for("k")
    assert re.fullmatch(r"[0-9a-f]{64}", record.fingerprint)
    for field in IdempotencyRecord._meta.concrete_fields:
        value = getattr(record, field.attname)
        raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        assert secret.encode() not in raw, field.name
        assert b"card_number" not in raw, field.name


def test_request_body_is_not_stored_even_for_a_failed_request(client: APIClient) -> None:
    post(client, "/function/", {"amount": "not-a-number", "card_number": "4111"}, key="k")

    assert IdempotencyRecord.objects.count() == 0


def test_binary_body_is_replayed_byte_for_byte(client: APIClient) -> None:
    first = post(client, "/binary/", key="k")
    retry = post(client, "/binary/", key="k")

    assert first.content == bytes(range(256)) * 4
    assert retry.content == first.content
    assert retry["Content-Type"] == "application/pdf"
    assert retry["Idempotent-Replayed"] == "true"
    body = record_for("k").response_body
    assert body is not None
    assert bytes(body) == first.content
    assert Payment.objects.count() == 1


def test_streaming_response_passes_through_unstored_and_releases_the_key(client: APIClient) -> None:
    first = post(client, "/streaming/", key="k")

    assert first.streaming
    assert b"".join(first.streaming_content) == b"ab"
    assert IdempotencyRecord.objects.count() == 0
    retry = post(client, "/streaming/", key="k")
    assert b"".join(retry.streaming_content) == b"ab"
    assert "Idempotent-Replayed" not in retry
    assert Payment.objects.count() == 2


def test_replayed_json_body_is_identical_bytes(client: APIClient) -> None:
    first = post(client, "/function/", {"amount": 10, "reference": "caf\u00e9 \u2603"}, key="k")
    retry = post(client, "/function/", {"amount": 10, "reference": "caf\u00e9 \u2603"}, key="k")

    assert retry.content == first.content
    assert json.loads(retry.content)["reference"] == "caf\u00e9 \u2603"


# Key syntax -----------------------------------------------------------------------


def test_structured_field_quoted_key_equals_the_bare_key(client: APIClient) -> None:
    first = post(client, "/function/", key='"abc"')
    retry = post(client, "/function/", key="abc")
    quoted_again = post(client, "/function/", key='"abc"')

    assert retry["Idempotent-Replayed"] == quoted_again["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert record_for("abc")
    assert Payment.objects.count() == 1


def test_keys_are_case_sensitive(client: APIClient) -> None:
    a = post(client, "/function/", key="abc")
    b = post(client, "/function/", key="ABC")

    assert "Idempotent-Replayed" not in b
    assert a.json()["id"] != b.json()["id"]
    assert Payment.objects.count() == 2


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        pytest.param("cl\u00e9-\u20ac", "ASCII", id="non-ASCII"),
        pytest.param("", "empty", id="empty"),
        pytest.param('""', "empty", id="empty quoted"),
        pytest.param("k" * 256, "at most 255", id="too long"),
        pytest.param("first-key, second-key", "once", id="two headers joined"),
        pytest.param("first-key,second-key", "once", id="two headers joined tight"),
        pytest.param("a\x7fb", "control", id="control character"),
        pytest.param('"a\\nb"', "escape", id="bad sf escape"),
    ],
)
def test_malformed_keys_are_400_naming_the_rule_and_the_view_does_not_run(
    client: APIClient, key: Any, rule: str
) -> None:
    response = post(client, "/function/", key=key)

    problem = assert_problem(response, 400, "idempotency_key_invalid")
    assert rule in problem["detail"]
    assert Payment.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


# Multipart uploads: fingerprinted by content, never stored -----------------------

CSRF_SECRET = "A" * 32


def session_client(user: User) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.cookies["csrftoken"] = CSRF_SECRET
    return client


def upload(
    client: APIClient, content: bytes, key: str = "k", csrf: str | None = CSRF_SECRET
) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    extra: dict[str, Any] = {"HTTP_X_CSRFTOKEN": csrf} if csrf else {}
    return client.post(
        "/function/",
        {"amount": "10", "scan": SimpleUploadedFile("scan.pdf", content)},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY=key,
        **extra,
    )


def test_multipart_upload_read_by_the_csrf_check_is_fingerprinted_by_content(user: User) -> None:
    # SessionAuthentication's CSRF check parses the multipart body before the
    # view: the raw body is gone, the fingerprint must still cover the file.
    client = session_client(user)
    scan = b"%PDF-1.7 \x00\x01\x02 secret passport scan"

    first = upload(client, scan)
    retry = upload(client, scan)
    other_file = upload(client, scan.replace(b"passport", b"passwort"))  # same size

    assert first.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert_problem(other_file, 422, "idempotency_key_reused")
    assert Payment.objects.count() == 1
    record = record_for("k")
    assert record.response_body is not None
    assert b"passport" not in bytes(record.response_body)
    assert "passport" not in record.response_headers


def test_multipart_upload_failing_the_csrf_check_claims_nothing(user: User) -> None:
    response = upload(session_client(user), b"data", csrf=None)

    assert response.status_code == 403
    assert IdempotencyRecord.objects.count() == 0


# Function views with DRF's policy decorators, in either order --------------------


@pytest.mark.parametrize("url", ["/private-function/", "/private-function-inner/"])
def test_function_view_replay_requires_authentication(user_client: APIClient, url: str) -> None:
    first = post(user_client, url, key="k")
    anonymous = post(APIClient(), url, key="k")

    assert first.status_code == 201
    assert anonymous.status_code == 401
    assert "Idempotent-Replayed" not in anonymous
    assert post(user_client, url, key="k")["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1


def test_function_view_replays_count_against_user_throttles(user_client: APIClient) -> None:
    url = "/private-function-inner/"
    post(user_client, url, key="k")
    assert post(user_client, url, key="k")["Idempotent-Replayed"] == "true"

    throttled = post(user_client, url, key="k")

    assert throttled.status_code == 429
    assert "Idempotent-Replayed" not in throttled
