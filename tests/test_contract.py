"""The HTTP contract of issue 2, rules 1-12, through DRF's APIClient on every
kind of view: function views, APIView, GenericAPIView with the mixin, ViewSet
``create`` and ``@action`` methods (decorator and mixin)."""

import datetime as dt
import re
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord, State
from tests.factories import RecordFactory, api_client
from tests.helpers import assert_problem, fingerprint_for, new_key, post, record_for
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db

#: (id, URL, required) of one POST endpoint of every kind of view.
VIEW_KINDS = [
    pytest.param("/function/", False, id="api_view"),
    pytest.param("/apiview/", False, id="APIView"),
    pytest.param("/generic/", True, id="GenericAPIView+mixin"),
    pytest.param("/viewset/", True, id="ViewSet.create"),
    pytest.param("/viewset/refund/", False, id="ViewSet@action"),
    pytest.param("/mixin-viewset/", False, id="mixin-ViewSet.create"),
    pytest.param("/mixin-viewset/bulk/", False, id="mixin-ViewSet@action"),
]
OPTIONAL_KINDS = [p for p in VIEW_KINDS if not p.values[1]]
REQUIRED_KINDS = [p for p in VIEW_KINDS if p.values[1]]


# Rule 1 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [("put", "/function/"), ("delete", "/function/"), ("get", "/function/"), ("get", "/generic/")],
)
@pytest.mark.parametrize("key", ["valid-key", "", "not ascii \u00e9", "a" * 2000])
def test_rule1_other_methods_ignore_the_key_entirely(
    client: APIClient, method: str, url: str, key: Any
) -> None:
    response = getattr(client, method)(url, {"amount": 3}, format="json", HTTP_IDEMPOTENCY_KEY=key)

    # The view ran as without the app, even with an invalid key; no record.
    assert response.status_code in (200, 201)
    assert "Idempotent-Replayed" not in response
    assert "X-Request-Id" not in response
    assert IdempotencyRecord.objects.count() == 0


def test_rule1_a_second_put_with_the_same_key_runs_again(client: APIClient) -> None:
    post(client, "/function/", key="k", method="put")
    post(client, "/function/", key="k", method="put")

    assert Payment.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


def test_rule1_mixin_ignores_safe_methods_on_a_required_view(client: APIClient) -> None:
    # /generic/ requires a key for POST; a GET without one is a plain list.
    response = client.get("/generic/")

    assert response.status_code == 200
    assert response.json() == []


# Rule 2 ---------------------------------------------------------------------


@pytest.mark.parametrize(("url", "required"), OPTIONAL_KINDS)
def test_rule2_no_key_runs_unprotected(client: APIClient, url: str, required: bool) -> None:
    first = post(client, url)
    second = post(client, url)

    assert first.status_code == second.status_code == 201
    assert Payment.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0
    assert "Idempotent-Replayed" not in second


@pytest.mark.parametrize(("url", "required"), [*REQUIRED_KINDS, ("/letters/", True)])
def test_rule2_required_key_missing_is_400(client: APIClient, url: str, required: bool) -> None:
    response = post(client, url)

    assert_problem(response, 400, "idempotency_key_missing")
    assert response["X-Request-Id"]
    assert Payment.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


# Rule 3 ---------------------------------------------------------------------


@pytest.mark.parametrize(("url", "required"), VIEW_KINDS)
@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "empty"),
        ("x" * 256, "at most 255"),
        ("cl\u00e9", "ASCII"),
        ("key-a, key-b", "once"),
        ("has space", "not allowed"),
    ],
)
def test_rule3_invalid_key_is_400_naming_the_rule(
    client: APIClient, url: str, required: bool, key: Any, rule: str
) -> None:
    response = post(client, url, key=key)

    problem = assert_problem(response, 400, "idempotency_key_invalid")
    assert rule in problem["detail"]
    assert Payment.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


def test_rule3_pattern_is_checked_on_the_mixin_view(client: APIClient) -> None:
    # GenericAPIView's idempotency_options: key_pattern [0-9a-f-]{36}.
    response = post(client, "/generic/", key=new_key().upper())

    problem = assert_problem(response, 400, "idempotency_key_invalid")
    assert "not allowed" in problem["detail"]
    assert Payment.objects.count() == 0


