"""django_idempotency.client against a scripted HTTP server: which requests get
a key, which answers are retried, how long the client waits and when it gives
up. Time is a fake clock injected into the policy, so waits cost nothing and
are counted exactly. The tests against the real app, with a proxy that loses
responses, are in tests/concurrency/test_client_faults.py."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from django_idempotency.client import (
    AsyncIdempotentTransport,
    IdempotentAdapter,
    IdempotentTransport,
    RetryPolicy,
    RetryReport,
)
from django_idempotency.client.policy import parse_retry_after
from tests.client_stub import stub_server

ROOT = Path(__file__).resolve().parents[1]
KINDS = ["httpx", "httpx-async", "requests"]
IN_PROGRESS = (
    409,
    {"Content-Type": "application/problem+json", "Retry-After": "1"},
    json.dumps({"status": 409, "code": "idempotency_request_in_progress"}).encode(),
)
CREATED = (201, {"Content-Type": "application/json"}, b'{"id": 1}')


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def policy(clock: FakeClock, **options: Any) -> RetryPolicy:
    return RetryPolicy(clock=clock, sleep=clock.sleep, async_sleep=clock.async_sleep, **options)


def send(kind: str, retry: RetryPolicy, method: str, url: str, **kwargs: Any) -> Any:
    """One request through the client ``kind``: (status, body, report)."""
    response: Any  # a requests or an httpx response
    if kind == "requests":
        with requests.Session() as session:
            session.mount("http://", IdempotentAdapter(policy=retry))
            if "content" in kwargs:
                kwargs["data"] = kwargs.pop("content")
            response = session.request(method, url, timeout=5, **kwargs)
            return response.status_code, response.content, response.idempotency
    if kind == "httpx":
        with httpx.Client(transport=IdempotentTransport(policy=retry)) as client:
            response = client.request(method, url, **kwargs)
            return response.status_code, response.content, response.extensions["idempotency"]

    async def run() -> Any:
        async with httpx.AsyncClient(transport=AsyncIdempotentTransport(policy=retry)) as client:
            response = await client.request(method, url, **kwargs)
            return response.status_code, response.content, response.extensions["idempotency"]

    return asyncio.run(run())


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_post_without_a_key_gets_one_and_keeps_it_on_every_retry(
    kind: str, clock: FakeClock
) -> None:
    with stub_server((503, {}, b""), (502, {}, b""), CREATED) as stub:
        status, body, report = send(kind, policy(clock), "POST", stub.url, json={"a": 1})

    assert (status, body) == (201, b'{"id": 1}')
    keys = stub.keys()
    assert len(keys) == 3 and len(set(keys)) == 1
    assert len(keys[0] or "") == 36  # a uuid4
    assert len({r.body for r in stub.received}) == 1
    assert json.loads(stub.received[0].body) == {"a": 1}
    assert report.key == keys[0]
    assert report.attempts == 3
    assert report.outcomes == ["503", "502", "201"]


def test_a_key_the_caller_chose_is_kept(kind: str, clock: FakeClock) -> None:
    with stub_server((500, {}, b""), CREATED) as stub:
        send(kind, policy(clock), "PATCH", stub.url, headers={"Idempotency-Key": "mine-0001"})

    assert stub.keys() == ["mine-0001", "mine-0001"]


def test_another_header_name(kind: str, clock: FakeClock) -> None:
    retry = policy(clock, header="X-Idempotency-Key")
    with stub_server((503, {}, b""), CREATED) as stub:
        send(kind, retry, "POST", stub.url)

    assert stub.keys("Idempotency-Key") == [None, None]
    keys = stub.keys("X-Idempotency-Key")
    assert keys[0] is not None and keys == [keys[0]] * 2


def test_each_logical_request_gets_its_own_key(kind: str, clock: FakeClock) -> None:
    with stub_server(CREATED) as stub:
        send(kind, policy(clock), "POST", stub.url)
        send(kind, policy(clock), "POST", stub.url)

    first, second = stub.keys()
    assert first != second


def test_in_progress_is_retried_after_retry_after(kind: str, clock: FakeClock) -> None:
    with stub_server(IN_PROGRESS, IN_PROGRESS, CREATED) as stub:
        status, _, report = send(kind, policy(clock), "POST", stub.url)

    assert status == 201
    assert report.outcomes == [
        "409 idempotency_request_in_progress",
        "409 idempotency_request_in_progress",
        "201",
    ]
    assert report.delays == [1.0, 1.0]
    assert clock.now == 2.0


def test_retry_after_is_capped_by_max_delay(kind: str, clock: FakeClock) -> None:
    long_wait = (503, {"Retry-After": "3600"}, b"")
    with stub_server(long_wait, CREATED) as stub:
        _, _, report = send(kind, policy(clock, max_delay=4, deadline=None), "POST", stub.url)

    assert report.delays == [4.0]


def test_a_retry_after_that_is_not_ascii_digits_falls_back_to_the_backoff(
    kind: str, clock: FakeClock
) -> None:
    """ "²" is a digit to Python's str.isdigit(), not a number of seconds."""
    odd = (503, {"Retry-After": "\u00b2"}, b"")
    with stub_server(odd, CREATED) as stub:
        status, _, report = send(kind, policy(clock), "POST", stub.url)

    assert status == 201
    assert len(report.delays) == 1 and report.delays[0] < 2.0


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        pytest.param(
            (
                422,
                {"Content-Type": "application/problem+json"},
                b'{"code": "idempotency_key_reused"}',
            ),
            "422",
            id="422-key-reused",
        ),
        pytest.param((400, {}, b'{"code": "idempotency_key_invalid"}'), "400", id="400"),
        pytest.param((404, {}, b""), "404", id="404"),
        # A 409 that is not "in progress": Stannp's replay, or the API's own conflict.
        pytest.param((409, {}, b'{"id": 1}'), "409", id="409-replay"),
        pytest.param((409, {}, b'{"code": "card_frozen"}'), "409 card_frozen", id="409-other"),
        pytest.param((501, {}, b""), "501", id="501"),
    ],
)
def test_answers_that_are_not_retried(
    kind: str, clock: FakeClock, answer: Any, outcome: Any
) -> None:
    with stub_server(answer, CREATED) as stub:
        status, _, report = send(kind, policy(clock), "POST", stub.url)

    assert status == answer[0]
    assert len(stub.received) == 1
    assert report.attempts == 1 and report.outcomes == [outcome]
    assert report.gave_up is None
    assert clock.now == 0


