"""The demo's requests: printed as curl lines by ``demo_setup`` and sent, with
their responses printed, by ``demo_walkthrough`` (``make demo-script``)."""

from __future__ import annotations

import json
import shlex
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: The response headers worth showing; the rest is noise for this demo.
SHOWN_HEADERS = ("Content-Type", "Location", "Retry-After", "Idempotent-Replayed", "X-Request-Id")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    token: str | None
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    form: bool = False  # send the body as form fields instead of JSON

    def encoded_body(self) -> bytes | None:
        if self.body is None:
            return None
        if self.form:
            return urllib.parse.urlencode(self.body).encode()
        return json.dumps(self.body).encode()

    def all_headers(self) -> dict[str, str]:
        headers = {}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        headers.update(self.headers)
        if self.body is not None:
            headers["Content-Type"] = (
                "application/x-www-form-urlencoded" if self.form else "application/json"
            )
        return headers

    def curl(self, base_url: str) -> str:
        url = base_url.rstrip("/") + self.path
        # -w: a newline after the body, which the problem documents lack.
        parts = ["curl", "-sS", "-i", "-w", r"\n", "-X", self.method, url]
        for name, value in self.all_headers().items():
            parts += ["-H", f"{name}: {value}"]
        body = self.encoded_body()
        if body is not None:
            parts += ["-d", body.decode()]
        return shlex.join(parts)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Step:
    title: str
    call: Call
    expect: int
    replayed: bool = False
    #: Send the call twice, the second one second later: a duplicate in flight.
    duplicate: bool = False
    expect_duplicate: int = 409
    #: Context name -> JSON field of the response, for later steps' paths.
    capture: dict[str, str] = field(default_factory=dict)


class _Context(dict[str, str]):
    def __missing__(self, name: str) -> str:
        return f"<{name}>"  # an earlier step failed; this request will say so


def url_of(call: Call, base_url: str, context: dict[str, str]) -> str:
    return base_url.rstrip("/") + call.path.format_map(_Context(context))


def send(call: Call, base_url: str, context: dict[str, str], timeout: float = 30) -> Answer:
    url = url_of(call, base_url, context)
    request = urllib.request.Request(
        url, data=call.encoded_body(), headers=call.all_headers(), method=call.method
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, dict(error.headers.items()), error.read())


def first_steps(alice: str, run: str) -> list[Step]:
    """The four requests that ``make demo`` prints as curl lines."""
    key = f"demo-{run}-payment"
    coffee = {"amount": 1250, "currency": "EUR", "description": "Coffee beans"}
    tea = {"amount": 900, "currency": "EUR", "description": "Green tea"}
    slow = {"X-Demo-Delay": "3"}
    return [
        Step(
            "First call: the view runs, its answer is stored",
            Call("POST", "/ietf/payments/", alice, {"Idempotency-Key": key}, coffee),
            201,
            capture={"payment_id": "id"},
        ),
        Step(
            "Replay: same key, same body -> the stored answer, the view does not run",
            Call("POST", "/ietf/payments/", alice, {"Idempotency-Key": key}, coffee),
            201,
            replayed=True,
        ),
        Step(
            "Reuse with another body -> 422 idempotency_key_reused",
            Call("POST", "/ietf/payments/", alice, {"Idempotency-Key": key}, tea),
            422,
        ),
        Step(
            "Concurrent duplicate: the first takes 3 s, the copy sent meanwhile gets "
            "409 idempotency_request_in_progress with Retry-After",
            Call(
                "POST",
                "/ietf/payments/",
                alice,
                {"Idempotency-Key": f"demo-{run}-slow", **slow},
                coffee,
            ),
            201,
            duplicate=True,
        ),
    ]


