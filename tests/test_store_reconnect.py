"""Storing the response after the view survives a connection that broke
while the view ran (a server restart, a proxy or failover dropping it): the
view's effects are committed, so the record must say so, or a retry after
lock_timeout would run them again.

The connection is really lost: the view has the database end its session.
The module carries its own view and URLs (``@pytest.mark.urls(__name__)``).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.urls import path
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import engine, idempotent
from django_idempotency.models import IdempotencyRecord, State
from tests.factories import api_client
from tests.helpers import allow_connections, end_session
from tests.testapp.models import Payment

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls(__name__),
    pytest.mark.usefixtures("server_session"),
]


@api_view(["POST"])
@idempotent(lock_timeout=60)
def pay(request: Request) -> Response:
    key = request.headers["Idempotency-Key"]
    payment = Payment.objects.create(amount=5, reference=key)  # committed: autocommit
    end_session(refuse_new=request.headers.get("X-Refuse-New") == "1")
    return Response({"id": payment.pk}, status=201)


urlpatterns = [path("pay/", pay)]


def post(key: str, **headers: str) -> Any:
    return api_client().post(
        "/pay/", {"amount": 5}, format="json", headers={"Idempotency-Key": key, **headers}
    )


def test_the_response_is_stored_on_a_new_connection_when_the_session_ended_during_the_view(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = post("lost-session")

    assert first.status_code == 201
    record = IdempotencyRecord.objects.get(key="lost-session")
    assert record.state == State.COMPLETED
    assert "trying again on a new connection" in caplog.text
    # A retry is answered from the record: the payment happened once.
    retry = post("lost-session")
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert Payment.objects.filter(reference="lost-session").count() == 1


def test_the_store_waits_for_the_database_to_take_connections_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("refusing new connections to one database is shown on PostgreSQL")
    pauses: list[float] = []

    def pause(seconds: float) -> None:  # the clock moves; the database comes back
        pauses.append(seconds)
        allow_connections()

    monkeypatch.setattr(engine, "_sleep", pause)

    first = post("database-away", **{"X-Refuse-New": "1"})

    assert first.status_code == 201
    # The immediate second try found the database refusing connections; the
    # third, after the first pause, stored the response.
    assert pauses == [engine.STORE_RETRY_PAUSES[1]]
    assert IdempotencyRecord.objects.get(key="database-away").state == State.COMPLETED
    assert post("database-away").json() == first.json()
    assert Payment.objects.filter(reference="database-away").count() == 1


def test_a_database_that_stays_away_leaves_the_claim_locked_and_the_client_its_answer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("refusing new connections to one database is shown on PostgreSQL")
    pauses: list[float] = []
    monkeypatch.setattr(engine, "_sleep", pauses.append)

    first = post("database-gone", **{"X-Refuse-New": "1"})

    # The client gets the real result; the record stays in progress, so no
    # retry runs the view again before lock_timeout (docs/concurrency.md).
    assert first.status_code == 201
    assert pauses == [p for p in engine.STORE_RETRY_PAUSES if p]
    assert "after 4 tries" in caplog.text
    allow_connections()
    assert IdempotencyRecord.objects.get(key="database-gone").state == State.IN_PROGRESS
    assert post("database-gone").status_code == 409
    assert Payment.objects.filter(reference="database-gone").count() == 1
