"""The database connection breaks while the view runs, before its own write
(a restart, a failover, a proxy cutting it): the view's query fails.

In atomic mode the view's transaction is gone with the connection, so
nothing happened: the client is told 503 (retry), not the view's 500, and the
key is free for that retry at once. Outside atomic mode the view's error is
the answer, as without the app, and the key is released on a new
connection, so the retry runs now rather than after lock_timeout.

The connection is really lost: the database ends the session. The module
carries its own views and URLs (``@pytest.mark.urls(__name__)``).
"""

from __future__ import annotations

from typing import Any

import pytest
from adrf.decorators import api_view as async_api_view
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from django.test import AsyncClient
from django.urls import path
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent
from django_idempotency.models import IdempotencyRecord
from tests.factories import CLIENT_API_KEY, api_client
from tests.helpers import allow_connections, assert_problem, end_session
from tests.testapp.models import Payment

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls(__name__),
    pytest.mark.usefixtures("server_session"),
]


def _pay(request: Request) -> Response:
    if request.headers.get("X-Cut") == "1":
        end_session(refuse_new=request.headers.get("X-Refuse-New") == "1")
    key = request.headers["Idempotency-Key"]
    payment = Payment.objects.create(amount=5, reference=key)
    return Response({"id": payment.pk}, status=201)


pay = api_view(["POST"])(idempotent(lock_timeout=60)(_pay))
pay_atomic = api_view(["POST"])(idempotent(lock_timeout=60, atomic=True)(_pay))


async def _pay_async(request: Request) -> Response:
    if request.headers.get("X-Cut") == "1":
        await sync_to_async(end_session)()  # the request's thread: its connection
    key = request.headers["Idempotency-Key"]
    payment = await Payment.objects.acreate(amount=5, reference=key)
    return Response({"id": payment.pk}, status=201)


pay_async_atomic = async_api_view(["POST"])(idempotent(lock_timeout=60, atomic=True)(_pay_async))

urlpatterns = [
    path("pay/", pay),
    path("pay-atomic/", pay_atomic),
    path("pay-async-atomic/", pay_async_atomic),
]


def post(url: str, key: str, **headers: str) -> Any:
    return api_client(raise_request_exception=False).post(
        url, {"amount": 5}, format="json", headers={"Idempotency-Key": key, **headers}
    )


def test_atomic_mode_answers_503_and_frees_the_key_when_the_connection_breaks_in_the_view() -> None:
    lost = post("/pay-atomic/", "atomic-cut", **{"X-Cut": "1"})

    assert_problem(lost, 503, "idempotency_unavailable")
    assert "Retry-After" in lost.headers
    assert Payment.objects.filter(reference="atomic-cut").count() == 0
    retry = post("/pay-atomic/", "atomic-cut")
    assert retry.status_code == 201  # at once, not 409 until lock_timeout
    assert Payment.objects.filter(reference="atomic-cut").count() == 1


def test_atomic_mode_keeps_the_key_when_the_database_stays_away() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("refusing new connections to one database is shown on PostgreSQL")

    lost = post("/pay-atomic/", "atomic-away", **{"X-Cut": "1", "X-Refuse-New": "1"})

    assert_problem(lost, 503, "idempotency_unavailable")
    allow_connections()
    # The release could not reach the database: a retry is told to wait
    # (until lock_timeout), never run twice.
    assert post("/pay-atomic/", "atomic-away").status_code == 409
    assert Payment.objects.filter(reference="atomic-away").count() == 0


def test_outside_atomic_mode_the_views_error_is_the_answer_and_the_key_is_freed() -> None:
    failed = post("/pay/", "plain-cut", **{"X-Cut": "1"})

    assert failed.status_code == 500  # the view's own error, as without the app
    assert not IdempotencyRecord.objects.filter(key="plain-cut").exists()
    retry = post("/pay/", "plain-cut")
    assert retry.status_code == 201  # at once, not 409 until lock_timeout
    assert Payment.objects.filter(reference="plain-cut").count() == 1


def test_an_async_view_in_atomic_mode_answers_503_when_the_connection_breaks_in_it() -> None:
    def apost(**headers: str) -> Any:
        return async_to_sync(AsyncClient(raise_request_exception=False).post)(
            "/pay-async-atomic/",
            {"amount": 5},
            content_type="application/json",
            headers={"X-Api-Key": CLIENT_API_KEY, "Idempotency-Key": "async-cut", **headers},
        )

    lost = apost(**{"X-Cut": "1"})

    assert_problem(lost, 503, "idempotency_unavailable")
    assert Payment.objects.filter(reference="async-cut").count() == 0
    assert apost().status_code == 201
    assert Payment.objects.filter(reference="async-cut").count() == 1