def test_rule3_structured_field_string_is_the_same_key(client: APIClient) -> None:
    first = post(client, "/function/", key='"8e03978e-40d5"')
    second = post(client, "/function/", key="8e03978e-40d5")

    assert second.status_code == first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert record_for("8e03978e-40d5").state == State.COMPLETED
    assert Payment.objects.count() == 1


def test_rule3_length_applies_to_the_unquoted_value(client: APIClient) -> None:
    # 255 characters plus two quotes: the key itself is within the limit.
    response = post(client, "/function/", key='"' + "q" * 255 + '"')

    assert response.status_code == 201
    assert record_for("q" * 255)


def test_rule3_keys_are_case_sensitive(client: APIClient) -> None:
    post(client, "/function/", key="Order-1")
    response = post(client, "/function/", key="order-1")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Payment.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 2


# Rule 4 ---------------------------------------------------------------------


@pytest.mark.parametrize(("url", "required"), VIEW_KINDS)
def test_rule4_first_request_runs_once_and_is_stored(
    client: APIClient, url: str, required: bool
) -> None:
    key = new_key()
    response = post(client, url, key=key)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Payment.objects.count() == 1
    record = record_for(key)
    assert record.state == State.COMPLETED
    assert record.response_status == 201
    assert record.response_body is not None
    assert bytes(record.response_body) == response.content
    assert ("Content-Type", "application/json") in record.headers
    assert record.request_id == response["X-Request-Id"]
    assert record.method == "POST"
    assert record.path == url


def test_rule4_location_is_stored_set_cookie_is_not(client: APIClient) -> None:
    key = new_key()
    response = post(client, "/function/", key=key)

    assert response.cookies["session-ish"].value == "secret"
    names = {name.lower() for name, _ in record_for(key).headers}
    assert "location" in names
    assert "set-cookie" not in names
    assert "x-ratelimit-remaining" not in names


def test_rule4_authentication_runs_before_the_key_is_claimed(client: APIClient) -> None:
    response = post(client, "/private/", key="k")

    assert response.status_code in (401, 403)
    assert IdempotencyRecord.objects.count() == 0
    assert Payment.objects.count() == 0


# Rule 5 ---------------------------------------------------------------------


@pytest.mark.parametrize(("url", "required"), VIEW_KINDS)
def test_rule5_validation_error_is_not_stored(client: APIClient, url: str, required: bool) -> None:
    key = new_key()
    response = post(client, url, {"amount": "not a number"}, key=key)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"  # DRF's own error, not ours
    assert IdempotencyRecord.objects.count() == 0
    # The key was released: the corrected request runs.
    assert post(client, url, key=key).status_code == 201
    assert Payment.objects.count() == 1


def test_rule5_exception_releases_the_key_and_a_retry_runs_again(client: APIClient) -> None:
    with pytest.raises(RuntimeError, match="view crashed"):
        post(client, "/function/?fail=raise", key="crash")
    assert IdempotencyRecord.objects.count() == 0

    with pytest.raises(RuntimeError, match="view crashed"):
        post(client, "/function/?fail=raise", key="crash")
    assert Payment.objects.count() == 2  # it ran again, not answered 409


def test_rule5_exception_answered_500_by_django_releases_the_key() -> None:
    client = api_client(raise_request_exception=False)
    response = post(client, "/apiview/?fail=raise", key="crash")

    assert response.status_code == 500
    assert IdempotencyRecord.objects.count() == 0


def test_rule5_server_error_is_not_stored_by_default(client: APIClient) -> None:
    first = post(client, "/function/?fail=500", key="k")
    second = post(client, "/function/?fail=500", key="k")

    assert first.status_code == second.status_code == 500
    assert "Idempotent-Replayed" not in second
    assert Payment.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


def test_rule5_streaming_response_is_not_stored(client: APIClient) -> None:
    first = post(client, "/streaming/", key="k")
    second = post(client, "/streaming/", key="k")

    assert b"".join(first.streaming_content) == b"ab"
    assert b"".join(second.streaming_content) == b"ab"
    assert "Idempotent-Replayed" not in second
    assert Payment.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


