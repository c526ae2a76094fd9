"""A broken metrics receiver must not break the API it measures."""

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from django_idempotency.signals import idempotency_replayed, idempotency_stored
from tests.factories import api_client
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db


def broken_receiver(**kwargs: Any) -> None:
    raise ValueError("statsd is down")


@pytest.fixture
def broken() -> Iterator[None]:
    idempotency_stored.connect(broken_receiver)
    idempotency_replayed.connect(broken_receiver)
    yield
    idempotency_stored.disconnect(broken_receiver)
    idempotency_replayed.disconnect(broken_receiver)


def test_failing_receiver_is_logged_and_the_request_still_succeeds(
    broken: None, caplog: pytest.LogCaptureFixture
) -> None:
    client = api_client()
    with caplog.at_level(logging.ERROR, logger="django.dispatch"):
        first = client.post("/function/", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="s1")
        replay = client.post("/function/", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="s1")
    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1
    logged = [r.exc_info and r.exc_info[0] for r in caplog.records if r.name == "django.dispatch"]
    assert logged == [ValueError, ValueError]
