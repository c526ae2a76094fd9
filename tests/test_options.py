"""Every option of the option table, per view and through the IDEMPOTENCY setting.

The views live at ``/options/<name>/`` (tests/testapp/views.py OPTION_VIEWS).
"""

import datetime as dt
import logging
import re

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord, State
from django_idempotency.options import MAX_DURATION
from tests.clock import advance
from tests.factories import RecordFactory, api_client
from tests.helpers import assert_problem, fingerprint_for, post, record_for
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db


def opt(name: str) -> str:
    return f"/options/{name}/"


# header -----------------------------------------------------------------------


def test_header_custom_name_carries_the_key(client: APIClient) -> None:
    first = post(client, opt("header"), key="k", header="X-Custom-Key")
    retry = post(client, opt("header"), key="k", header="X-Custom-Key")

    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert Payment.objects.count() == 1


def test_header_default_name_is_ignored_when_another_is_configured(client: APIClient) -> None:
    post(client, opt("header"), key="k")
    response = post(client, opt("header"), key="k")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert IdempotencyRecord.objects.count() == 0
    assert Payment.objects.count() == 2


def test_header_name_matches_case_insensitively(client: APIClient) -> None:
    # Header names are case-insensitive in HTTP; the WSGI environ spells them
    # upper-case whatever the client sent, and the option may be any case.
    post(client, "/function/", key="k", header="IDEMPOTENCY-KEY")
    response = post(client, "/function/", key="k", header="idempotency-key")

    assert response["Idempotent-Replayed"] == "true"