# Rule 6 ---------------------------------------------------------------------


@pytest.mark.parametrize(("url", "required"), VIEW_KINDS)
def test_rule6_retry_replays_the_stored_response(
    client: APIClient, url: str, required: bool
) -> None:
    key = new_key()
    first = post(client, url, key=key)
    retry = post(client, url, key=key)

    assert retry.status_code == first.status_code == 201
    assert retry.content == first.content
    assert retry["Content-Type"] == first["Content-Type"]
    assert retry["Idempotent-Replayed"] == "true"
    assert retry["X-Request-Id"] == first["X-Request-Id"]
    assert Payment.objects.count() == 1


def test_rule6_replay_keeps_location_and_drops_cookies(client: APIClient) -> None:
    first = post(client, "/function/", key="k")
    retry = post(client, "/function/", key="k")

    assert retry["Location"] == first["Location"]
    assert "session-ish" not in retry.cookies
    assert "X-RateLimit-Remaining" not in retry


def test_rule6_replay_status_replaces_the_status(client: APIClient) -> None:
    first = post(client, "/letters/", key="k", header="X-Idempotency-Key")
    retry = post(client, "/letters/", key="k", header="X-Idempotency-Key")

    assert first.status_code == 201
    assert retry.status_code == 409
    assert retry.content == first.content
    assert retry["Idempotent-Replayed"] == "true"


def test_rule6_non_drf_response_is_replayed_with_its_status(client: APIClient) -> None:
    first = post(client, "/plain-json/", key="k")
    retry = post(client, "/plain-json/", key="k")

    assert first.status_code == retry.status_code == 202
    assert retry.content == b'{"ok": true}'
    assert retry["Content-Type"] == "application/json"
    assert Payment.objects.count() == 1


def test_rule6_replay_from_a_factory_record(client: APIClient) -> None:
    fingerprint = fingerprint_for("/function/", {"amount": 10})
    RecordFactory(
        key="stored",
        fingerprint=fingerprint,
        response_status=201,
        response_body=b'{"id": 77}',
        request_id="original-request",
    )

    retry = post(client, "/function/", key="stored")

    assert retry.status_code == 201
    assert retry.content == b'{"id": 77}'
    assert retry["X-Request-Id"] == "original-request"
    assert retry["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 0


# Rule 7 ---------------------------------------------------------------------


def _record_state(key: str) -> tuple[Any, ...]:
    record = record_for(key)
    assert record.response_body is not None
    return (
        record.fingerprint,
        record.state,
        record.token,
        record.response_status,
        bytes(record.response_body),
        record.response_headers,
        record.request_id,
        record.expires_at,
        record.completed_at,
    )


@pytest.mark.parametrize(("url", "required"), VIEW_KINDS)
def test_rule7_different_body_is_422_and_changes_nothing(
    client: APIClient, url: str, required: bool
) -> None:
    key = new_key()
    post(client, url, {"amount": 10}, key=key)
    before = _record_state(key)

    response = post(client, url, {"amount": 11}, key=key)

    assert_problem(response, 422, "idempotency_key_reused")
    assert "Idempotent-Replayed" not in response
    assert Payment.objects.count() == 1
    assert _record_state(key) == before


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"url": "/function/?page=2"}, id="query string"),
        pytest.param({"method": "patch"}, id="method"),
        pytest.param({"url": "/apiview/"}, id="path"),
    ],
)
def test_rule7_fingerprint_covers_method_path_and_query(
    client: APIClient, change: dict[str, Any]
) -> None:
    post(client, "/function/", key="k")
    response = post(
        client, change.get("url", "/function/"), key="k", method=change.get("method", "post")
    )

    assert_problem(response, 422, "idempotency_key_reused")
    assert Payment.objects.count() == 1


def test_rule7_mismatch_comes_before_in_progress(client: APIClient) -> None:
    RecordFactory(
        key="busy",
        running=True,
        fingerprint=fingerprint_for("/function/", {"amount": 10}),
    )

    response = post(client, "/function/", {"amount": 99}, key="busy")

    assert_problem(response, 422, "idempotency_key_reused")
    assert Payment.objects.count() == 0


