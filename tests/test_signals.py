"""The four signals and the log lines, through real requests to the test views."""

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.utils import timezone
from pytest_django import Settings
from rest_framework.request import Request
from rest_framework.test import APIClient
from rest_framework.views import APIView

from django_idempotency import signals
from django_idempotency.models import IdempotencyRecord, State
from tests.testapp.views import PaymentAPIView

pytestmark = pytest.mark.django_db

ALL = {
    "stored": signals.idempotency_stored,
    "replayed": signals.idempotency_replayed,
    "conflict": signals.idempotency_conflict,
    "in_progress": signals.idempotency_in_progress,
}
KEY = "order-7f3a9c1e-signal"
BODY = {"amount": 4200, "reference": "never-logged-reference"}


@pytest.fixture
def fired() -> Iterator[list[tuple[str, Any, dict[str, Any]]]]:
    """Every signal sent during the test, as (name, sender, kwargs)."""
    events: list[tuple[str, Any, dict[str, Any]]] = []
    receivers: dict[str, Callable[..., None]] = {}
    for name, signal in ALL.items():

        def receiver(sender: Any, *, name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            events.append((name, sender, kwargs))

        receivers[name] = receiver
        signal.connect(receiver)
    yield events
    for name, signal in ALL.items():
        signal.disconnect(receivers[name])


def post(
    client: APIClient, path: str = "/function/", body: Any = BODY, key: str = KEY, **extra: Any
) -> Any:
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


def only(
    events: list[tuple[str, Any, dict[str, Any]]], name: str
) -> tuple[str, Any, dict[str, Any]]:
    assert [e[0] for e in events] == [name]
    return events[0]


def test_stored_on_first_request(
    client: APIClient, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    response = post(client)

    assert response.status_code == 201
    _, sender, kwargs = only(fired, "stored")
    record = IdempotencyRecord.objects.get()
    assert kwargs["key"] == KEY
    assert kwargs["record_id"] == record.pk
    assert isinstance(kwargs["request"], Request)
    assert kwargs["request"].path == "/function/"
    assert issubclass(sender, APIView)


def test_replayed_on_retry(client: APIClient, fired: list[tuple[str, Any, dict[str, Any]]]) -> None:
    post(client)
    fired.clear()

    response = post(client)

    assert response.status_code == 201
    _, _, kwargs = only(fired, "replayed")
    assert kwargs["key"] == KEY
    assert kwargs["record_id"] == IdempotencyRecord.objects.get().pk
    assert kwargs["request"].data == BODY


def test_conflict_on_reuse_with_another_request(
    client: APIClient, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    post(client)
    fired.clear()

    response = post(client, body={**BODY, "amount": 1})

    assert response.status_code == 422
    _, _, kwargs = only(fired, "conflict")
    assert kwargs["key"] == KEY
    assert kwargs["record_id"] == IdempotencyRecord.objects.get().pk
    assert kwargs["request"].data["amount"] == 1


def test_in_progress_while_the_first_request_runs(
    client: APIClient, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    post(client)
    # As the first request would leave it while its view still runs.
    IdempotencyRecord.objects.update(
        state=State.IN_PROGRESS,
        locked_until=timezone.now() + dt.timedelta(minutes=5),
        response_status=None,
        response_body=None,
    )
    fired.clear()

    response = post(client)

    assert response.status_code == 409
    _, _, kwargs = only(fired, "in_progress")
    assert kwargs["key"] == KEY
    assert kwargs["record_id"] == IdempotencyRecord.objects.get().pk


def test_sender_is_the_view_class(
    client: APIClient, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    post(client, "/apiview/")
    post(client, "/apiview/")

    assert [(name, sender) for name, sender, _ in fired] == [
        ("stored", PaymentAPIView),
        ("replayed", PaymentAPIView),
    ]


@pytest.mark.parametrize(
    ("path", "query"),
    [("/function/", "?fail=500"), ("/streaming/", "")],
)
def test_nothing_is_sent_when_nothing_is_stored(
    client: APIClient, fired: list[tuple[str, Any, dict[str, Any]]], path: str, query: str
) -> None:
    response = post(client, path + query)

    assert response.status_code in (200, 500)
    assert fired == []
    assert not IdempotencyRecord.objects.exists()


def test_no_signal_without_a_key(
    client: APIClient, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    assert client.post("/function/", BODY, format="json").status_code == 201
    assert fired == []


# --- logging ----------------------------------------------------------------------


def logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "django_idempotency"]


def test_replay_logs_at_debug_without_key_or_body(
    client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="django_idempotency")
    post(client)
    post(client)
    post(client, body={**BODY, "amount": 1})

    records = logged(caplog)
    assert any(r.levelno == logging.DEBUG and "Replaying" in r.getMessage() for r in records)
    for record in records:
        message = record.getMessage()
        assert KEY not in message
        assert "never-logged-reference" not in message and "4200" not in message


def test_takeover_of_an_abandoned_record_logs_a_warning(
    client: APIClient,
    caplog: pytest.LogCaptureFixture,
    fired: list[tuple[str, Any, dict[str, Any]]],
) -> None:
    post(client)
    record = IdempotencyRecord.objects.get()
    IdempotencyRecord.objects.update(
        state=State.IN_PROGRESS,
        locked_until=timezone.now() - dt.timedelta(minutes=5),
        response_status=None,
        response_body=None,
    )
    fired.clear()
    caplog.set_level(logging.INFO, logger="django_idempotency")

    response = post(client)

    assert response.status_code == 201
    warnings = [r for r in logged(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"record {record.pk}" in warnings[0].getMessage()
    assert KEY not in warnings[0].getMessage()
    # The retry ran the view and stored its response on the same record.
    _, _, kwargs = only(fired, "stored")
    assert kwargs["record_id"] == record.pk


def test_oversized_response_logs_a_warning_and_is_not_stored(
    client: APIClient,
    caplog: pytest.LogCaptureFixture,
    fired: list[tuple[str, Any, dict[str, Any]]],
    settings: Settings,
) -> None:
    settings.IDEMPOTENCY = {"MAX_RESPONSE_BYTES": 10}
    caplog.set_level(logging.INFO, logger="django_idempotency")

    response = post(client)

    assert response.status_code == 201
    assert fired == []
    assert not IdempotencyRecord.objects.exists()
    warnings = [r for r in logged(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "not stored" in warnings[0].getMessage()
    assert KEY not in warnings[0].getMessage()
