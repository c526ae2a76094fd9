"""``GET idempotency/keys/<key>``: a client that lost a response asks what
became of its request instead of sending it again."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from openapi_spec_validator import validate
from rest_framework.permissions import IsAuthenticated
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from django_idempotency.lookup import OutcomeLookupView
from django_idempotency.models import IdempotencyRecord, State
from tests import clock
from tests.factories import RecordFactory, api_client
from tests.helpers import needs_redis
from tests.test_redis import redis_lock  # noqa: F401  (a fixture)
from tests.urls import urlpatterns as test_urlpatterns

urlpatterns = [*test_urlpatterns, path("idempotency/", include("django_idempotency.urls"))]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

PROBLEM = "application/problem+json"
ROOT = Path(__file__).resolve().parents[1]


def new_key() -> str:
    return str(uuid.uuid4())


def send(client: APIClient, url: str, key: str, **extra: Any) -> Any:
    response = client.post(url, {"amount": 10}, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)
    assert response.status_code < 300, response.content
    return response


def look_up(client: APIClient, key: str, **params: str) -> Any:
    return client.get(f"/idempotency/keys/{key}", params)


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = json.loads(response.content)
    assert body["code"] == code
    assert body["status"] == status
    return body


def parse_time(value: str) -> dt.datetime:
    assert value.endswith("Z"), value
    return dt.datetime.fromisoformat(value)


# The three states -----------------------------------------------------------


def test_a_completed_request_shows_its_status_endpoint_and_lifetime(client: APIClient) -> None:
    key = new_key()
    send(client, "/function/", key)

    response = look_up(client, key)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    outcome = response.json()
    assert outcome["key"] == key
    assert outcome["state"] == "completed"
    assert outcome["endpoint"] == "POST function/"
    assert outcome["response"] == {"status": 201}  # no body: LOOKUP_BODY is off
    created, expires = parse_time(outcome["created_at"]), parse_time(outcome["expires_at"])
    assert expires - created == dt.timedelta(hours=24)
    assert created <= parse_time(outcome["completed_at"]) <= expires
    record = IdempotencyRecord.objects.get(key=key)
    assert created == record.created_at
    assert expires == record.expires_at


def test_a_request_still_running_is_in_progress_without_a_response(client: APIClient) -> None:
    key = new_key()
    RecordFactory(
        key=key,
        state=State.IN_PROGRESS,
        completed_at=None,
        response_status=None,
        response_headers="",
        response_body=None,
    )

    outcome = look_up(client, key).json()

    assert outcome["state"] == "in_progress"
    assert outcome["response"] is None
    assert outcome["completed_at"] is None
    # A worker that died leaves it in progress until a retry takes it over.
    clock.pass_lock_timeout(key)
    assert look_up(client, key).json()["state"] == "in_progress"


def test_a_key_past_its_ttl_is_expired_by_the_database_clock(client: APIClient) -> None:
    key = new_key()
    send(client, "/function/", key)

    clock.advance(24 * 3600 - 1, key=key)
    assert look_up(client, key).json()["state"] == "completed"
    clock.advance(1, key=key)
    outcome = look_up(client, key).json()

    assert outcome["state"] == "expired"
    assert outcome["response"] == {"status": 201}


def test_a_look_up_costs_one_statement(client: APIClient) -> None:
    key = new_key()
    send(client, "/function/", key)

    with CaptureQueriesContext(connection) as queries:
        assert look_up(client, key).status_code == 200

    assert len(queries) == 1  # the API key authenticates without the database


def test_a_key_with_a_percent_sign_is_found_when_the_url_encodes_it(client: APIClient) -> None:
    key = "bytes-%FF%FE"  # as the client sent it: ASCII, the percent signs included
    send(client, "/function/", key)

    assert look_up(client, "bytes-%25FF%25FE").json()["key"] == key


def test_a_key_with_a_slash_is_found(client: APIClient) -> None:
    key = "orders/2024/0001"
    send(client, "/function/", key)

    assert look_up(client, key).json()["key"] == key


# Unknown keys and other callers' keys ------------------------------------------


def test_an_unknown_key_is_a_404_problem(client: APIClient) -> None:
    response = look_up(client, new_key())

    body = problem(response, 404, "idempotency_key_unknown")
    assert body["type"].endswith("#idempotency-key-unknown")
    assert response["Cache-Control"] == "no-store"


def test_another_callers_key_is_indistinguishable_from_an_unknown_key(
    user_client: APIClient,
) -> None:
    key = new_key()
    send(api_client("someone-else"), "/function/", key)

    def answer(looked_up: str) -> tuple[int, bytes, dict[str, str], list[str]]:
        with CaptureQueriesContext(connection) as queries:
            response = look_up(user_client, looked_up)
        # The statements with the lookup hashes (the only parameters that
        # differ) taken out: the token's, then the record's.
        statements = [re.sub("[0-9a-f]{64}", "?", q["sql"]) for q in queries.captured_queries]
        return response.status_code, response.content, dict(response.items()), statements

    theirs, unknown = answer(key), answer(new_key())

    assert theirs[0] == unknown[0] == 404
    assert theirs[1] == unknown[1]
    assert theirs[2] == unknown[2]
    assert len(theirs[3]) == 2
    assert theirs[3] == unknown[3]
    # And the key is still there for its owner.
    assert look_up(api_client("someone-else"), key).json()["state"] == "completed"


def _tenant(request: Any) -> str:
    return "tenant:" + str(request.headers["X-Tenant"])


def test_the_scope_setting_decides_whose_keys_are_found() -> None:
    key = new_key()
    acme = APIClient(HTTP_X_TENANT="acme")
    with override_settings(IDEMPOTENCY={"SCOPE": f"{__name__}._tenant"}):
        send(acme, "/function/", key)
        assert look_up(acme, key).json()["state"] == "completed"
        problem(look_up(APIClient(HTTP_X_TENANT="globex"), key), 404, "idempotency_key_unknown")


# Bodies ------------------------------------------------------------------------


def test_the_body_is_shown_only_when_the_setting_allows_it(client: APIClient) -> None:
    key = new_key()
    first = send(client, "/function/", key)

    assert "body" not in look_up(client, key).json()["response"]
    with override_settings(IDEMPOTENCY={"LOOKUP_BODY": True}):
        response = look_up(client, key).json()["response"]

    assert response["body_encoding"] == "utf-8"
    assert response["body"] == first.content.decode()
    assert response["content_type"] == "application/json"


def test_a_body_that_is_not_utf8_comes_as_base64(client: APIClient) -> None:
    key = new_key()
    first = client.post("/binary/", HTTP_IDEMPOTENCY_KEY=key)

    with override_settings(IDEMPOTENCY={"LOOKUP_BODY": True}):
        response = look_up(client, key).json()["response"]

    assert response["body_encoding"] == "base64"
    assert base64.b64decode(response["body"]) == first.content
    assert response["content_type"] == "application/pdf"


def test_a_lookup_body_that_is_not_a_bool_is_refused_by_the_setting_check() -> None:
    from django_idempotency.checks import check_settings

    with override_settings(IDEMPOTENCY={"LOOKUP_BODY": "yes"}):
        errors = check_settings(None)

    assert [e.id for e in errors] == ["django_idempotency.E001"]
    assert "LOOKUP_BODY" in errors[0].msg


# Bad input and unauthenticated callers -------------------------------------------


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("has%20space", "not allowed"),
        ("a," + "b", "sent once"),
        ("k" * 256, "at most 255"),
        ("caf%C3%A9", "ASCII"),
        ("tab%09inside", "control characters"),
    ],
)
def test_a_key_that_breaks_the_key_rules_is_a_400(client: APIClient, key: str, rule: str) -> None:
    body = problem(look_up(client, key), 400, "idempotency_key_invalid")
    assert rule in body["detail"]


def test_an_anonymous_caller_gets_the_anonymous_key_problem(anonymous_client: APIClient) -> None:
    problem(look_up(anonymous_client, new_key()), 400, "idempotency_key_anonymous")


def test_drf_permissions_answer_before_the_scope(
    anonymous_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What DEFAULT_PERMISSION_CLASSES = [IsAuthenticated] gives the view.
    monkeypatch.setattr(OutcomeLookupView, "permission_classes", [IsAuthenticated])

    response = look_up(anonymous_client, new_key())

    assert response.status_code == 401
    assert response.json()["detail"]


# per_endpoint records -----------------------------------------------------------


def test_a_per_endpoint_key_is_found_with_the_endpoint_it_was_sent_to(client: APIClient) -> None:
    key = new_key()
    send(client, "/per-endpoint/a/", key)
    send(client, "/per-endpoint/b/", key)

    problem(look_up(client, key), 404, "idempotency_key_unknown")
    as_sent = look_up(client, key, endpoint="POST /per-endpoint/a/").json()
    as_shown = look_up(client, key, endpoint="POST per-endpoint/b/").json()
    lower_case = look_up(client, key, endpoint="post /per-endpoint/b/").json()

    assert as_sent["endpoint"] == "POST per-endpoint/a/"
    assert as_shown["endpoint"] == lower_case["endpoint"] == "POST per-endpoint/b/"
    assert as_sent["state"] == as_shown["state"] == "completed"
    problem(look_up(client, key, endpoint="PATCH /per-endpoint/a/"), 404, "idempotency_key_unknown")


def test_an_endpoint_parameter_still_finds_a_key_shared_by_all_endpoints(client: APIClient) -> None:
    key = new_key()
    send(client, "/function/", key)

    for endpoint in ("POST /function/", "POST /nowhere/", "nonsense", ""):
        assert look_up(client, key, endpoint=endpoint).json()["endpoint"] == "POST function/"


# Throttling --------------------------------------------------------------------


def test_scoped_rate_throttle_users_throttle_it_under_its_scope(
    client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What DEFAULT_THROTTLE_CLASSES and DEFAULT_THROTTLE_RATES give DRF views
    # when the URLconf is imported (DRF reads them into class attributes then).
    monkeypatch.setattr(OutcomeLookupView, "throttle_classes", [ScopedRateThrottle])
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"idempotency_lookup": "2/min"})
    key = new_key()

    statuses = [look_up(client, key).status_code for _ in range(3)]

    assert statuses == [404, 404, 429]


def test_scoped_rate_throttle_without_a_rate_for_it_leaves_it_unthrottled(
    client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DRF raises ImproperlyConfigured (a 500) for a scope without a rate.
    monkeypatch.setattr(OutcomeLookupView, "throttle_classes", [ScopedRateThrottle])
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"other": "1/min"})

    assert [look_up(client, new_key()).status_code for _ in range(3)] == [404] * 3


# The OpenAPI schema ----------------------------------------------------------------


SCHEMA_SCRIPT = """
import json, sys
from django.conf import settings
# As a project sets it: drf-spectacular's annotations read it when views are imported.
settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_SCHEMA_CLASS": sys.argv[1]}
import django
django.setup()
from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator
generator = SchemaGenerator(patterns=[path("idempotency/", include("django_idempotency.urls"))])
print(json.dumps(generator.get_schema(request=None, public=True)))
"""


def _schema(schema_class: str) -> dict[str, Any]:
    """The schema a project with this DEFAULT_SCHEMA_CLASS generates (in a
    process of its own: the class is read when the views are imported)."""
    result = subprocess.run(
        [sys.executable, "-c", SCHEMA_SCRIPT, schema_class],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "sample_project.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "schema_class", ["django_idempotency.openapi.AutoSchema", "drf_spectacular.openapi.AutoSchema"]
)
def test_the_schema_documents_the_look_up(schema_class: str) -> None:
    schema = _schema(schema_class)
    validate(schema)

    operation = schema["paths"]["/idempotency/keys/{key}"]["get"]
    assert operation["operationId"] == "idempotency_key_outcome"
    assert {p["name"]: p["in"] for p in operation["parameters"]} == {
        "key": "path",
        "endpoint": "query",
    }
    responses = operation["responses"]
    assert set(responses) == {"200", "400", "404", "503"}
    outcome = responses["200"]["content"]["application/json"]["schema"]
    assert outcome["properties"]["state"]["enum"] == ["in_progress", "completed", "expired"]

    def codes_of(status: str) -> list[str]:
        examples = responses[status]["content"][PROBLEM]["examples"].values()
        return [example["value"]["code"] for example in examples]

    assert codes_of("400") == ["idempotency_key_invalid", "idempotency_key_anonymous"]
    assert codes_of("404") == ["idempotency_key_unknown"]
    assert codes_of("503") == ["idempotency_unavailable"]
    problem_schema = responses["404"]["content"][PROBLEM]["schema"]
    if schema_class.startswith("django_idempotency"):
        assert problem_schema == {"$ref": "#/components/schemas/IdempotencyProblem"}
        codes = schema["components"]["schemas"]["IdempotencyProblemCode"]["enum"]
    else:  # drf-spectacular's own class: the same document, inline
        codes = problem_schema["properties"]["code"]["enum"]
    assert "idempotency_key_unknown" in codes


# With the Redis front ----------------------------------------------------------


@needs_redis
@pytest.mark.usefixtures("redis_lock")
def test_with_the_redis_front_the_record_in_the_database_answers(client: APIClient) -> None:
    key = new_key()
    first = send(client, "/function/", key)
    replay = client.post("/function/", {"amount": 10}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content

    assert look_up(client, key).json()["state"] == "completed"
    clock.advance(24 * 3600, key=key)
    assert look_up(client, key).json()["state"] == "expired"


# The sample project ------------------------------------------------------------


def _token_client(user: Any) -> APIClient:
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.mark.urls("sample_project.urls")
def test_the_sample_project_looks_up_its_payments_and_txcloud_checks() -> None:
    from tests.factories import UserFactory

    alice, bob = _token_client(UserFactory()), _token_client(UserFactory())
    payment, check = new_key(), "verify_attempt_1"
    send(alice, "/ietf/payments/", payment)
    verify = alice.post(
        "/txcloud/identity/verify",
        {"country": "MA", "reference": "customer-1"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=check,
    )
    assert verify.status_code == 201

    outcome = look_up(alice, payment).json()
    # A router's route is the regular expression it built.
    assert (outcome["state"], outcome["endpoint"]) == ("completed", "POST ietf/payments/$")
    problem(look_up(bob, payment), 404, "idempotency_key_unknown")

    # TXCloud keeps keys per API key and endpoint, with keys of 10+ characters.
    txcloud = alice.get(
        f"/txcloud/idempotency/keys/{check}", {"endpoint": "POST /txcloud/identity/verify"}
    )
    assert txcloud.json()["endpoint"] == "POST txcloud/identity/verify"
    problem(alice.get(f"/txcloud/idempotency/keys/{check}"), 404, "idempotency_key_unknown")
    problem(alice.get("/txcloud/idempotency/keys/short"), 400, "idempotency_key_invalid")