# Rule 8 ---------------------------------------------------------------------


def in_progress_record(
    key: str, url: str = "/function/", data: Any = None, **kwargs: Any
) -> IdempotencyRecord:
    return RecordFactory(
        key=key,
        running=True,
        fingerprint=fingerprint_for(url, {"amount": 10} if data is None else data),
        **kwargs,
    )


@pytest.mark.parametrize(("url", "required"), VIEW_KINDS)
def test_rule8_retry_while_in_progress_is_409(client: APIClient, url: str, required: bool) -> None:
    key = new_key()
    in_progress_record(key, url)

    response = post(client, url, key=key)

    assert_problem(response, 409, "idempotency_request_in_progress")
    assert int(response["Retry-After"]) >= 1
    assert "Idempotent-Replayed" not in response
    assert Payment.objects.count() == 0
    assert record_for(key).state == State.IN_PROGRESS


def test_rule8_flipping_a_real_record_to_in_progress(client: APIClient) -> None:
    post(client, "/apiview/", key="k")
    IdempotencyRecord.objects.filter(key="k").update(
        state=State.IN_PROGRESS, locked_until=timezone.now() + dt.timedelta(minutes=1)
    )

    response = post(client, "/apiview/", key="k")

    assert_problem(response, 409, "idempotency_request_in_progress")
    assert Payment.objects.count() == 1


# Rule 9 ---------------------------------------------------------------------


def test_rule9_same_key_from_another_user_is_a_separate_operation(
    user_client: APIClient, client: APIClient
) -> None:
    from rest_framework.authtoken.models import Token

    from tests.factories import UserFactory

    other = api_client()
    other.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=UserFactory()).key}")

    first = post(user_client, "/function/", {"amount": 1}, key="shared")
    second = post(other, "/function/", {"amount": 2}, key="shared")

    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert second.json()["amount"] == 2
    assert first.json()["id"] != second.json()["id"]
    assert IdempotencyRecord.objects.filter(key="shared").count() == 2


def test_rule9_user_scope_does_not_see_the_anonymous_record(
    user_client: APIClient, client: APIClient
) -> None:
    post(client, "/function/", key="k")
    response = post(user_client, "/function/", key="k")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Payment.objects.count() == 2


# Rule 10 --------------------------------------------------------------------


def test_rule10_expired_record_behaves_as_new(client: APIClient) -> None:
    old = timezone.now() - dt.timedelta(days=2)
    RecordFactory(
        key="old",
        fingerprint=fingerprint_for("/function/", {"amount": 10}),
        created_at=old,
        response_body=b'{"id": "stale"}',
    )

    response = post(client, "/function/", key="old")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert response.content != b'{"id": "stale"}'
    assert Payment.objects.count() == 1
    record = record_for("old")
    assert record.response_body is not None
    assert bytes(record.response_body) == response.content
    assert record.expires_at > timezone.now()


def test_rule10_expired_record_with_another_body_is_not_a_mismatch(client: APIClient) -> None:
    RecordFactory(key="old", created_at=timezone.now() - dt.timedelta(days=2))

    response = post(client, "/function/", {"amount": 5}, key="old")

    assert response.status_code == 201
    assert Payment.objects.count() == 1


# Rule 11 --------------------------------------------------------------------


def test_rule11_request_body_is_never_stored(client: APIClient) -> None:
    secret = "4242424242424242"
    body = {"amount": 10, "card_number": secret}
    post(client, "/function/", body, key="k")

    record = record_for("k")
    assert re.fullmatch(r"[0-9a-f]{64}", record.fingerprint)
    for field in IdempotencyRecord._meta.concrete_fields:
        value = getattr(record, field.attname)
        stored = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        assert secret.encode() not in stored, field.name


# Rule 12 --------------------------------------------------------------------


