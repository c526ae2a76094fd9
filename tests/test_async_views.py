"""adrf async views: the same contract, statements and guarantees as sync views,
with nothing blocking the event loop. (The multi-process guarantees under
uvicorn are in tests/concurrency, the "async" modes.)"""

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from rest_framework.decorators import action, api_view
from rest_framework.request import Request
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from django_idempotency import IdempotencyMixin, idempotent, signals
from django_idempotency.models import IdempotencyRecord, State
from tests.clock import pass_lock_timeout
from tests.factories import CLIENT_API_KEY, api_client
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent


def apost(url: str, key: str | None = None, body: Any = None, **headers: str) -> Any:
    """POST from an async client, run to completion from this sync test."""
    headers = {"X-Api-Key": CLIENT_API_KEY, **headers}
    if key is not None:
        headers["Idempotency-Key"] = key
    return async_to_sync(AsyncClient().post)(
        url, body or {"amount": 10}, content_type="application/json", headers=headers
    )


ENDPOINTS = [
    pytest.param("/async/function/", "async", id="api_view"),
    pytest.param("/async/apiview/", "mixin", id="APIView+mixin"),
    pytest.param("/async/cards/", "viewset", id="ViewSet+mixin"),
    pytest.param("/async/cards/7/block/", "block-7", id="action+mixin"),
    pytest.param("/async/atomic/", "async", id="atomic"),
]


@pytest.mark.parametrize(("url", "reference"), ENDPOINTS)
def test_a_retry_gets_the_first_answer_and_the_view_runs_once(url: str, reference: str) -> None:
    first = apost(url, "k-1")
    retry = apost(url, "k-1")

    assert first.status_code == 201
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert retry["X-Request-Id"] == first["X-Request-Id"]
    assert Payment.objects.filter(reference=reference).count() == 1
    assert IdempotencyRecord.objects.get(key="k-1").state == State.COMPLETED


@pytest.mark.parametrize(("url", "reference"), ENDPOINTS)
def test_another_body_with_the_key_is_422(url: str, reference: str) -> None:
    apost(url, "k-1")
    other = apost(url, "k-1", {"amount": 99})

    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert Payment.objects.filter(reference=reference).count() == 1


@pytest.mark.parametrize(("url", "reference"), ENDPOINTS)
def test_a_duplicate_while_the_first_runs_is_409_at_once(url: str, reference: str) -> None:
    async def both() -> tuple[Any, Any, float]:
        client = AsyncClient()
        headers = {"X-Api-Key": CLIENT_API_KEY, "Idempotency-Key": "k-slow"}

        async def send(path: str) -> Any:
            return await client.post(
                path, {"amount": 10}, content_type="application/json", headers=headers
            )

        first = asyncio.ensure_future(send(url + "?sleep=1.5"))
        claimed = IdempotencyRecord.objects.filter(key="k-slow").aexists
        while not await claimed():  # the first is inside its view from here on
            await asyncio.sleep(0.01)
        started = time.monotonic()
        duplicate = await send(url + "?sleep=1.5")
        waited = time.monotonic() - started
        return await first, duplicate, waited

    first, duplicate, waited = async_to_sync(both)()
    assert first.status_code == 201
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "idempotency_request_in_progress"
    # Waiting for the first would take over a second more.
    assert waited < 1.0, "the duplicate waited for the first request"
    assert Payment.objects.filter(reference=reference).count() == 1


def test_a_missing_key_on_a_required_view_and_a_bad_key_are_400() -> None:
    bad = apost("/async/function/", "bad key with spaces")
    assert bad.status_code == 400
    assert bad.json()["code"] == "idempotency_key_invalid"
    assert Payment.objects.count() == 0


