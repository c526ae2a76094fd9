"""django_idempotency.client over real HTTP against the app under gunicorn,
through a proxy that loses responses after the server has done the work: every
logical operation runs exactly once and gets its 201, however many answers were
lost on the way."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import httpx
import pytest
import requests

from django_idempotency.client import (
    AsyncIdempotentTransport,
    IdempotentAdapter,
    IdempotentTransport,
    RetryPolicy,
)
from tests.factories import CLIENT_API_KEY
from tests.testapp.models import Payment

from .conftest import Server
from .faulty_proxy import FaultyProxy

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

OPERATIONS = 20
AUTH = {"X-Api-Key": CLIENT_API_KEY}
# Short waits: the faults here are lost answers, not a loaded server.
RETRY = RetryPolicy(base_delay=0.05, max_delay=0.25, max_attempts=15, deadline=30)


def randomly(rate: float, seed: int) -> Any:
    draws = random.Random(seed)
    return lambda index: draws.random() < rate


def every_other(index: int) -> bool:
    return index % 2 == 0


class Sync:
    """One of the two synchronous clients, with the same small interface."""

    def __init__(self, kind: str, read_timeout: float = 30) -> None:
        self.kind = kind
        if kind == "requests":
            self.session = requests.Session()
            self.session.mount("http://", IdempotentAdapter(policy=RETRY))
            self.timeout: Any = (5, read_timeout)
        else:
            self.client = httpx.Client(
                transport=IdempotentTransport(policy=RETRY),
                timeout=httpx.Timeout(5, read=read_timeout),
            )

    def post(self, url: str, **kwargs: Any) -> tuple[int, dict[str, Any], bool, Any]:
        headers = {**AUTH, **kwargs.pop("headers", {})}
        r: Any  # a requests or an httpx response
        if self.kind == "requests":
            r = self.session.post(url, headers=headers, timeout=self.timeout, **kwargs)
            report = r.idempotency
        else:
            r = self.client.post(url, headers=headers, **kwargs)
            report = r.extensions["idempotency"]
        return r.status_code, r.json(), "Idempotent-Replayed" in r.headers, report

    def close(self) -> None:
        (self.session if self.kind == "requests" else self.client).close()


@pytest.fixture(params=["httpx", "requests"])
def sync_client(request: pytest.FixtureRequest) -> Any:
    client = Sync(request.param)
    yield client
    client.close()


def assert_each_ran_once(results: list[tuple[int, dict[str, Any], bool, Any]]) -> None:
    keys = [report.key for *_, report in results]
    assert len(set(keys)) == len(keys) == OPERATIONS
    assert [status for status, *_ in results] == [201] * OPERATIONS
    references = Payment.objects.filter(reference__in=keys).values_list("reference", flat=True)
    executions = Counter(references)
    assert executions == dict.fromkeys(keys, 1)
    # The answer is the first execution's, replayed or not.
    for _, body, _, report in results:
        assert Payment.objects.get(reference=report.key).pk == body["id"]


def test_lost_responses_do_not_repeat_operations(server: Server, sync_client: Any) -> None:
    with FaultyProxy(server.url, drop=randomly(0.3, seed=12)) as proxy:
        results = [
            sync_client.post(proxy.url + "plain/", json={"amount": n + 1})
            for n in range(OPERATIONS)
        ]

    assert_each_ran_once(results)
    assert proxy.dropped >= 3, "the proxy lost too few answers for this test to mean much"
    # One more attempt per lost answer, and the answers after a loss are replays.
    assert sum(report.attempts for *_, report in results) == OPERATIONS + proxy.dropped
    assert [replayed for _, _, replayed, _ in results] == [
        report.attempts > 1 for *_, report in results
    ]
    lost = [report for *_, report in results if report.attempts > 1]
    assert all(
        set(report.outcomes[:-1]) <= {"RemoteProtocolError", "ConnectionError"} for report in lost
    )


def test_lost_responses_async_many_at_once(server: Server) -> None:
    async def run(proxy: FaultyProxy) -> list[Any]:
        transport = AsyncIdempotentTransport(policy=RETRY)
        async with httpx.AsyncClient(transport=transport, headers=AUTH, timeout=30) as client:
            gate = asyncio.Semaphore(8)

            async def one(n: int) -> Any:
                async with gate:
                    r = await client.post(proxy.url + "async-plain/", json={"amount": n + 1})
                return (
                    r.status_code,
                    r.json(),
                    "Idempotent-Replayed" in r.headers,
                    r.extensions["idempotency"],
                )

            return await asyncio.gather(*(one(n) for n in range(OPERATIONS)))

    with FaultyProxy(server.url, drop=randomly(0.3, seed=7)) as proxy:
        results = asyncio.run(run(proxy))

    assert_each_ran_once(results)
    assert proxy.dropped >= 3
    assert sum(report.attempts for *_, report in results) == OPERATIONS + proxy.dropped


@pytest.mark.parametrize("kind", ["httpx", "requests"])
def test_a_response_held_past_the_read_timeout_is_replayed(server: Server, kind: str) -> None:
    client = Sync(kind, read_timeout=0.5)
    try:
        # Operations one after the other: each one's first answer is held back.
        with FaultyProxy(server.url, hold=every_other) as proxy:
            results = [client.post(proxy.url + "plain/", json={"amount": 5}) for _ in range(3)]
    finally:
        client.close()

    for status, _, replayed, report in results:
        assert (status, replayed) == (201, True)
        assert report.outcomes == ["ReadTimeout", "201"]
        assert Payment.objects.filter(reference=report.key).count() == 1
    assert proxy.held == 3


@pytest.mark.parametrize("kind", ["httpx", "requests"])
def test_in_progress_is_waited_out(server: Server, kind: str) -> None:
    # The first attempt times out while the view still runs; the retries are
    # answered 409 until it has finished, then get its response.
    client = Sync(kind, read_timeout=0.5)
    try:
        status, body, replayed, report = client.post(
            server.url + "plain/", json={"amount": 3}, headers={"X-Sleep": "1.5"}
        )
    finally:
        client.close()

    assert (status, replayed) == (201, True)
    assert report.outcomes[0] == "ReadTimeout"
    assert "409 idempotency_request_in_progress" in report.outcomes
    assert report.outcomes[-1] == "201"
    assert Payment.objects.filter(reference=report.key).count() == 1
    assert Payment.objects.get(reference=report.key).pk == body["id"]


def test_a_reused_key_is_not_retried(server: Server, sync_client: Any) -> None:
    key = f"reused-{sync_client.kind}"
    sync_client.post(server.url + "plain/", json={"amount": 1}, headers={"Idempotency-Key": key})

    status, body, _, report = sync_client.post(
        server.url + "plain/", json={"amount": 2}, headers={"Idempotency-Key": key}
    )

    assert status == 422 and body["code"] == "idempotency_key_reused"
    assert report.attempts == 1
    assert Payment.objects.filter(reference=key).count() == 1
