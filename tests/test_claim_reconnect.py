"""The claim survives a connection that broke (a database restart or
failover, a proxy dropping it, a duplicate's connection cut while it waited):
it is tried once more, at once, on a new connection, with the same token, so
a claim the database committed before its answer was lost is known as ours.

The connection is really lost: the database ends the session. Only where a
lost answer is modelled does a wrapper raise after the real statement ran.
The module carries its own views and URLs (``@pytest.mark.urls(__name__)``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from adrf.decorators import api_view as async_api_view
from asgiref.sync import async_to_sync, sync_to_async
from django.db import OperationalError, connection
from django.test import AsyncClient
from django.urls import path
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent, waiting
from django_idempotency.models import IdempotencyRecord, State
from tests.factories import CLIENT_API_KEY, api_client
from tests.helpers import allow_connections, end_session
from tests.testapp.models import Payment

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls(__name__),
    pytest.mark.usefixtures("server_session"),
]

#: Lets a test keep the first request inside its view while a duplicate waits.
held = threading.Event()
release = threading.Event()


def _pay(request: Request) -> Response:
    if request.headers.get("X-Hold"):
        held.set()
        release.wait(10)
    key = request.headers["Idempotency-Key"]
    payment = Payment.objects.create(amount=5, reference=key)
    return Response({"id": payment.pk}, status=201)


pay = api_view(["POST"])(idempotent(lock_timeout=60)(_pay))
pay_waiting = api_view(["POST"])(idempotent(lock_timeout=60, wait=10)(_pay))


async def _pay_async(request: Request) -> Response:
    if request.headers.get("X-Hold"):
        held.set()
        for _ in range(1000):  # the test releases it; at most 10 s
            if release.is_set():
                break
            await asyncio.sleep(0.01)
    key = request.headers["Idempotency-Key"]
    payment = await Payment.objects.acreate(amount=5, reference=key)
    return Response({"id": payment.pk}, status=201)


pay_async_waiting = async_api_view(["POST"])(idempotent(lock_timeout=60, wait=10)(_pay_async))

urlpatterns = [
    path("pay/", pay),
    path("pay-waiting/", pay_waiting),
    path("pay-async-waiting/", pay_async_waiting),
]


@pytest.fixture(autouse=True)
def _gates() -> Iterator[None]:
    held.clear()
    release.clear()
    yield
    release.set()  # a first request still held lets go


def post(key: str, url: str = "/pay/", **headers: str) -> Any:
    return api_client().post(
        url, {"amount": 5}, format="json", headers={"Idempotency-Key": key, **headers}
    )


def is_claim(sql: str) -> bool:
    # The claim function (PostgreSQL), its statement form, or MySQL's INSERT.
    return "_claim_v" in sql or sql.startswith("WITH ins") or sql.startswith("INSERT INTO")


def on_first_claim(action: Callable[[Callable[[], Any]], Any]) -> Any:
    """An execute wrapper that hands the first claim statement to ``action``."""
    done: list[bool] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if done or not is_claim(sql.lstrip()):
            return execute(sql, params, many, context)
        done.append(True)
        return action(lambda: execute(sql, params, many, context))

    return connection.execute_wrapper(wrapper)


def first_then_duplicate_cut_while_waiting(send: Callable[..., None], cut: threading.Event) -> None:
    """``send(name, **headers)`` the first request (held in its view), then
    its duplicate; let the first finish once the duplicate's connection is cut."""
    first = threading.Thread(target=send, args=("first",), kwargs={"X-Hold": "1"})
    first.start()
    assert held.wait(10)
    duplicate = threading.Thread(target=send, args=("duplicate",))
    duplicate.start()
    assert cut.wait(10)
    release.set()
    first.join(15)
    duplicate.join(15)