def test_max_attempts_returns_the_last_answer(kind: str, clock: FakeClock) -> None:
    with stub_server((503, {"Retry-After": "1"}, b"down")) as stub:
        status, body, report = send(kind, policy(clock, max_attempts=3), "POST", stub.url)

    assert (status, body) == (503, b"down")
    assert len(stub.received) == 3
    assert report.attempts == 3 and report.gave_up == "max_attempts"


def test_no_attempt_starts_after_the_deadline(kind: str, clock: FakeClock) -> None:
    retry = policy(clock, max_attempts=100, deadline=10)
    with stub_server((503, {"Retry-After": "2"}, b"")) as stub:
        _, _, report = send(kind, retry, "POST", stub.url)

    # Attempts at t = 0, 2, 4, 6, 8 and 10; the next one would start at 12.
    assert len(stub.received) == 6
    assert report.attempts == 6 and report.gave_up == "deadline"
    assert clock.now == 10


def test_exponential_backoff_with_full_jitter_up_to_max_delay(kind: str, clock: FakeClock) -> None:
    draws = iter([1.0, 1.0, 1.0, 0.5, 0.0])
    retry = policy(
        clock,
        base_delay=1,
        max_delay=4,
        max_attempts=6,
        deadline=None,
        jitter=lambda: next(draws),
    )
    with stub_server(
        (500, {}, b""), (500, {}, b""), (500, {}, b""), (500, {}, b""), (500, {}, b""), CREATED
    ) as stub:
        status, _, report = send(kind, retry, "POST", stub.url)

    assert status == 201
    # Bounds 1, 2, 4, 4 (capped), 4; each wait is the draw times its bound.
    assert report.delays == [1.0, 2.0, 4.0, 2.0, 0.0]
    assert len(stub.received) == 6


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_put_and_delete_are_keyed_and_retried_only_when_configured(
    kind: str, clock: FakeClock, method: str
) -> None:
    with stub_server((503, {}, b""), CREATED) as stub:
        status, _, report = send(kind, policy(clock), method, stub.url)
    assert status == 503
    assert stub.keys() == [None]
    assert report.attempts == 1 and report.not_retryable is not None

    retry = policy(clock, methods=["POST", "PATCH", method])
    with stub_server((503, {}, b""), CREATED) as stub:
        status, _, report = send(kind, retry, method, stub.url)
    assert status == 201
    assert stub.keys()[0] is not None and len(set(stub.keys())) == 1


def test_a_get_is_retried_without_a_key(kind: str, clock: FakeClock) -> None:
    with stub_server((503, {}, b""), (200, {}, b"ok")) as stub:
        status, _, report = send(kind, policy(clock), "GET", stub.url)

    assert status == 200
    assert stub.keys() == [None, None]
    assert report.key is None and report.attempts == 2