def all_steps(alice: str, bob: str, run: str) -> list[tuple[str, list[Step]]]:
    """Every group's documented behaviour, in the order the walk-through shows it."""
    uuid_key = str(uuid.uuid4())
    card = {"type": "VIRTUAL", "memo": "Travel", "spend_limit": 50000}
    identity = {"country": "MA", "reference": f"customer-{run}"}
    letter = {
        "recipient": "Mr John Smith",
        "address": "123 Sample Street, Sampletown, AB12 3CD, GB",
        "pages": "Hello John, this is my first letter.",
        "test": "true",
    }
    transfer = {"amount": "25.00", "currency": "USDT", "destination": "wallet-7"}
    coffee = {"amount": 1250, "currency": "EUR", "description": "Coffee beans"}
    tx_key = f"verify_{run}_attempt_1"
    return [
        (
            "ietf: the app's defaults (IETF draft)",
            [
                *first_steps(alice, run),
                Step(
                    "Same key from another user: a separate operation in bob's key space",
                    Call(
                        "POST",
                        "/ietf/payments/",
                        bob,
                        {"Idempotency-Key": f"demo-{run}-payment"},
                        coffee,
                    ),
                    201,
                ),
                Step(
                    "A key with spaces is invalid -> 400 idempotency_key_invalid",
                    Call("POST", "/ietf/payments/", alice, {"Idempotency-Key": "a b"}, coffee),
                    400,
                ),
                Step(
                    "A ViewSet @action: refund once",
                    Call(
                        "POST",
                        "/ietf/payments/{payment_id}/refund/",
                        alice,
                        {"Idempotency-Key": f"demo-{run}-refund"},
                        {},
                    ),
                    200,
                ),
                Step(
                    "Retry of the refund: replayed, not refunded twice",
                    Call(
                        "POST",
                        "/ietf/payments/{payment_id}/refund/",
                        alice,
                        {"Idempotency-Key": f"demo-{run}-refund"},
                        {},
                    ),
                    200,
                    replayed=True,
                ),
            ],
        ),
        (
            "lithic: card issuing",
            [
                Step(
                    "Create a card",
                    Call("POST", "/lithic/cards/", alice, {"Idempotency-Key": f"card-{run}"}, card),
                    201,
                ),
                Step(
                    "Retry: the original status and response",
                    Call("POST", "/lithic/cards/", alice, {"Idempotency-Key": f"card-{run}"}, card),
                    201,
                    replayed=True,
                ),
                Step(
                    "The card processor fails with a 500 ...",
                    Call(
                        "POST",
                        "/lithic/cards/",
                        alice,
                        {"Idempotency-Key": f"card-{run}-500", "X-Demo-Fail": "500"},
                        card,
                    ),
                    500,
                ),
                Step(
                    "... and Lithic replays even a 500 (store_server_errors=True)",
                    Call(
                        "POST",
                        "/lithic/cards/",
                        alice,
                        {"Idempotency-Key": f"card-{run}-500"},
                        card,
                    ),
                    500,
                    replayed=True,
                ),
                Step(
                    "Same key, other parameters -> an error (422)",
                    Call(
                        "POST",
                        "/lithic/cards/",
                        alice,
                        {"Idempotency-Key": f"card-{run}"},
                        {**card, "memo": "Groceries"},
                    ),
                    422,
                ),
            ],
        ),
        (
            "txcloud: identity verification (KYC)",
            [
                Step(
                    "A key shorter than 10 characters -> 400",
                    Call(
                        "POST",
                        "/txcloud/identity/verify",
                        alice,
                        {"Idempotency-Key": "short"},
                        identity,
                    ),
                    400,
                ),
                Step(
                    "Verify an identity",
                    Call(
                        "POST",
                        "/txcloud/identity/verify",
                        alice,
                        {"Idempotency-Key": tx_key},
                        identity,
                    ),
                    201,
                ),
                Step(
                    "Retry: cached response, Idempotent-Replayed and the original X-Request-Id",
                    Call(
                        "POST",
                        "/txcloud/identity/verify",
                        alice,
                        {"Idempotency-Key": tx_key},
                        identity,
                    ),
                    201,
                    replayed=True,
                ),
                Step(
                    "Same key on another endpoint: another operation (scope = API key + endpoint)",
                    Call(
                        "POST",
                        "/txcloud/identity/sessions",
                        alice,
                        {"Idempotency-Key": tx_key},
                        identity,
                    ),
                    201,
                ),
                Step(
                    "Same key, another body -> 409 conflict",
                    Call(
                        "POST",
                        "/txcloud/identity/verify",
                        alice,
                        {"Idempotency-Key": tx_key},
                        {**identity, "country": "FR"},
                    ),
                    409,
                ),
            ],
        ),
        (
            "stannp: printed letters",
            [
                Step(
                    "Create a letter (form fields, X-Idempotency-Key)",
                    Call(
                        "POST",
                        "/stannp/letters/",
                        alice,
                        {"X-Idempotency-Key": f"letter-{run}"},
                        letter,
                        form=True,
                    ),
                    200,
                ),
                Step(
                    "Retry: the original body, with status 409",
                    Call(
                        "POST",
                        "/stannp/letters/",
                        alice,
                        {"X-Idempotency-Key": f"letter-{run}"},
                        letter,
                        form=True,
                    ),
                    409,
                    replayed=True,
                ),
                Step(
                    "Same key, another body: not a retry, a second letter",
                    Call(
                        "POST",
                        "/stannp/letters/",
                        alice,
                        {"X-Idempotency-Key": f"letter-{run}"},
                        {**letter, "recipient": "Ms Jane Smith"},
                        form=True,
                    ),
                    200,
                ),
            ],
        ),
        (
            "orzcash: payments",
            [
                Step(
                    "No key -> 400 idempotency_key_missing (required on every POST)",
                    Call("POST", "/orzcash/transfers/", alice, {}, transfer),
                    400,
                ),
                Step(
                    "A key that is not a UUID -> 400 idempotency_key_invalid",
                    Call(
                        "POST",
                        "/orzcash/transfers/",
                        alice,
                        {"Idempotency-Key": f"transfer-{run}"},
                        transfer,
                    ),
                    400,
                ),
                Step(
                    "The payment network times out (504): not stored, the key is released",
                    Call(
                        "POST",
                        "/orzcash/transfers/",
                        alice,
                        {"Idempotency-Key": uuid_key, "X-Demo-Fail": "504"},
                        transfer,
                    ),
                    504,
                ),
                Step(
                    "Retry with the same key: carries the transfer to completion",
                    Call(
                        "POST",
                        "/orzcash/transfers/",
                        alice,
                        {"Idempotency-Key": uuid_key},
                        transfer,
                    ),
                    201,
                ),
                Step(
                    "Retry again: the original response",
                    Call(
                        "POST",
                        "/orzcash/transfers/",
                        alice,
                        {"Idempotency-Key": uuid_key},
                        transfer,
                    ),
                    201,
                    replayed=True,
                ),
            ],
        ),
    ]