def test_a_claim_whose_connection_broke_is_made_on_a_new_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def cut_then_send(send: Callable[[], Any]) -> Any:
        end_session()
        return send()  # fails: the session is gone

    with on_first_claim(cut_then_send):
        first = post("cut-before-claim")

    assert first.status_code == 201
    assert "trying again on a new connection" in caplog.text
    assert IdempotencyRecord.objects.get(key="cut-before-claim").state == State.COMPLETED
    assert post("cut-before-claim").json() == first.json()
    assert Payment.objects.filter(reference="cut-before-claim").count() == 1


def test_a_claim_committed_before_its_answer_was_lost_is_recognised_as_ours() -> None:
    def send_then_lose_answer(send: Callable[[], Any]) -> Any:
        send()  # committed (autocommit)
        end_session()
        raise OperationalError("server closed the connection unexpectedly")

    with on_first_claim(send_then_lose_answer):
        first = post("answer-lost")

    # Not 409 "in progress" behind its own claim until lock_timeout.
    assert first.status_code == 201
    assert IdempotencyRecord.objects.filter(key="answer-lost").count() == 1
    assert IdempotencyRecord.objects.get(key="answer-lost").state == State.COMPLETED
    assert Payment.objects.filter(reference="answer-lost").count() == 1


def test_a_claim_answers_503_when_the_new_connection_fails_too() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("refusing new connections to one database is shown on PostgreSQL")

    def cut_and_refuse(send: Callable[[], Any]) -> Any:
        end_session(refuse_new=True)
        return send()

    with on_first_claim(cut_and_refuse):
        first = post("database-away")

    assert first.status_code == 503
    assert first["Content-Type"] == "application/problem+json"
    allow_connections()
    assert post("database-away").status_code == 201  # nothing was claimed
    assert Payment.objects.filter(reference="database-away").count() == 1


def test_a_waiting_duplicate_whose_connection_was_cut_gets_the_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cut = threading.Event()
    pause = waiting.Waiter.pause

    def cut_while_waiting(self: waiting.Waiter) -> None:
        if not cut.is_set():
            end_session()  # this thread's: the duplicate's connection
            cut.set()
        pause(self)

    monkeypatch.setattr(waiting.Waiter, "pause", cut_while_waiting)
    results: dict[str, Any] = {}

    def send(name: str, **headers: str) -> None:
        try:
            results[name] = post("cut-while-waiting", "/pay-waiting/", **headers)
        finally:
            connection.close()

    first_then_duplicate_cut_while_waiting(send, cut)

    assert results["first"].status_code == 201
    answer = results["duplicate"]
    assert answer.status_code == 201, answer.content
    assert answer["Idempotent-Replayed"] == "true"
    assert answer.json() == results["first"].json()
    assert Payment.objects.filter(reference="cut-while-waiting").count() == 1


def test_an_async_waiting_duplicate_whose_connection_was_cut_gets_the_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cut = threading.Event()
    apause = waiting.Waiter.apause

    async def cut_while_waiting(self: waiting.Waiter) -> None:
        if not cut.is_set():
            # In the duplicate's context: its own connection.
            await sync_to_async(end_session)()
            cut.set()
        await apause(self)

    monkeypatch.setattr(waiting.Waiter, "apause", cut_while_waiting)

    results: dict[str, Any] = {}

    def send(name: str, **headers: str) -> None:
        # A thread each, as each request of an ASGI server has its own
        # context: each has its own database connection.
        try:
            results[name] = async_to_sync(AsyncClient().post)(
                "/pay-async-waiting/",
                {"amount": 5},
                content_type="application/json",
                headers={
                    "X-Api-Key": CLIENT_API_KEY,
                    "Idempotency-Key": "async-cut-while-waiting",
                    **headers,
                },
            )
        finally:
            connection.close()

    first_then_duplicate_cut_while_waiting(send, cut)
    first, duplicate = results["first"], results["duplicate"]

    assert first.status_code == 201
    assert duplicate.status_code == 201, duplicate.content
    assert duplicate["Idempotent-Replayed"] == "true"
    assert duplicate.json() == first.json()
    assert Payment.objects.filter(reference="async-cut-while-waiting").count() == 1
