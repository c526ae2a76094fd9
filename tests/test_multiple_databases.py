"""Guarantee 7: records on their own database alias (IDEMPOTENCY["DATABASE"])."""

from typing import Any

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext, override_settings
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord
from tests.factories import api_client
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db(databases=["default", "records"])


def post(client: APIClient, path: str, key: str, amount: int = 1) -> Any:
    return client.post(path, {"amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=key)


@override_settings(IDEMPOTENCY={"DATABASE": "records"})
def test_records_live_on_the_configured_alias() -> None:
    client = api_client()
    with CaptureQueriesContext(connections["records"]) as record_queries:
        first = post(client, "/function/", "multi-1")
    assert first.status_code == 201
    assert len(record_queries.captured_queries) == 2  # claim and store, on "records"
    assert IdempotencyRecord.objects.using("records").filter(key="multi-1").exists()
    assert not IdempotencyRecord.objects.using("default").filter(key="multi-1").exists()

    replay = post(client, "/function/", "multi-1")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert Payment.objects.count() == 1


@override_settings(IDEMPOTENCY={"DATABASE": "records"})
def test_atomic_mode_covers_the_records_alias_only() -> None:
    # The atomic view writes its Payment on "default" and then raises: atomic
    # mode wraps the records alias, so the record is released but the write on
    # "default" is not rolled back. docs/concurrency.md says so.
    client = api_client()
    with pytest.raises(RuntimeError):
        client.post(
            "/atomic/?fail=raise", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="multi-atomic"
        )
    assert not IdempotencyRecord.objects.using("records").filter(key="multi-atomic").exists()
    assert Payment.objects.using("default").count() == 1