def run_step(step: Step, base_url: str, context: dict[str, str]) -> list[tuple[Call, Answer]]:
    """Send the step's request (twice, overlapping, for a duplicate in flight)."""
    if not step.duplicate:
        answers = [(step.call, send(step.call, base_url, context))]
    else:
        results: dict[int, Answer] = {}

        def worker(index: int) -> None:
            results[index] = send(step.call, base_url, context)

        first = threading.Thread(target=worker, args=(0,))
        first.start()
        time.sleep(1)  # the first request is now inside its 3-second operation
        worker(1)
        first.join()
        answers = [(step.call, results[0]), (step.call, results[1])]
    for name, json_field in step.capture.items():
        body = answers[0][1].json()
        if isinstance(body, dict) and json_field in body:
            context[name] = str(body[json_field])
    return answers


def check(step: Step, answers: list[tuple[Call, Answer]]) -> list[str]:
    """What differs from the documented behaviour (empty when all is as documented)."""
    problems = []
    expected = [step.expect, step.expect_duplicate] if step.duplicate else [step.expect]
    for (_, answer), status in zip(answers, expected, strict=True):
        if answer.status != status:
            problems.append(f"expected status {status}, got {answer.status}")
    replayed = answers[0][1].headers.get("Idempotent-Replayed") == "true"
    if replayed != step.replayed:
        problems.append("expected a replay" if step.replayed else "unexpected replay")
    return problems


def describe(call: Call, answer: Answer, base_url: str, context: dict[str, str]) -> Iterator[str]:
    yield f"> {call.method} {url_of(call, base_url, context)}"
    for name, value in call.all_headers().items():
        if name == "Authorization":
            value = value[:14] + "…"
        yield f"> {name}: {value}"
    body = call.encoded_body()
    if body:
        yield f"> {body.decode()}"
    yield f"< {answer.status}"
    for name in SHOWN_HEADERS:
        shown = answer.headers.get(name)
        if shown is not None:
            yield f"< {name}: {shown}"
    text = answer.body.decode(errors="replace")
    yield "< " + (text if len(text) <= 400 else text[:400] + "…")


def walk(
    alice: str, bob: str, base_url: str, write: Callable[[str], None], run: str | None = None
) -> int:
    """Run every step, print each exchange; return the number of surprises."""
    run = run or uuid.uuid4().hex[:8]
    context: dict[str, str] = {}
    surprises = 0
    number = 0
    for group, steps in all_steps(alice, bob, run):
        write("")
        write(f"=== {group} ===")
        for step in steps:
            number += 1
            answers = run_step(step, base_url, context)
            problems = check(step, answers)
            write("")
            write(f"{number}. {step.title}")
            labels = ["first request:", "the same request, sent 1 s later:"]
            for index, (call, answer) in enumerate(answers):
                if step.duplicate:
                    write("   " + labels[index])
                for line in describe(call, answer, base_url, context):
                    write("   " + line)
            if problems:
                surprises += 1
                write("   !! NOT AS DOCUMENTED: " + "; ".join(problems))
    return surprises
