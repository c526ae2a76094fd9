"""One benchmark process: one Django configuration, measured in-process.

run.py starts it with BENCH_CONFIG (the settings, see benchsite/settings.py)
and BENCH_PLAN (what to measure) and reads one JSON document from the file
named by BENCH_OUT. Requests go straight into Django's WSGI handler, without
a socket, so the figures are the cost of the code, not of the network.

Variants (URLs of the same endpoint): plain, ours, ours-atomic, floor,
floor-atomic, peer. Scenarios: none (no key), first (a fresh key each time),
replay, mismatch (same key, another body), in_progress (a duplicate while
the first request is parked inside the view).
"""

from __future__ import annotations

import io
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

import django  # noqa: E402

django.setup()

from benchsite import views  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import close_old_connections, connection, connections  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

URLS = {
    "plain": "/plain/",
    "ours": "/ours/",
    "ours-atomic": "/ours-atomic/",
    "floor": "/floor/",
    "floor-atomic": "/floor-atomic/",
    "peer": "/peer/",
}
#: What each scenario must answer, so a broken configuration fails loudly
#: instead of producing fast figures for error pages.
EXPECTED = {
    "none": {201},
    "first": {201},
    "replay": {201},
    "mismatch": {422, 409, 400},
    "in_progress": {409},
}
_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")

handler = WSGIHandler()


class BenchError(Exception):
    pass


class Blocked(Exception):
    """A duplicate waited for the parked first request instead of being answered."""


#: A peer may answer a scenario with something else than our contract says;
#: that is recorded, not fatal. Ours and the floor must answer as expected.
TOLERANT = {"peer"}
#: Longer than any answered request, shorter than the parked request's wait.
BLOCKED_NS = 2_000_000_000
HOLD_SECONDS = 8.0