def test_safe_methods_are_sent_once_when_so_configured(kind: str, clock: FakeClock) -> None:
    with stub_server((503, {}, b""), (200, {}, b"ok")) as stub:
        status, _, _ = send(kind, policy(clock, retry_safe_methods=False), "GET", stub.url)

    assert status == 503 and len(stub.received) == 1


def test_a_streaming_body_is_sent_once_with_its_key(kind: str, clock: FakeClock) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"part one, "
        yield b"part two"

    async def async_chunks() -> Any:
        for chunk in chunks():
            yield chunk

    body = async_chunks() if kind == "httpx-async" else chunks()
    with stub_server((503, {}, b""), CREATED) as stub:
        status, _, report = send(kind, policy(clock), "POST", stub.url, content=body)

    assert status == 503
    assert [r.body for r in stub.received] == [b"part one, part two"]
    assert stub.keys()[0] is not None
    assert report.attempts == 1 and "stream" in report.not_retryable


def test_requests_rewinds_a_file_body_before_a_retry(clock: FakeClock) -> None:
    with stub_server((503, {}, b""), CREATED) as stub:
        status, _, _ = send(
            "requests", policy(clock), "POST", stub.url, content=io.BytesIO(b"the whole file")
        )

    assert status == 201
    assert [r.body for r in stub.received] == [b"the whole file"] * 2


def test_httpx_retries_a_multipart_upload_whole(clock: FakeClock) -> None:
    upload = io.BytesIO(b"the whole file")
    with stub_server((503, {}, b""), CREATED) as stub:
        status, _, _ = send("httpx", policy(clock), "POST", stub.url, files={"f": upload})

    assert status == 201
    first, second = (r.body for r in stub.received)
    assert b"the whole file" in first and first == second


@pytest.mark.parametrize("kind", ["httpx", "httpx-async"])
def test_httpx_does_not_retry_a_multipart_upload_of_a_file_that_cannot_rewind(
    kind: str, clock: FakeClock
) -> None:
    """A stream read once is empty the second time: a retry would store an empty
    upload under the key, so the first answer is the caller's."""

    class ReadOnce(io.RawIOBase):
        """A socket's or a pipe's reader: forward only."""

        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            return self._data.readinto(buffer)

    upload = io.BufferedReader(ReadOnce(b"read once"))
    with stub_server((503, {}, b""), CREATED) as stub:
        assert not upload.seekable()
        status, _, report = send(kind, policy(clock), "POST", stub.url, files={"f": upload})

    assert status == 503
    assert len(stub.received) == 1 and b"read once" in stub.received[0].body
    assert report.attempts == 1 and "stream" in report.not_retryable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_errors_are_retried_then_raised_with_the_report(
    kind: str, clock: FakeClock
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/"
    with pytest.raises((httpx.ConnectError, requests.ConnectionError)) as raised:
        send(kind, policy(clock, max_attempts=4), "POST", url)

    report = raised.value.idempotency  # type: ignore[attr-defined]  # set by the client
    assert isinstance(report, RetryReport)
    assert report.attempts == 4 and report.gave_up == "max_attempts"
    assert len(report.delays) == 3
    assert any("4 attempt(s)" in note for note in raised.value.__notes__)


def test_retry_after_as_an_http_date() -> None:
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    seconds = parse_retry_after(in_a_minute)
    assert seconds is not None and 58 <= seconds <= 60
    assert parse_retry_after("Tue, 01 Jan 2019 00:00:00 GMT") == 0
    assert parse_retry_after("7") == 7
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None


@pytest.mark.parametrize(
    "options",
    [
        {"methods": ["POST", "GET"]},
        {"max_attempts": 0},
        {"base_delay": -1},
        {"deadline": 0},
        {"header": "Idempotency Key:"},
    ],
)
def test_bad_policies_are_refused(options: Any) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**options)


def test_a_transport_and_its_options_are_exclusive() -> None:
    with pytest.raises(TypeError):
        IdempotentTransport(httpx.HTTPTransport(), retries=1)


def test_the_client_needs_no_django_settings() -> None:
    # A service calling another one has no reason to configure Django.
    script = """
import sys
import httpx, requests
from django_idempotency.client import IdempotentAdapter, IdempotentTransport, RetryPolicy
assert not any(name == "django" or name.startswith("django.") for name in sys.modules), \\
    sorted(n for n in sys.modules if n.startswith("django"))
from tests.client_stub import stub_server
with stub_server((503, {}, b""), (201, {}, b"made")) as stub:
    with httpx.Client(transport=IdempotentTransport(policy=RetryPolicy(base_delay=0))) as c:
        assert c.post(stub.url).status_code == 201
    session = requests.Session()
    session.mount("http://", IdempotentAdapter(policy=RetryPolicy(base_delay=0)))
    assert session.post(stub.url).status_code == 201
import django
from django.conf import settings
assert not settings.configured
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