@override_settings(IDEMPOTENCY={"HEADER": "X-Setting-Key"})
def test_header_from_the_setting(client: APIClient) -> None:
    post(client, "/function/", key="k", header="X-Setting-Key")
    response = post(client, "/function/", key="k", header="X-Setting-Key")

    assert response["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1


# required ---------------------------------------------------------------------


def test_required_refuses_a_request_without_key(client: APIClient) -> None:
    response = post(client, opt("required"))

    assert_problem(response, 400, "idempotency_key_missing")
    assert Payment.objects.count() == 0


def test_required_accepts_a_request_with_key(client: APIClient) -> None:
    assert post(client, opt("required"), key="k").status_code == 201


def test_not_required_by_default(client: APIClient) -> None:
    assert post(client, "/function/").status_code == 201


@override_settings(IDEMPOTENCY={"REQUIRED": True})
def test_required_from_the_setting(client: APIClient) -> None:
    assert_problem(post(client, "/function/"), 400, "idempotency_key_missing")


# methods ----------------------------------------------------------------------


def test_methods_listed_methods_are_protected(client: APIClient) -> None:
    for method in ("put", "delete"):
        first = post(client, opt("methods"), key=method, method=method)
        retry = post(client, opt("methods"), key=method, method=method)
        assert retry["Idempotent-Replayed"] == "true", method
        assert retry.content == first.content
    assert Payment.objects.count() == 2


@pytest.mark.parametrize("method", ["post", "patch"])
def test_methods_other_methods_ignore_the_key(client: APIClient, method: str) -> None:
    post(client, opt("methods"), key="k", method=method)
    response = post(client, opt("methods"), key="k", method=method)

    assert "Idempotent-Replayed" not in response
    assert Payment.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


def test_methods_default_protects_post_and_patch_only(client: APIClient) -> None:
    for method in ("post", "patch"):
        post(client, "/function/", key=method, method=method)
        assert post(client, "/function/", key=method, method=method)["Idempotent-Replayed"]
    post(client, "/function/", key="put", method="put")
    assert "Idempotent-Replayed" not in post(client, "/function/", key="put", method="put")


# key_min_length / key_max_length ----------------------------------------------


@pytest.mark.parametrize(("key", "rule"), [("k" * 7, "at least 8"), ("k" * 17, "at most 16")])
def test_key_length_bounds_are_enforced(client: APIClient, key: str, rule: str) -> None:
    problem = assert_problem(post(client, opt("lengths"), key=key), 400, "idempotency_key_invalid")

    assert rule in problem["detail"]
    assert Payment.objects.count() == 0


@pytest.mark.parametrize("length", [8, 16])
def test_key_length_bounds_are_inclusive(client: APIClient, length: int) -> None:
    assert post(client, opt("lengths"), key="k" * length).status_code == 201


def test_key_max_length_default_is_255(client: APIClient) -> None:
    assert post(client, "/function/", key="k" * 255).status_code == 201
    assert_problem(post(client, "/function/", key="k" * 256), 400, "idempotency_key_invalid")


def test_1024_character_keys_work_on_every_database(client: APIClient) -> None:
    long_a = "a" * 1023 + "1"
    long_b = "a" * 1023 + "2"  # differs only in its last character

    first = post(client, opt("long-keys"), key=long_a)
    other = post(client, opt("long-keys"), key=long_b)
    retry = post(client, opt("long-keys"), key=long_a)
    mismatch = post(client, opt("long-keys"), {"amount": 1}, key=long_a)

    assert first.status_code == other.status_code == 201
    assert "Idempotent-Replayed" not in other
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert_problem(mismatch, 422, "idempotency_key_reused")
    assert record_for(long_a).key == long_a
    assert Payment.objects.count() == 2


def test_key_longer_than_1024_is_refused(client: APIClient) -> None:
    problem = assert_problem(
        post(client, opt("long-keys"), key="a" * 1025), 400, "idempotency_key_invalid"
    )
    assert "at most 1024" in problem["detail"]


# key_pattern ------------------------------------------------------------------


def test_key_pattern_must_match_the_whole_key(client: APIClient) -> None:
    assert post(client, opt("pattern"), key="ord_1234").status_code == 201
    for key in ("ord_12345", "xord_1234", "ord_12a4"):
        problem = assert_problem(
            post(client, opt("pattern"), key=key), 400, "idempotency_key_invalid"
        )
        assert "not allowed" in problem["detail"]
    assert Payment.objects.count() == 1


@pytest.mark.parametrize("key", ['a"b', "a b", "a\tb"])
def test_key_pattern_default_refuses_quotes_and_spaces(client: APIClient, key: str) -> None:
    assert_problem(post(client, "/function/", key=key), 400, "idempotency_key_invalid")


def test_key_pattern_default_accepts_visible_ascii(client: APIClient) -> None:
    key = "!#$%&'()*+-./0-9:;<=>?@A-Z[\\]^_`a-z{|}~"
    assert post(client, "/function/", key=key).status_code == 201
    assert record_for(key)


# ttl --------------------------------------------------------------------------


def test_ttl_expiry_frees_the_key(client: APIClient) -> None:
    first = post(client, opt("short-ttl"), key="k")
    replay = post(client, opt("short-ttl"), key="k")
    advance(2.1, key="k")  # ttl is 2 s
    after = post(client, opt("short-ttl"), key="k")

    assert replay["Idempotent-Replayed"] == "true"
    assert after.status_code == 201
    assert "Idempotent-Replayed" not in after
    assert after.content != first.content
    assert Payment.objects.count() == 2


def test_the_longest_ttl_is_stored_and_replayed_on_every_backend(client: APIClient) -> None:
    # A century from now still fits every database's date range.
    first = post(client, opt("longest-ttl"), key="k")
    replay = post(client, opt("longest-ttl"), key="k")

    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    record = record_for("k")
    assert record.expires_at - record.created_at == MAX_DURATION


def test_ttl_counts_from_the_first_request(client: APIClient) -> None:
    post(client, "/function/", key="k")
    record = record_for("k")

    assert record.expires_at - record.created_at == dt.timedelta(hours=24)


@override_settings(IDEMPOTENCY={"TTL": dt.timedelta(hours=2)})
def test_ttl_from_the_setting(client: APIClient) -> None:
    post(client, "/function/", key="k")
    record = record_for("k")

    assert record.expires_at - record.created_at == dt.timedelta(hours=2)


def test_ttl_a_record_past_its_expiry_is_replaced(client: APIClient) -> None:
    RecordFactory(
        key="k",
        fingerprint=fingerprint_for("/function/", {"amount": 10}),
        created_at=timezone.now() - dt.timedelta(hours=25),
    )

    response = post(client, "/function/", key="k")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert IdempotencyRecord.objects.get().response_body == response.content


# scope ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["scope-callable", "scope-dotted"])
def test_scope_callable_defines_the_key_space(
    client: APIClient, user_client: APIClient, name: str
) -> None:
    first = post(client, opt(name), key="k", HTTP_X_TENANT="a")
    other_tenant = post(client, opt(name), key="k", HTTP_X_TENANT="b")
    same_tenant_other_user = post(user_client, opt(name), key="k", HTTP_X_TENANT="a")

    assert "Idempotent-Replayed" not in other_tenant
    assert same_tenant_other_user["Idempotent-Replayed"] == "true"
    assert same_tenant_other_user.content == first.content
    assert sorted(IdempotencyRecord.objects.values_list("scope", flat=True)) == [
        "tenant:a",
        "tenant:b",
    ]
    assert Payment.objects.count() == 2


def test_scope_default_is_the_user(user_client: APIClient, user: User) -> None:
    post(user_client, "/function/", key="k")

    assert record_for("k").scope == f"user:{user.pk}"


# per_endpoint -----------------------------------------------------------------


def test_per_endpoint_true_same_key_on_two_endpoints_is_two_operations(client: APIClient) -> None:
    a = post(client, "/per-endpoint/a/", key="k")
    b = post(client, "/per-endpoint/b/", key="k")
    a_retry = post(client, "/per-endpoint/a/", key="k")
    b_retry = post(client, "/per-endpoint/b/", key="k")

    assert a.json()["reference"] == "a"
    assert b.json()["reference"] == "b"
    assert a_retry.content == a.content
    assert b_retry.content == b.content
    assert a_retry["Idempotent-Replayed"] == b_retry["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 2
    assert sorted(IdempotencyRecord.objects.values_list("endpoint", flat=True)) == [
        "POST per-endpoint/a/",
        "POST per-endpoint/b/",
    ]


def test_per_endpoint_false_same_key_on_two_endpoints_is_a_reuse(client: APIClient) -> None:
    post(client, "/function/", key="k")
    response = post(client, "/apiview/", key="k")

    assert_problem(response, 422, "idempotency_key_reused")
    assert Payment.objects.count() == 1


# fingerprint ------------------------------------------------------------------


def test_fingerprint_callable_decides_what_is_the_same_request(client: APIClient) -> None:
    first = post(client, opt("fingerprint"), {"amount": 5, "reference": "x"}, key="k")
    same = post(client, opt("fingerprint"), {"amount": 5, "reference": "y"}, key="k")
    different = post(client, opt("fingerprint"), {"amount": 6, "reference": "x"}, key="k")

    assert same["Idempotent-Replayed"] == "true"
    assert same.content == first.content
    assert_problem(different, 422, "idempotency_key_reused")
    assert Payment.objects.count() == 1
    assert re.fullmatch(r"[0-9a-f]{64}", record_for("k").fingerprint)


def test_fingerprint_default_is_the_raw_body(client: APIClient) -> None:
    # Same JSON document, different bytes: not the same request.
    client.post(
        "/function/", b'{"amount": 5}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    response = client.post(
        "/function/", b'{"amount":5}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert_problem(response, 422, "idempotency_key_reused")


# replay_status ----------------------------------------------------------------


def test_replay_status_replaces_the_status_on_replays_only(client: APIClient) -> None:
    first = post(client, opt("replay-status"), key="k")
    retry = post(client, opt("replay-status"), key="k")

    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.content == first.content


@override_settings(IDEMPOTENCY={"REPLAY_STATUS": 200})
def test_replay_status_per_view_beats_the_setting(client: APIClient) -> None:
    post(client, "/function/", key="k")
    post(client, "/letters/", key="l", header="X-Idempotency-Key")

    assert post(client, "/function/", key="k").status_code == 200
    assert post(client, "/letters/", key="l", header="X-Idempotency-Key").status_code == 409


# replayed_header --------------------------------------------------------------


def test_replayed_header_custom_name(client: APIClient) -> None:
    first = post(client, opt("replayed-header"), key="k")
    retry = post(client, opt("replayed-header"), key="k")

    assert "X-Was-Replayed" not in first
    assert retry["X-Was-Replayed"] == "true"
    assert "Idempotent-Replayed" not in retry


def test_replayed_header_none_disables_it(client: APIClient) -> None:
    first = post(client, opt("no-replayed-header"), key="k")
    retry = post(client, opt("no-replayed-header"), key="k")

    assert "Idempotent-Replayed" not in retry
    assert retry.content == first.content
    assert Payment.objects.count() == 1


# request_id_header ------------------------------------------------------------


def test_request_id_is_generated_when_none_is_sent(client: APIClient) -> None:
    first = post(client, "/function/", key="k1")
    second = post(client, "/function/", key="k2")

    assert first["X-Request-Id"]
    assert first["X-Request-Id"] != second["X-Request-Id"]
    assert record_for("k1").request_id == first["X-Request-Id"]


def test_request_id_well_formed_incoming_id_is_kept(client: APIClient) -> None:
    response = post(client, "/function/", key="k", HTTP_X_REQUEST_ID="req-2024.01:abc")

    assert response["X-Request-Id"] == "req-2024.01:abc"
    assert record_for("k").request_id == "req-2024.01:abc"


@pytest.mark.parametrize("incoming", ["has spaces", "x" * 500, "<script>", ""])
def test_request_id_malformed_incoming_id_is_replaced(client: APIClient, incoming: str) -> None:
    response = post(client, "/function/", key="k", HTTP_X_REQUEST_ID=incoming)

    assert response["X-Request-Id"]
    assert response["X-Request-Id"] != incoming


def test_request_id_replay_carries_the_original_id(client: APIClient) -> None:
    post(client, "/function/", key="k", HTTP_X_REQUEST_ID="original")
    retry = post(client, "/function/", key="k", HTTP_X_REQUEST_ID="retry")

    assert retry["Idempotent-Replayed"] == "true"
    assert retry["X-Request-Id"] == "original"


def test_request_id_on_problem_responses(client: APIClient) -> None:
    post(client, "/function/", key="k")
    response = post(client, "/function/", {"amount": 1}, key="k", HTTP_X_REQUEST_ID="mine")

    assert_problem(response, 422, "idempotency_key_reused")
    assert response["X-Request-Id"] == "mine"


def test_request_id_header_custom_name(client: APIClient) -> None:
    first = post(client, opt("request-id-header"), key="k", HTTP_X_CORRELATION_ID="c-1")
    retry = post(client, opt("request-id-header"), key="k", HTTP_X_CORRELATION_ID="c-2")

    assert first["X-Correlation-Id"] == "c-1"
    assert retry["X-Correlation-Id"] == "c-1"
    assert "X-Request-Id" not in first
    assert "X-Request-Id" not in retry


def test_request_id_header_none_disables_it(client: APIClient) -> None:
    first = post(client, opt("no-request-id"), key="k", HTTP_X_REQUEST_ID="req-1")
    retry = post(client, opt("no-request-id"), key="k", HTTP_X_REQUEST_ID="req-1")
    mismatch = post(client, opt("no-request-id"), {"amount": 1}, key="k", HTTP_X_REQUEST_ID="req-1")

    assert retry["Idempotent-Replayed"] == "true"
    for response in (first, retry, mismatch):
        assert "X-Request-Id" not in response


# mismatch_status --------------------------------------------------------------


def test_mismatch_status_replaces_422(client: APIClient) -> None:
    post(client, opt("mismatch-status"), key="k")
    response = post(client, opt("mismatch-status"), {"amount": 1}, key="k")

    assert_problem(response, 409, "idempotency_key_reused")
    assert Payment.objects.count() == 1


# store_server_errors ----------------------------------------------------------


def test_store_server_errors_true_replays_5xx(client: APIClient) -> None:
    first = post(client, opt("store-server-errors") + "?fail=500", key="k")
    retry = post(client, opt("store-server-errors") + "?fail=500", key="k")

    assert first.status_code == retry.status_code == 500
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert Payment.objects.count() == 1
    assert record_for("k").response_status == 500


def test_store_server_errors_false_releases_the_key(client: APIClient) -> None:
    post(client, "/function/?fail=500", key="k")

    assert IdempotencyRecord.objects.count() == 0
    assert post(client, "/function/?fail=500", key="k").status_code == 500
    assert Payment.objects.count() == 2


# max_response_bytes -----------------------------------------------------------


def test_max_response_bytes_oversized_response_passes_through_unstored(
    client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="django_idempotency"):
        first = post(client, opt("max-response-bytes"), key="k")

    assert first.status_code == 201
    assert first.json()["amount"] == 10
    assert IdempotencyRecord.objects.count() == 0
    assert any("max_response_bytes" in r.getMessage() for r in caplog.records)
    retry = post(client, opt("max-response-bytes"), key="k")
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry
    assert Payment.objects.count() == 2


def test_max_response_bytes_default_stores_ordinary_responses(client: APIClient) -> None:
    post(client, "/binary/", key="k")  # 1 KiB of binary

    body = record_for("k").response_body
    assert body is not None
    assert len(body) == 1024


# lock_timeout -----------------------------------------------------------------


def _abandoned(key: str, locked_until: dt.datetime, url: str = "/function/") -> IdempotencyRecord:
    created = timezone.now() - dt.timedelta(minutes=5)
    return RecordFactory(
        key=key,
        fingerprint=fingerprint_for(url, {"amount": 10}),
        state=State.IN_PROGRESS,
        created_at=created,
        locked_until=locked_until,
        completed_at=None,
        response_status=None,
        response_body=None,
        response_headers="",
    )


def test_lock_timeout_abandoned_record_is_taken_over(
    client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    old = _abandoned("k", timezone.now() - dt.timedelta(seconds=1))

    with caplog.at_level(logging.WARNING, logger="django_idempotency"):
        response = post(client, "/function/", key="k")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Payment.objects.count() == 1
    record = record_for("k")
    assert record.pk == old.pk
    assert record.state == State.COMPLETED
    assert record.token != old.token
    assert record.response_body is not None
    assert bytes(record.response_body) == response.content
    assert any("abandoned" in r.getMessage() for r in caplog.records)
    # The taken-over record now replays like any other.
    assert post(client, "/function/", key="k")["Idempotent-Replayed"] == "true"


def test_lock_timeout_live_claim_is_not_taken_over(client: APIClient) -> None:
    _abandoned("k", timezone.now() + dt.timedelta(seconds=30))

    assert_problem(post(client, "/function/", key="k"), 409, "idempotency_request_in_progress")
    assert Payment.objects.count() == 0


def test_lock_timeout_sets_locked_until(client: APIClient) -> None:
    post(client, "/function/", key="k")
    record = record_for("k")

    assert record.locked_until - record.created_at == dt.timedelta(seconds=60)


# atomic -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_atomic_view_writes_and_record_commit_together() -> None:
    client = api_client()
    response = post(client, "/atomic/", key="k")
    retry = post(client, "/atomic/", key="k")

    assert response.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1
    assert record_for("k").state == State.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_atomic_exception_leaves_neither_the_writes_nor_the_record() -> None:
    client = api_client()
    with pytest.raises(RuntimeError):
        post(client, "/atomic/?fail=raise", key="k")

    assert Payment.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0
    assert post(client, "/atomic/", key="k").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_not_atomic_exception_keeps_the_writes_but_no_record() -> None:
    client = api_client()
    with pytest.raises(RuntimeError):
        post(client, "/function/?fail=raise", key="k")

    assert Payment.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 0


# Callables that return the wrong thing fail loudly, never silently share ---------


def test_scope_callable_returning_an_empty_scope_is_an_error(client: APIClient) -> None:
    with pytest.raises(TypeError, match="non-empty str"):
        post(client, opt("empty-scope"), key="k")
    assert IdempotencyRecord.objects.count() == 0
    assert Payment.objects.count() == 0


def test_fingerprint_callable_returning_a_non_string_is_an_error(client: APIClient) -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        post(client, opt("int-fingerprint"), key="k")
    assert IdempotencyRecord.objects.count() == 0
    assert Payment.objects.count() == 0