def test_rule12_every_error_is_problem_json(client: APIClient) -> None:
    assert_problem(post(client, "/letters/"), 400, "idempotency_key_missing")
    assert_problem(post(client, "/function/", key=""), 400, "idempotency_key_invalid")
    post(client, "/function/", key="used")
    assert_problem(
        post(client, "/function/", {"amount": 1}, key="used"), 422, "idempotency_key_reused"
    )
    in_progress_record("busy")
    assert_problem(post(client, "/function/", key="busy"), 409, "idempotency_request_in_progress")


def test_rule12_problem_type_differs_per_error(client: APIClient) -> None:
    missing = assert_problem(post(client, "/letters/"), 400, "idempotency_key_missing")
    invalid = assert_problem(post(client, "/function/", key=""), 400, "idempotency_key_invalid")

    assert missing["type"] != invalid["type"]
    assert missing["title"] != invalid["title"]


# Mixin and decorator together, every applicable method --------------------------


def test_mixin_covers_every_applicable_method_of_a_viewset(client: APIClient) -> None:
    payment = Payment.objects.create(amount=1)
    url = f"/mixin-viewset/{payment.pk}/"
    first = post(client, url, {"amount": 2}, key="k", method="patch")
    Payment.objects.filter(pk=payment.pk).update(amount=3)  # changed behind the API

    retry = post(client, url, {"amount": 2}, key="k", method="patch")

    assert first.json()["amount"] == 2
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert Payment.objects.get(pk=payment.pk).amount == 3  # the view did not run again


def test_mixin_same_key_on_another_object_is_a_reuse(client: APIClient) -> None:
    one, two = Payment.objects.create(amount=1), Payment.objects.create(amount=1)
    post(client, f"/mixin-viewset/{one.pk}/", {"amount": 2}, key="k", method="patch")

    response = post(client, f"/mixin-viewset/{two.pk}/", {"amount": 2}, key="k", method="patch")

    assert_problem(response, 422, "idempotency_key_reused")
    assert Payment.objects.get(pk=two.pk).amount == 1


def test_handler_decorated_on_a_mixin_view_keeps_its_own_options(client: APIClient) -> None:
    # post: the decorator's replay_status; patch: the mixin's. Each runs once,
    # so the engine is not applied twice (that would answer 409 to itself).
    assert post(client, "/mixin-override/", key="p").status_code == 201
    assert post(client, "/mixin-override/", key="p").status_code == 202
    assert post(client, "/mixin-override/", key="q", method="patch").status_code == 201
    assert post(client, "/mixin-override/", key="q", method="patch").status_code == 200
    assert Payment.objects.count() == 2


# More of rules 4 and 5 --------------------------------------------------------------


def test_rule4_a_refusal_answered_by_the_view_is_stored_and_replayed(client: APIClient) -> None:
    # Not an exception and not a 5xx: the operation's result, e.g. a declined card.
    first = post(client, "/function/?fail=402", key="k")
    retry = post(client, "/function/?fail=402", key="k")

    assert first.status_code == retry.status_code == 402
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert Payment.objects.count() == 1


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_rule5_drf_not_found_releases_the_key(client: APIClient, method: str) -> None:
    # get_object() raises Http404, which DRF turns into a 404 outside the handler.
    response = post(client, "/mixin-viewset/999999/", key="k", method=method)

    assert response.status_code == 404
    assert IdempotencyRecord.objects.count() == 0


def test_rule5_atomic_validation_error_leaves_nothing(client: APIClient) -> None:
    response = post(client, "/atomic/", {"amount": "x"}, key="k")

    assert response.status_code == 400
    assert IdempotencyRecord.objects.count() == 0
    assert post(client, "/atomic/", key="k").status_code == 201


@pytest.mark.parametrize("method", ["options", "head"])
def test_rule1_options_and_head_ignore_the_key(client: APIClient, method: str) -> None:
    response = getattr(client, method)("/generic/", HTTP_IDEMPOTENCY_KEY="k")

    assert response.status_code == 200
    assert IdempotencyRecord.objects.count() == 0


def test_rule3_invalid_key_problem_carries_the_request_id(client: APIClient) -> None:
    response = post(client, "/function/", key="", HTTP_X_REQUEST_ID="req-7")

    assert_problem(response, 400, "idempotency_key_invalid")
    assert response["X-Request-Id"] == "req-7"