def test_an_anonymous_key_is_refused() -> None:
    response = async_to_sync(AsyncClient().post)(
        "/async/function/",
        {"amount": 10},
        content_type="application/json",
        headers={"Idempotency-Key": "k-anon"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_anonymous"


def test_a_failing_view_releases_the_key_and_the_retry_runs() -> None:
    with pytest.raises(Exception, match="the view failed"):
        apost("/async/function/", "k-fail", {"amount": 10, "fail": True})
    assert not IdempotencyRecord.objects.filter(key="k-fail").exists()


def test_atomic_mode_rolls_the_views_writes_back_with_the_claim() -> None:
    with pytest.raises(Exception, match="failed after writing"):
        apost("/async/atomic/", "k-atomic", {"amount": 10, "fail_after_write": True})
    assert Payment.objects.count() == 0  # the write was rolled back
    assert not IdempotencyRecord.objects.filter(key="k-atomic").exists()
    retry = apost("/async/atomic/", "k-atomic", {"amount": 10})
    assert retry.status_code == 201
    assert Payment.objects.count() == 1


def test_an_abandoned_claim_is_taken_over_after_lock_timeout() -> None:
    apost("/async/atomic/", "k-crash")
    IdempotencyRecord.objects.filter(key="k-crash").update(state=State.IN_PROGRESS)
    assert apost("/async/atomic/", "k-crash").status_code == 409
    pass_lock_timeout("k-crash")
    taken = apost("/async/atomic/", "k-crash")
    assert taken.status_code == 201
    assert "Idempotent-Replayed" not in taken
    assert Payment.objects.count() == 2


SCENARIOS = {
    "first": [("k", {"amount": 10})],
    "replay": [("k", {"amount": 10}), ("k", {"amount": 10})],
    "mismatch": [("k", {"amount": 10}), ("k", {"amount": 11})],
}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize(
    ("sync_url", "async_url"),
    [("/function/", "/async/function/"), ("/atomic/", "/async/atomic/")],
    ids=["plain", "atomic"],
)
def test_async_views_send_the_statements_sync_views_send(
    scenario: Any, sync_url: str, async_url: str
) -> None:
    def last_request_statements(send: Callable[[str, Any], object]) -> list[str]:
        *earlier, last = SCENARIOS[scenario]
        for key, body in earlier:
            send(key, body)
        with CaptureQueriesContext(connection) as queries:
            send(*last)
        IdempotencyRecord.objects.all().delete()
        Payment.objects.all().delete()
        return [q["sql"].split()[0] for q in queries.captured_queries]

    client = api_client()
    sync = last_request_statements(
        lambda key, body: client.post(sync_url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    )
    in_async = last_request_statements(lambda key, body: apost(async_url, key, body))
    assert in_async == sync


def test_signals_fire_for_async_views() -> None:
    fired = []

    def receiver(signal: Any, **kwargs: Any) -> None:
        fired.append(signal)

    for signal in (signals.idempotency_stored, signals.idempotency_replayed):
        signal.connect(receiver, weak=False)
    try:
        apost("/async/function/", "k-signals")
        apost("/async/function/", "k-signals")
    finally:
        for signal in (signals.idempotency_stored, signals.idempotency_replayed):
            signal.disconnect(receiver)
    assert fired == [signals.idempotency_stored, signals.idempotency_replayed]


# Nothing blocks the event loop ---------------------------------------------------


SLOW = 0.5  # each synchronous step, made slow


def test_the_engines_blocking_work_runs_off_the_event_loop() -> None:
    """A ticker on the loop measures the longest stall while a request runs
    whose every synchronous step (scope, fingerprint, database, signals) is
    made slow. Run on the loop, any one of them would stall it for SLOW seconds; the
    margin below that absorbs a loaded machine's scheduling."""
    slow = threading.Event()

    def slow_receiver(**kwargs: Any) -> None:
        time.sleep(SLOW)

    def slow_statement(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        if slow.is_set():
            time.sleep(SLOW)
        return execute(sql, params, many, context)

    async def run() -> float:
        client = AsyncClient()
        headers = {"X-Api-Key": CLIENT_API_KEY, "Idempotency-Key": "k-loop"}
        stalls: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                stalls.append(now - last)
                last = now

        tick = asyncio.ensure_future(ticker())
        slow.set()
        for _ in range(2):  # the first request, then its replay
            await client.post(
                "/async/function/",
                {"amount": 10},
                content_type="application/json",
                headers=headers,
            )
        slow.clear()
        done.set()
        await tick
        return max(stalls)

    signals.idempotency_stored.connect(slow_receiver, weak=False)
    signals.idempotency_replayed.connect(slow_receiver, weak=False)
    try:
        with connection.execute_wrapper(slow_statement):
            longest_stall = async_to_sync(run)()
    finally:
        signals.idempotency_stored.disconnect(slow_receiver)
        signals.idempotency_replayed.disconnect(slow_receiver)
    assert Payment.objects.count() == 1
    assert longest_stall < SLOW * 0.8, f"the event loop stalled for {longest_stall:.2f} s"


# Refused at definition time --------------------------------------------------------


def test_an_async_handler_on_drfs_own_apiview_is_refused_by_the_mixin() -> None:
    with pytest.raises(TypeError, match=r"AsyncPay\.post is an async handler on a view"):

        class AsyncPay(IdempotencyMixin, APIView):
            async def post(self, request: Request) -> None:  # pragma: no cover
                return None


def test_an_async_action_on_drfs_own_viewset_is_refused_by_the_mixin() -> None:
    with pytest.raises(TypeError, match=r"Cards\.block is an async handler on a view"):

        class Cards(IdempotencyMixin, ViewSet):
            # Deliberately an async action on DRF's own (sync) ViewSet, as the test says.
            @action(detail=True, methods=["post"])  # type: ignore[type-var]
            async def block(
                self, request: Request, pk: str | None = None
            ) -> None:  # pragma: no cover
                return None


def test_without_adrf_async_handlers_are_refused_naming_the_extra(tmp_path: Path) -> None:
    # A project without the extra: adrf cannot be imported.
    (tmp_path / "adrf.py").write_text("raise ImportError('adrf is not installed')\n")
    code = (
        "import django\n"
        "django.setup()\n"
        "from django_idempotency import idempotent\n"
        "try:\n"
        "    @idempotent\n"
        "    async def pay(request): ...\n"
        "except TypeError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{tmp_path}:{ROOT}",
            "DJANGO_SETTINGS_MODULE": "tests.settings",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "django-idempotency[async]" in result.stdout, result.stderr


def test_an_async_function_under_drfs_own_api_view_is_a_system_check_error() -> None:
    # Deliberately the misuse the check reports: DRF's sync api_view on a coroutine.
    @api_view(["POST"])  # type: ignore[type-var]
    @idempotent
    async def pay(request: Request) -> None:  # pragma: no cover
        return None

    from django.urls import path

    from django_idempotency.checks import _async_under_sync_views

    found = list(_async_under_sync_views([path("pay/", pay)]))  # type: ignore[arg-type]
    assert found == ["The URL pattern 'pay/' (pay)"]


def test_a_record_sealed_under_a_removed_key_is_a_clear_answer_not_a_rerun() -> None:
    from django.test import override_settings

    from django_idempotency.encryption import generate_key

    old, new = generate_key(), generate_key()
    with override_settings(IDEMPOTENCY={"ENCRYPTION_KEYS": [old]}):
        assert apost("/async/function/", "k-sealed").status_code == 201
    with override_settings(IDEMPOTENCY={"ENCRYPTION_KEYS": [new]}):
        retry = apost("/async/function/", "k-sealed")
    assert retry.status_code == 500
    assert retry.json()["code"] == "idempotency_record_unreadable"
    assert Payment.objects.count() == 1


def test_a_request_cancelled_while_claiming_leaves_no_claim_behind() -> None:
    # Django cancels a request whose client went away; the claim's statement
    # runs in a thread and completes anyway: it must be released again.
    claiming = threading.Event()

    def slow_claim(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        # The claim: an INSERT, a CTE, or on PostgreSQL a call of the claim function.
        claim = sql.lstrip().upper().startswith(("INSERT", "WITH")) or "_claim_v" in sql
        if claim and "idempotency" in sql:
            claiming.set()
            time.sleep(0.3)
        return execute(sql, params, many, context)

    async def cancel_while_claiming() -> None:
        client = AsyncClient()
        task = asyncio.ensure_future(
            client.post(
                "/async/function/",
                {"amount": 10},
                content_type="application/json",
                headers={"X-Api-Key": CLIENT_API_KEY, "Idempotency-Key": "k-gone"},
            )
        )
        while not claiming.is_set():
            # A claim the detector does not recognise would let the request
            # finish uncancelled: fail on that instead of waiting forever.
            if task.done():
                pytest.fail("the claim statement was never seen")
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with connection.execute_wrapper(slow_claim):
        async_to_sync(cancel_while_claiming)()
    assert not IdempotencyRecord.objects.filter(key="k-gone").exists()
    assert Payment.objects.count() == 0
    assert apost("/async/function/", "k-gone").status_code == 201  # the retry runs at once


@pytest.mark.parametrize("url", ["/async/function/", "/async/atomic/"])
def test_a_client_that_goes_away_mid_view_gets_the_replay_when_it_retries(url: str) -> None:
    # Django cancels an async view when its client disconnects. The view has
    # written already; cancelling it there and freeing the key would let the
    # retry write again. Like a sync view, it runs to the end and is stored.
    async def disconnect_mid_view() -> None:
        client = AsyncClient()
        task = asyncio.ensure_future(
            client.post(
                url + "?sleep=0.4",
                {"amount": 10},
                content_type="application/json",
                headers={"X-Api-Key": CLIENT_API_KEY, "Idempotency-Key": "k-left"},
            )
        )
        written = Payment.objects.aexists
        while not await written():  # inside the view, its payment written
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async_to_sync(disconnect_mid_view)()
    assert IdempotencyRecord.objects.get(key="k-left").state == State.COMPLETED
    retry = apost(url + "?sleep=0.4", "k-left")  # the same request: the query is part of it
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1