def environ(path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def call(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    status: list[str] = []

    def start_response(line: str, _headers: list[Any], _exc: Any = None) -> None:
        status.append(line)

    # A start_response that returns no write() callable: Django never calls it.
    result = handler(environ(path, body, headers), start_response)  # type: ignore[arg-type]
    try:
        content = b"".join(result)
    finally:
        result.close()  # sends request_finished, as a server does
    return int(status[0].split(" ", 1)[0]), content


def body_for(i: int, note: str = "bench") -> bytes:
    return json.dumps({"amount": 1000 + i % 97, "note": note}).encode()


class Scenario:
    """Builds the requests of one scenario for one variant and checks answers."""

    def __init__(self, name: str, variant: str, user: str, pool: list[str]) -> None:
        self.name = name
        self.variant = variant
        self.path = URLS[variant]
        self.user = user
        self.pool = pool
        self.i = 0
        self.view_runs = 0
        self.requests = 0

    def request(self) -> tuple[bytes, dict[str, str]]:
        self.i += 1
        headers = {"X-User": self.user}
        if self.name == "none":
            return body_for(self.i), headers
        if self.name == "first":
            headers["Idempotency-Key"] = str(uuid.uuid4())
            return body_for(self.i), headers
        key_index = self.i % len(self.pool)
        headers["Idempotency-Key"] = self.pool[key_index]
        if self.name == "mismatch":
            return body_for(key_index, note="another body"), headers
        return body_for(key_index), headers


def set_floor_mode(scenario: str) -> None:
    views.FLOOR["mode"] = "claim" if scenario in ("none", "first") else "lookup"


def run_block(
    scenario: Scenario, n: int, sink: list[int], statuses: dict[int, int] | None = None
) -> None:
    set_floor_mode(scenario.name)
    expected = EXPECTED[scenario.name]
    clock = time.perf_counter_ns
    runs_before = views.RUNS[0]
    for _ in range(n):
        body, headers = scenario.request()
        start = clock()
        status, content = call(scenario.path, body, headers)
        took = clock() - start
        sink.append(took)
        if statuses is not None:
            statuses[status] = statuses.get(status, 0) + 1
        if scenario.name == "in_progress" and took > BLOCKED_NS:
            raise Blocked(f"{took / 1e9:.1f} s")
        if status not in expected and scenario.variant not in TOLERANT:
            raise BenchError(
                f"{scenario.variant}/{scenario.name}: answered {status} "
                f"(expected {sorted(expected)}): {content[:300]!r}"
            )
    scenario.view_runs += views.RUNS[0] - runs_before
    scenario.requests += n


def make_pool(variant: str, user: str, size: int) -> list[str]:
    """Keys that already hold a completed record, for replays and mismatches."""
    set_floor_mode("first")
    keys = []
    for i in range(size):
        key = str(uuid.uuid4())
        status, content = call(URLS[variant], body_for(i), {"X-User": user, "Idempotency-Key": key})
        if status != 201:
            raise BenchError(
                f"{variant}: preparing a replay key answered {status}: {content[:300]!r}"
            )
        keys.append(key)
    return keys


class Held:
    """One request parked inside the view on another thread, holding its key."""

    def __init__(self, variant: str, user: str) -> None:
        self.key = str(uuid.uuid4())
        self.variant = variant
        self.user = user
        self.answer: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            status, _ = call(
                URLS[self.variant],
                body_for(0),
                {"X-User": self.user, "Idempotency-Key": self.key, "X-Hold": "1"},
            )
            self.answer.append(status)
        finally:
            connections.close_all()

    def __enter__(self) -> Held:
        views.hold_entered.clear()
        views.hold_release.clear()
        views.HOLD_SECONDS[0] = HOLD_SECONDS
        set_floor_mode("first")
        self.thread.start()
        if not views.hold_entered.wait(20):
            raise BenchError(f"{self.variant}: the held request never reached the view")
        return self

    def __exit__(self, *exc: object) -> None:
        views.hold_release.set()
        self.thread.join(HOLD_SECONDS + 30)
        if not exc[0] and self.answer != [201] and self.variant not in TOLERANT:
            raise BenchError(f"{self.variant}: the held request answered {self.answer}")


def count_statements(scenario: Scenario) -> int:
    """Statements sent for one request of the scenario, transaction control excluded."""
    set_floor_mode(scenario.name)
    body, headers = scenario.request()
    with CaptureQueriesContext(connection) as captured:
        call(scenario.path, body, headers)
    return sum(
        1
        for q in captured.captured_queries
        if not q["sql"].lstrip().upper().startswith(_TRANSACTION_CONTROL)
    )


def summarise(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)
    mean = statistics.fmean(ordered)
    return {
        "n": n,
        "median_us": ordered[n // 2] / 1000,
        "p99_us": ordered[min(n - 1, int(n * 0.99))] / 1000,
        "mean_us": mean / 1000,
        "rps": 1e9 / mean,
    }


def measure(plan: dict[str, Any]) -> list[dict[str, Any]]:
    variants: list[str] = plan["variants"]
    scenarios: list[str] = plan["scenarios"]
    n: int = plan["block"]
    rounds: int = plan["rounds"]
    user = "alice"
    pairs = [
        (variant, scenario)
        for scenario in scenarios
        for variant in variants
        if applicable(variant, scenario)
    ]
    pools = {
        variant: make_pool(variant, user, plan.get("pool", 50))
        for variant in variants
        if variant != "plain" and any(s in ("replay", "mismatch") for s in scenarios)
    }
    made = {pair: Scenario(pair[1], pair[0], user, pools.get(pair[0], [])) for pair in pairs}

    # Warm every path once (imports, prepared plans, caches) before timing.
    blocked_early: set[tuple[str, str]] = set()
    for pair in pairs:
        try:
            with holding(made[pair]):
                run_block(made[pair], max(5, n // 10), [])
        except Blocked:
            blocked_early.add(pair)
    statements = {}
    for pair in pairs:
        if pair in blocked_early:
            continue
        with holding(made[pair]):
            statements[pair] = count_statements(made[pair])

    for scenario in made.values():
        scenario.view_runs = scenario.requests = 0
    samples: dict[tuple[str, str], list[int]] = {pair: [] for pair in pairs}
    statuses: dict[tuple[str, str], dict[int, int]] = {pair: {} for pair in pairs}
    blocked: dict[tuple[str, str], str] = {}
    rng = random.Random(plan.get("seed", 6))
    for _ in range(rounds):
        # Interleaved, in a fresh order each round, so that the machine's
        # noise falls on every variant alike and ratios stay meaningful.
        order = [pair for pair in pairs if pair not in blocked]
        for pair in blocked_early:
            blocked.setdefault(pair, "a duplicate waited for the first request to finish")
        rng.shuffle(order)
        for pair in order:
            try:
                with holding(made[pair]):
                    run_block(made[pair], n, samples[pair], statuses[pair])
            except Blocked as exc:
                blocked[pair] = f"a duplicate waited {exc} for the first request to finish"
    rows = []
    for pair in pairs:
        row: dict[str, Any] = {
            "variant": pair[0],
            "scenario": pair[1],
            "statements": statements.get(pair),
            "statuses": {str(k): v for k, v in sorted(statuses[pair].items())},
            # Times the view body ran per measured request: 1 for first
            # requests and the unprotected endpoint, 0 for everything else.
            "view_runs_per_request": made[pair].view_runs / max(1, made[pair].requests),
        }
        if pair in blocked:
            row["note"] = blocked[pair]
            row.update({"n": 0, "median_us": None, "p99_us": None, "mean_us": None, "rps": None})
        else:
            row.update(summarise(samples[pair]))
        rows.append(row)
    return rows


def applicable(variant: str, scenario: str) -> bool:
    if variant == "plain":
        return scenario == "none"
    if scenario == "none":
        return False
    # The atomic floor claims inside the view's transaction: a duplicate would
    # wait on the uncommitted row instead of being answered (see TRAPS.md).
    return not (variant == "floor-atomic" and scenario == "in_progress")


class holding:
    """For in_progress, parks a request on a fresh key and points the scenario at it."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.held = (
            Held(scenario.variant, scenario.user) if scenario.name == "in_progress" else None
        )

    def __enter__(self) -> None:
        if self.held is not None:
            self.held.__enter__()
            self.scenario.pool = [self.held.key]

    def __exit__(self, *exc: Any) -> None:
        if self.held is not None:
            self.held.__exit__(*exc)


def setup_database(drop_indexes: list[str] | None = None) -> None:
    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)
    # What-if only: the same table without some of the app's indexes.
    with connection.cursor() as cursor:
        for index in drop_indexes or []:
            cursor.execute(f"DROP INDEX IF EXISTS {connection.ops.quote_name(index)}")
    from django.contrib.auth import get_user_model

    for name in ("alice", "bob"):
        get_user_model().objects.get_or_create(username=name)


def main_measure(plan: dict[str, Any]) -> dict[str, Any]:
    setup_database(plan.get("drop_indexes"))
    close_old_connections()
    rows = measure(plan)
    return {"rows": rows}


def main_profile(plan: dict[str, Any]) -> dict[str, Any]:
    """A cProfile of one variant and scenario, for the report of a missed target."""
    import cProfile
    import pstats

    setup_database()
    variant, scenario = plan["variant"], plan["scenario"]
    pool = make_pool(variant, "alice", 50) if scenario in ("replay", "mismatch") else []
    made = Scenario(scenario, variant, "alice", pool)
    run_block(made, 50, [])
    profiler = cProfile.Profile()
    profiler.enable()
    run_block(made, plan.get("block", 2000), [])
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative")
    stats.print_stats(plan.get("lines", 45))
    return {"profile": out.getvalue()}


def main_serve(plan: dict[str, Any]) -> dict[str, Any]:
    """First requests, one after the other, until told to stop: the traffic a
    purge must not disturb. Each sample is (wall-clock time, latency in ns)."""
    setup_database()
    scenario = Scenario("first", "ours", "alice", [])
    run_block(scenario, 20, [])
    Path(plan["ready"]).touch()
    stop = Path(plan["stop"])
    samples: list[tuple[float, int]] = []
    clock = time.perf_counter_ns
    while not stop.exists():
        body, headers = scenario.request()
        start = clock()
        status, content = call(scenario.path, body, headers)
        samples.append((time.time(), clock() - start))
        if status != 201:
            raise BenchError(f"serving during the purge answered {status}: {content[:300]!r}")
    return {"samples": samples}


def main_setup(plan: dict[str, Any]) -> dict[str, Any]:
    setup_database()
    return {}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(value).hex()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return {"repr": str(value), "type": type(value).__name__}


def main_capture(plan: dict[str, Any]) -> dict[str, Any]:
    """The statements (SQL and parameters, as handed to the driver) that one
    request of ``plan["scenario"]`` sends to ``plan["variant"]``: pgbench.py
    replays the app's own claim and completion from them."""
    setup_database()
    variant, name = plan.get("variant", "ours"), plan.get("scenario", "first")
    pool = make_pool(variant, "alice", 1) if name in ("replay", "mismatch") else []
    scenario = Scenario(name, variant, "alice", pool)
    run_block(scenario, 3, [])  # warm: the first request loads what is cached after
    sent: list[dict[str, Any]] = []

    def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        entry = {"sql": sql, "params": [_jsonable(p) for p in params or []]}
        # What the server receives: Django binds psycopg's parameters
        # client-side, so the statement arrives with its values inlined.
        mogrify = getattr(context["cursor"].cursor, "mogrify", None)
        if mogrify is not None:
            entry["literal"] = mogrify(sql, params)
        sent.append(entry)
        return execute(sql, params, many, context)

    set_floor_mode(name)
    body, headers = scenario.request()
    with connection.execute_wrapper(capture):
        status, _ = call(scenario.path, body, headers)
    if status not in EXPECTED[name]:
        raise BenchError(f"{variant}/{name}: answered {status} while capturing")
    return {"statements": sent, "headers": headers, "body": body.decode()}


ACTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "measure": main_measure,
    "serve": main_serve,
    "profile": main_profile,
    "setup": main_setup,
    "capture": main_capture,
}


def main(argv: Iterable[str]) -> int:
    plan = json.loads(os.environ.get("BENCH_PLAN", "{}"))
    action = plan.get("action", "measure")
    result = ACTIONS[action](plan)
    Path(os.environ["BENCH_OUT"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
