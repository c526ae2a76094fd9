"""Custom fingerprints keep endpoints apart, impossible option values are
refused at decoration, the admin date hierarchy never scans for DISTINCT dates."""

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import path
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent
from tests.factories import api_client
from tests.testapp.models import Payment


def body_only(request: Request) -> bytes:
    return request._request.body


@api_view(["POST"])
@idempotent(fingerprint=body_only)
def endpoint_a(request: Request) -> Response:
    Payment.objects.create(amount=1, reference="a")
    return Response({"endpoint": "a"}, status=201)


@api_view(["POST"])
@idempotent(fingerprint=body_only)
def endpoint_b(request: Request) -> Response:
    Payment.objects.create(amount=1, reference="b")
    return Response({"endpoint": "b"}, status=201)


urlpatterns = [path("a/", endpoint_a), path("b/", endpoint_b)]


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_custom_fingerprint_keeps_endpoints_apart() -> None:
    # per_endpoint=False: the same key on another endpoint is a reuse (422),
    # never a replay of the other endpoint's answer, whatever the fingerprint.
    client = api_client()
    first = client.post("/a/", {"x": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    other = client.post("/b/", {"x": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    retry = client.post("/a/", {"x": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 201
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert retry["Idempotent-Replayed"] == "true"
    assert list(Payment.objects.values_list("reference", flat=True)) == ["a"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"methods": ["POTS"]}, "POTS"),
        ({"request_id_header": "Idempotency-Key"}, "request_id_header"),
    ],
)
def test_impossible_values_are_refused_at_decoration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        idempotent(**options)


@pytest.mark.django_db
def test_admin_date_hierarchy_never_scans_for_distinct_dates(admin_client: Client) -> None:
    import datetime as dt

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse
    from django.utils import timezone

    from tests.factories import RecordFactory

    # Three days of one month, whatever today is (a month boundary would make
    # the hierarchy start at months).
    noon = timezone.localtime().replace(day=15, hour=12, minute=0, second=0, microsecond=0)
    for days_ago in (0, 1, 2):
        RecordFactory(created_at=noon - dt.timedelta(days=days_ago))

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(
            reverse("admin:django_idempotency_idempotencyrecord_changelist")
        )

    assert response.status_code == 200
    assert not [q for q in queries.captured_queries if "DISTINCT" in q["sql"].upper()]
    html = response.content.decode()
    for days_ago in (0, 1, 2):
        day = (noon - dt.timedelta(days=days_ago)).day
        assert f"created_at__day={day}" in html
