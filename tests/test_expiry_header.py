"""The ``expiry_header`` option: first and replayed responses to a keyed
request say until when the key is remembered, as an HTTP date."""

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from django.utils.http import parse_http_date
from pytest_django import Settings
from rest_framework.test import APIClient

from django_idempotency import idempotent
from django_idempotency.identity import lookup_hash
from django_idempotency.models import IdempotencyRecord, State
from tests.factories import CLIENT_SCOPE, RecordFactory, api_client
from tests.helpers import fingerprint_for, needs_redis
from tests.settings import REDIS_URL
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db

HEADER = "Idempotency-Key-Expires"
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START TRANSACTION")


def post(client: APIClient, key: str, amount: int = 1, query: str = "") -> Any:
    return client.post(
        f"/function/{query}", {"amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )


def advertised(response: Any) -> int:
    return parse_http_date(response.headers[HEADER])


def expiry_of(key: str) -> int:
    return int(IdempotencyRecord.objects.get(key=key).expires_at.timestamp())


@pytest.fixture
def expiry_on(settings: Settings) -> None:
    settings.IDEMPOTENCY = {"EXPIRY_HEADER": HEADER}


@pytest.fixture
def redis_front() -> Iterator[redis.Redis]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    raw = redis.Redis.from_url(REDIS_URL)
    with override_settings(
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": prefix,
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
            },
        },
        IDEMPOTENCY={"LOCK": "cache", "CACHE_ALIAS": "redis", "EXPIRY_HEADER": HEADER},
    ):
        yield raw
    for key in raw.scan_iter(f"{prefix}:*"):
        raw.delete(key)


def statements(call: Callable[[], Any]) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    sql = [q["sql"] for q in captured.captured_queries]
    return response, [s for s in sql if not s.lstrip().upper().startswith(_CONTROL)]


def test_the_first_response_carries_the_records_expiry(expiry_on: None) -> None:
    response = post(api_client(), "first")

    assert response.status_code == 201
    # The record's own expires_at, from the claim's statement, rounded down.
    assert advertised(response) == expiry_of("first")
    assert response.headers[HEADER].endswith(" GMT")


def test_the_expiry_is_the_ttl_from_the_first_request(settings: Settings) -> None:
    settings.IDEMPOTENCY = {"EXPIRY_HEADER": HEADER, "TTL": dt.timedelta(hours=2)}
    before = timezone.now()

    response = post(api_client(), "two-hours")

    expected = before + dt.timedelta(hours=2)
    assert abs(advertised(response) - expected.timestamp()) <= 2


def test_a_replay_carries_the_same_expiry(expiry_on: None) -> None:
    client = api_client()
    first = post(client, "again")

    replay = post(client, "again")

    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers[HEADER] == first.headers[HEADER]
    assert advertised(replay) == expiry_of("again")


def test_a_takeover_keeps_the_first_requests_expiry(expiry_on: None) -> None:
    # The first request's worker died: its claim ran out, its expiry stands.
    now = timezone.now()
    first_expiry = now + dt.timedelta(hours=3, seconds=0.5)
    RecordFactory(
        key="orphan",
        fingerprint=fingerprint_for("/function/", {"amount": 1}),
        state=State.IN_PROGRESS,
        created_at=now - dt.timedelta(minutes=5),
        locked_until=now - dt.timedelta(seconds=1),
        expires_at=first_expiry,
        completed_at=None,
        response_status=None,
        response_headers="",
        response_body=None,
    )

    response = post(api_client(), "orphan")
    replay = post(api_client(), "orphan")

    assert response.status_code == 201
    assert advertised(response) == int(first_expiry.timestamp()) == expiry_of("orphan")
    assert advertised(replay) == int(first_expiry.timestamp())


def test_a_key_reused_after_expiry_advertises_its_new_expiry(expiry_on: None) -> None:
    created = timezone.now() - dt.timedelta(days=2)
    RecordFactory(key="reborn", created_at=created, expires_at=created + dt.timedelta(days=1))

    response = post(api_client(), "reborn")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    new_expiry = expiry_of("reborn")
    # Renewed by an UPDATE that returns nothing on MySQL/MariaDB: the database
    # clock of the read just before it, so never later than the record.
    assert new_expiry - 1 <= advertised(response) <= new_expiry


def test_without_returning_the_estimate_is_never_later_than_the_record(
    expiry_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MySQL (and SQLite before 3.35) cannot return the expiry from the INSERT.
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL's claim statement always returns the expiry")
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)

    response = post(api_client(), "estimated")

    assert response.status_code == 201
    assert expiry_of("estimated") - 1 <= advertised(response) <= expiry_of("estimated")
    assert advertised(post(api_client(), "estimated")) == expiry_of("estimated")


def test_off_by_default() -> None:
    client = api_client()
    first = post(client, "plain")
    replay = post(client, "plain")

    assert HEADER not in first.headers
    assert HEADER not in replay.headers
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_an_answer_that_is_not_stored_advertises_no_expiry(expiry_on: None) -> None:
    # A 5xx releases the key: a retry runs again, there is no expiry to tell.
    failed = post(api_client(), "boom", query="?fail=500")
    declined = post(api_client(), "declined", query="?fail=402")

    assert failed.status_code == 500
    assert HEADER not in failed.headers
    assert declined.status_code == 402
    assert advertised(declined) == expiry_of("declined")


def test_problem_responses_carry_no_expiry(expiry_on: None) -> None:
    client = api_client()
    post(client, "reused")

    mismatch = post(client, "reused", amount=2)

    assert mismatch.status_code == 422
    assert HEADER not in mismatch.headers


def test_the_expiry_costs_no_statement(settings: Settings) -> None:
    def counts() -> tuple[int, int]:
        client = api_client()
        key = uuid.uuid4().hex
        _, first = statements(lambda: post(client, key))
        _, replay = statements(lambda: post(client, key))
        return len(first), len(replay)

    without = counts()
    settings.IDEMPOTENCY = {"EXPIRY_HEADER": HEADER}
    with_header = counts()

    assert with_header == without
    assert Payment.objects.count() == 2


@needs_redis
def test_a_replay_from_redis_carries_the_expiry(redis_front: redis.Redis) -> None:
    client = api_client()
    first = post(client, "cached")

    replay, sql = statements(lambda: post(client, "cached"))

    assert sql == []  # answered by Redis alone
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers[HEADER] == first.headers[HEADER]
    assert advertised(replay) == expiry_of("cached")


@needs_redis
def test_a_redis_entry_cached_before_the_upgrade_replays_without_it(
    redis_front: redis.Redis,
) -> None:
    client = api_client()
    first = post(client, "old-entry")
    response_key = caches["redis"].make_key(
        f"idempotency:response:{lookup_hash(CLIENT_SCOPE, 'old-entry', None)}"
    )
    raw = redis_front.get(response_key)
    assert isinstance(raw, bytes)
    head, _, body = raw.partition(b"\0")
    # The four-field head an earlier version wrote.
    redis_front.set(response_key, json.dumps(json.loads(head)[:4]).encode() + b"\0" + body)

    replay, sql = statements(lambda: post(client, "old-entry"))

    assert sql == []
    assert replay.content == first.content
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert HEADER not in replay.headers


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"expiry_header": "Idempotency-Key"}, "'expiry_header' must differ from 'header'"),
        (
            {"expiry_header": "x-request-id"},
            "'expiry_header' must differ from 'request_id_header'",
        ),
        (
            {"expiry_header": "Idempotent-Replayed"},
            "'expiry_header' must differ from 'replayed_header'",
        ),
        ({"expiry_header": "Key Expires"}, "must be an HTTP header name"),
        ({"expiry_header": 3600}, "must be an HTTP header name"),
    ],
)
def test_rejects_an_unusable_header(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        idempotent(**options)


@override_settings(ROOT_URLCONF="sample_project.urls")
def test_the_sample_checkout_advertises_the_expiry() -> None:
    guest = APIClient()
    assert guest.get("/checkout/").status_code == 200  # starts the guest's session
    payment = {"amount": 1250, "currency": "EUR"}

    def pay() -> Any:
        return guest.post(
            "/checkout/payments/", payment, format="json", HTTP_IDEMPOTENCY_KEY="basket-7"
        )

    first, replay = pay(), pay()

    assert first.status_code == 201
    assert advertised(first) == expiry_of("basket-7")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers[HEADER] == first.headers[HEADER]
