"""The endpoint over HTTP (issue 13, "Side by side, over HTTP"): every
configuration behind a real gunicorn, driven by wrk over keep-alive
connections, in the same run and interleaved in rounds.

    make bench-http
    make bench-http ARGS="--rounds 3 --duration 3 --peers drf-idempotencykey"

Each configuration gets its own gunicorn (its own settings: ours with the
database lock, ours with the Redis front, each peer) on its own fresh
PostgreSQL database, durable commits, persistent connections, ``--workers``
processes of the ``gthread`` worker with one thread each: one request at a
time per process, as the sync worker, but with HTTP keep-alive, which the
sync worker does not do (it closes every connection after one response). All
servers start before the first measurement and idle between theirs.

What is measured, each round in a shuffled order:

- first requests (a fresh ``Idempotency-Key`` per request, made in wrk's Lua)
  at 1, 2, 4, 8 and 16 connections: latency (p50, p99 from wrk's histogram)
  and throughput; the knee is the concurrency after which throughput grows
  by less than 10 %;
- replays (one completed key sent again and again) at 1 connection;
- the unprotected endpoint (no key) and the floor (views.py) likewise.

Every answer is checked in wrk's ``response()``: first requests must answer
201, replays 201 (ours: with ``Idempotent-Replayed``), and socket errors and
timeouts count as failures too. Ours, the floor or the unprotected endpoint
answering anything else fails the run; a peer that does is reported as
failed, without figures. A replay that ran the view again (rows of the
endpoint's table counted before and after) fails ours and is noted for a peer.

Writes benchmarks/published/http.json and http.md (or --out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from common import CREATED, HERE, ROOT, drop_pg_database, fresh_pg_database, log, pg_name, publish

BODY = json.dumps({"amount": 1000, "note": "bench"})
#: Replays send their own body, so that the view runs they cause are counted
#: apart from first requests still finishing after the previous measurement.
REPLAY_BODY = json.dumps({"amount": 1000, "note": "replay"})
REPLAY_HEADER = "idempotent-replayed"
CONNS = [1, 2, 4, 8, 16]

LUA = r"""
-- args: path, mode (fresh | fixed | none), fixed key, expected status,
-- required header (lower case, or ""), key prefix, body, X-Floor-Mode ("" or value)
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  path, mode, fixed, expect = args[1], args[2], args[3], tonumber(args[4])
  header, prefix, body = args[5], args[6], args[7]
  ok, bad, noheader, firstbad, n = 0, 0, 0, "", 0
  hdrs = {["Content-Type"] = "application/json", ["X-User"] = "alice"}
  if args[8] ~= "" then hdrs["X-Floor-Mode"] = args[8] end
  if mode == "fixed" then hdrs["Idempotency-Key"] = fixed end
  if mode ~= "fresh" then req = wrk.format("POST", path, hdrs, body) end
end

function request()
  if mode == "fresh" then
    n = n + 1
    -- UUID-shaped: some peers refuse any other key.
    hdrs["Idempotency-Key"] = string.format("%s-%04x-4000-a000-%012x", prefix, tid, n)
    return wrk.format("POST", path, hdrs, body)
  end
  return req
end

function response(status, headers, resp)
  if status ~= expect then
    bad = bad + 1
    if firstbad == "" then firstbad = status .. " " .. string.sub(resp or "", 1, 200) end
    return
  end
  if header ~= "" then
    local seen = false
    for k, _ in pairs(headers) do
      if string.lower(k) == header then seen = true end
    end
    if not seen then
      noheader = noheader + 1
      return
    end
  end
  ok = ok + 1
end

function done(summary, latency, requests)
  local tok, tbad, tnoh, fb = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    tok = tok + t:get("ok")
    tbad = tbad + t:get("bad")
    tnoh = tnoh + t:get("noheader")
    if fb == "" then fb = t:get("firstbad") end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "mean_us": %.1f, "max_us": %d, "ok": %d, "bad": %d, ' ..
    '"no_header": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, tok, tbad, tnoh,
    e.connect, e.read, e.write, e.status, e.timeout))
  io.write("WRKBAD " .. fb .. "\n")
end
"""


class BenchFailed(Exception):
    pass


def servers_plan(peers: list[str]) -> list[dict[str, Any]]:
    """The gunicorn servers and the endpoints each one serves.

    Endpoint: name, path, scenarios, the package and mode shown, strict (ours,
    the floor and the unprotected endpoint must answer right or the run fails).
    """
    from peers import PEERS

    plan: list[dict[str, Any]] = [
        {
            "server": "ours",
            "config": {"lock": "database"},
            "endpoints": [
                {
                    "name": "plain",
                    "path": "/plain/",
                    "scenarios": ["none"],
                    "strict": True,
                    "package": "unprotected endpoint",
                    "mode": "no idempotency",
                },
                {
                    "name": "floor",
                    "path": "/floor/",
                    "scenarios": ["first", "replay"],
                    "strict": True,
                    "package": "floor",
                    "mode": "raw SQL, two statements",
                },
                {
                    "name": "ours",
                    "path": "/ours/",
                    "scenarios": ["first", "replay"],
                    "strict": True,
                    "package": "django-idempotency",
                    "mode": "database lock",
                },
            ],
        },
        {
            "server": "ours-redis",
            "config": {"lock": "cache"},
            "endpoints": [
                {
                    "name": "ours-redis",
                    "path": "/ours/",
                    "scenarios": ["first", "replay"],
                    "strict": True,
                    "package": "django-idempotency",
                    "mode": "Redis front (LOCK: cache)",
                },
            ],
        },
    ]
    for name in peers:
        plan.append(
            {
                "server": name,
                "config": {"peer": name},
                "endpoints": [
                    {
                        "name": name,
                        "path": "/peer/",
                        "scenarios": ["first", "replay"],
                        "strict": False,
                        "package": PEERS[name]["package"],
                        "mode": PEERS[name]["mode"],
                    },
                ],
            }
        )
    return plan


class Server:
    """One gunicorn on its own fresh database."""

    def __init__(
        self, spec: dict[str, Any], args: argparse.Namespace, python: str, scratch: Path
    ) -> None:
        self.spec = spec
        self.args = args
        self.python = python
        self.scratch = scratch
        self.slug = re.sub(r"[^a-z0-9]+", "_", spec["server"].lower())
        self.database = pg_name(f"http_{self.slug}")
        self.config = {"db": "postgresql", "name": self.database, "sync": "on", **spec["config"]}
        self.process: subprocess.Popen[bytes] | None = None
        self.logfile = scratch / f"gunicorn-{self.slug}.log"
        self.base = ""

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BENCH_CONFIG": json.dumps(self.config),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
        }

    def start(self) -> None:
        from peers_run import _free_port

        fresh_pg_database(self.database)
        out = self.scratch / f"setup-{self.slug}.json"
        proc = subprocess.run(
            [self.python, str(HERE / "worker.py")],
            env={
                **self.env(),
                "BENCH_PLAN": json.dumps({"action": "setup"}),
                "BENCH_OUT": str(out),
            },
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise BenchFailed(f"{self.spec['server']}: setup failed: {proc.stderr[-2000:]}")
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        gunicorn = str(Path(self.python).parent / "gunicorn")
        with open(self.logfile, "w") as log_out:
            self.process = subprocess.Popen(
                [
                    gunicorn,
                    "benchsite.wsgi:application",
                    "--chdir",
                    str(HERE),
                    "--workers",
                    str(self.args.workers),
                    "--worker-class",
                    self.args.worker_class,
                    *(["--threads", "1"] if self.args.worker_class == "gthread" else []),
                    "--keep-alive",
                    "75",
                    "--backlog",
                    "2048",
                    "--timeout",
                    "120",
                    "--bind",
                    f"127.0.0.1:{port}",
                ],
                env=self.env(),
                stdout=log_out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.time() + 120
        assert self.process is not None
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise BenchFailed(
                    f"{self.spec['server']}: gunicorn exited: {self.logfile.read_text()[-1500:]}"
                )
            if self.logfile.read_text().count("Booting worker") >= self.args.workers:
                try:
                    status, _, _ = post(self.base + "/plain/", None)
                    if status == 201:
                        break
                except OSError:
                    pass
            time.sleep(0.5)
        else:
            raise BenchFailed(f"{self.spec['server']}: not ready in 120 s")
        # Every worker imports its views on its first request: warm them all.
        for endpoint in self.spec["endpoints"]:
            for _ in range(self.args.workers * 4):
                post(self.base + endpoint["path"], str(uuid.uuid4()))

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def orders(self) -> int:
        import psycopg

        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=self.database) as conn:
            row = conn.execute(
                "SELECT count(*) FROM benchsite_order WHERE note = 'replay'"
            ).fetchone()
            assert row is not None
            return int(row[0])


def post(
    url: str, key: str | None, floor_mode: str = "", body: str = BODY
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "X-User": "alice"}
    if key:
        headers["Idempotency-Key"] = key
    if floor_mode:
        headers["X-Floor-Mode"] = floor_mode
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def wrk(
    script: Path,
    url: str,
    path: str,
    conns: int,
    seconds: int,
    *,
    mode: str,
    key: str = "",
    expect: int = 201,
    header: str = "",
    floor_mode: str = "",
    body: str = BODY,
) -> dict[str, Any]:
    threads = min(conns, 2)
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(conns),
        "-d",
        f"{int(seconds)}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        path,
        mode,
        key or "-",
        str(expect),
        header,
        uuid.uuid4().hex[:8],
        body,
        floor_mode,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^WRKJSON (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not match:
        raise BenchFailed(
            f"wrk failed ({' '.join(command[:9])}): {proc.stdout[-800:]}{proc.stderr[-800:]}"
        )
    out: dict[str, Any] = json.loads(match.group(1))
    bad = re.search(r"^WRKBAD (.*)$", proc.stdout, re.M)
    out["first_bad"] = bad.group(1).strip() if bad else ""
    out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
    return out


def failures_of(out: dict[str, Any]) -> str:
    problems = []
    if out["bad"]:
        problems.append(f"{out['bad']} unexpected answers (first: {out['first_bad'][:160]})")
    if out["no_header"]:
        problems.append(f"{out['no_header']} replays without Idempotent-Replayed")
    errors = {k: out[k] for k in ("connect", "read", "write", "timeout") if out[k]}
    if errors:
        problems.append(f"socket errors {errors}")
    if out["requests"] == 0:
        problems.append("no request completed")
    return "; ".join(problems)


def knee_label(at: int | None, conns: list[int]) -> str:
    """The knee as printed: at the highest concurrency measured, throughput was
    still growing there, so the knee is that or beyond."""
    if at is None:
        return "-"
    return f"{at} or more" if at == max(conns) else str(at)


def knee(series: dict[int, float]) -> int:
    """The concurrency after which throughput grows by less than 10 %: the
    lowest one that no higher concurrency beats by more than 10 % (a dip
    between two points of a noisy machine does not end the growth)."""
    conns = sorted(series)
    for i, here in enumerate(conns):
        if all(series[later] < series[here] * 1.10 for later in conns[i + 1 :]):
            return here
    return conns[-1]


def measure(args: argparse.Namespace, servers: list[Server], scratch: Path) -> dict[str, Any]:
    script = scratch / "idempotency.lua"
    script.write_text(LUA)
    conns = [int(c) for c in args.conns.split(",")]
    jobs: list[tuple[Server, dict[str, Any], str, int]] = []
    replay_keys: dict[str, str] = {}
    for server in servers:
        for endpoint in server.spec["endpoints"]:
            for scenario in endpoint["scenarios"]:
                if scenario == "replay":
                    key = str(uuid.uuid4())
                    floor_mode = "claim" if endpoint["name"] == "floor" else ""
                    status, _, content = post(
                        server.base + endpoint["path"], key, floor_mode, REPLAY_BODY
                    )
                    if status != 201:
                        raise BenchFailed(
                            f"{endpoint['name']}: the replay key's first request "
                            f"answered {status}: {content[:200]!r}"
                        )
                    replay_keys[endpoint["name"]] = key
                    jobs.append((server, endpoint, scenario, 1))
                else:
                    jobs += [(server, endpoint, scenario, c) for c in conns]
    samples: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    failed: dict[tuple[str, str, int], str] = {}
    notes: dict[str, list[str]] = {}
    reruns: dict[str, list[int]] = {}
    total = len(jobs) * args.rounds
    done = 0
    for round_no in range(args.rounds):
        order = jobs[:]
        random.shuffle(order)
        for server, endpoint, scenario, c in order:
            done += 1
            name = endpoint["name"]
            if (name, scenario, c) in failed:
                continue
            replay = scenario == "replay"
            # Requests still queued from the previous measurement finish first.
            time.sleep(0.5)
            before = server.orders() if replay else 0
            out = wrk(
                script,
                server.base + endpoint["path"],
                endpoint["path"],
                c,
                args.duration,
                mode={"none": "none", "first": "fresh", "replay": "fixed"}[scenario],
                key=replay_keys.get(name, ""),
                header=REPLAY_HEADER if replay and name.startswith("ours") else "",
                floor_mode=("lookup" if replay else "claim") if name == "floor" else "",
                body=REPLAY_BODY if replay else BODY,
            )
            problem = failures_of(out)
            if replay and not problem:
                ran = server.orders() - before
                if ran and endpoint["strict"]:
                    problem = f"replays ran the view again ({ran} of {out['requests']})"
                elif ran:
                    counts = reruns.setdefault(name, [0, 0])
                    counts[0] += ran
                    counts[1] += out["requests"]
            if problem:
                message = f"{name}/{scenario} at {c} connections: {problem}"
                if endpoint["strict"]:
                    raise BenchFailed(message)
                log(f"FAILED (peer, no figures for it): {message}")
                failed[(name, scenario, c)] = message
                continue
            samples.setdefault((name, scenario, c), []).append(out)
            log(
                f"[{done}/{total}] round {round_no + 1} {name}/{scenario} c={c}: "
                f"{out['rps']:.0f} req/s, p50 {out['p50_us'] / 1000:.2f} ms, "
                f"p99 {out['p99_us'] / 1000:.2f} ms"
            )
    for name, (ran, sent) in reruns.items():
        notes.setdefault(name, []).append(
            f"replays ran the view again: {ran} view runs for {sent} replays"
        )
    return summarise(servers, samples, failed, notes, conns)


def summarise(
    servers: list[Server],
    samples: dict[tuple[str, str, int], list[dict[str, Any]]],
    failed: dict[tuple[str, str, int], str],
    notes: dict[str, list[str]],
    conns: list[int],
) -> dict[str, Any]:
    rows = []
    for (name, scenario, c), outs in sorted(samples.items()):
        rows.append(
            {
                "endpoint": name,
                "scenario": scenario,
                "conns": c,
                "rounds": len(outs),
                "requests": sum(o["requests"] for o in outs),
                "rps": statistics.median(o["rps"] for o in outs),
                "p50_ms": statistics.median(o["p50_us"] for o in outs) / 1000,
                "p99_ms": statistics.median(o["p99_us"] for o in outs) / 1000,
                "per_round": [
                    {k: o[k] for k in ("rps", "p50_us", "p99_us", "requests")} for o in outs
                ],
            }
        )
    by = {(r["endpoint"], r["scenario"], r["conns"]): r for r in rows}
    plain1 = by.get(("plain", "none", 1))
    endpoints = []
    for server in servers:
        for endpoint in server.spec["endpoints"]:
            name = endpoint["name"]
            entry: dict[str, Any] = {k: endpoint[k] for k in ("name", "package", "mode")}
            # A peer that answered wrong somewhere keeps the figures of the
            # measurements it answered right; the failures are listed.
            entry["failed"] = [m for (n, _, _), m in sorted(failed.items()) if n == name]
            entry["notes"] = notes.get(name, [])
            for scenario in endpoint["scenarios"]:
                row = by.get((name, scenario, 1))
                if row and plain1:
                    entry[scenario] = {
                        "p50_ms": row["p50_ms"],
                        "p99_ms": row["p99_ms"],
                        "x_plain_p50": row["p50_ms"] / plain1["p50_ms"],
                        "x_plain_p99": row["p99_ms"] / plain1["p99_ms"],
                    }
            main = "none" if name == "plain" else "first"
            series = {c: by[(name, main, c)]["rps"] for c in conns if (name, main, c) in by}
            if series:
                entry["throughput"] = {str(c): series[c] for c in series}
                entry["max_rps"] = max(series.values())
                # No knee from a series with holes (a peer that failed at some).
                at = knee(series) if len(series) == len(conns) else None
                entry["knee"] = at
                entry["rps_at_knee"] = series[at] if at else None
            endpoints.append(entry)
    plain = next((e for e in endpoints if e["name"] == "plain"), None)
    for entry in endpoints:
        if plain and "max_rps" in entry and "max_rps" in plain:
            entry["x_plain_max_rps"] = entry["max_rps"] / plain["max_rps"]
    return {"rows": rows, "endpoints": endpoints}


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    conns = s["conns"]
    lines = [
        f"Command: `{results['command']}`; {s['workers']} gunicorn processes "
        f"({s['worker_class']}, one thread each) per configuration, PostgreSQL "
        f"{results['machine'].get('postgresql', '?')}, durable commits, persistent connections; "
        f"wrk keep-alive, {s['rounds']} interleaved rounds of {s['duration_s']} s per "
        f"measurement; {results['machine'].get('cpus')} CPUs shared with wrk and the database; "
        f"{results['elapsed_s']:.0f} s in all.",
        "",
        "Latency at 1 connection (median over rounds of wrk's p50 and p99; x plain: against "
        "the unprotected endpoint of the same run):",
        "",
        "| Endpoint | Mode | First p50 ms | p99 ms | x plain p50 | x plain p99 "
        "| Replay p50 ms | p99 ms | x plain p50 | x plain p99 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cells(entry: dict[str, Any], scenario: str) -> str:
        got = entry.get(scenario)
        if not got:
            return "- | - | - | -"
        return (
            f"{got['p50_ms']:.2f} | {got['p99_ms']:.2f} | {got['x_plain_p50']:.2f}x | "
            f"{got['x_plain_p99']:.2f}x"
        )

    for e in results["endpoints"]:
        label = e["package"] if e["name"] in ("plain", "floor") else f"{e['package']}"
        first = cells(e, "none" if e["name"] == "plain" else "first")
        lines.append(f"| {label} | {e['mode']} | {first} | {cells(e, 'replay')} |")
    lines += [
        "",
        "Throughput (requests/s, median over rounds; first requests, no key for the unprotected "
        "endpoint) by connections; the knee is the concurrency after which it grows by less "
        "than 10 %:",
        "",
        "| Endpoint | Mode | " + " | ".join(f"{c} conn" for c in conns) + " | Knee | Max x plain |",
        "|---|---|" + "---|" * len(conns) + "---|---|",
    ]
    for e in results["endpoints"]:
        if "throughput" not in e:
            continue
        tp = " | ".join(
            f"{e['throughput'][str(c)]:.0f}" if str(c) in e["throughput"] else "failed"
            for c in conns
        )
        lines.append(
            f"| {e['package']} | {e['mode']} | {tp} | {knee_label(e['knee'], conns)} | "
            f"{e.get('x_plain_max_rps', 0):.2f}x |"
        )
    failed = [e for e in results["endpoints"] if e.get("failed")]
    noted = [e for e in results["endpoints"] if e.get("notes")]
    if failed or noted:
        lines.append("")
    for e in failed:
        lines.append(
            f"- **{e['package']}** ({e['mode']}) answered wrong, no figures for: "
            + "; ".join(e["failed"])
        )
    for e in noted:
        lines.append(f"- **{e['package']}** ({e['mode']}): {'; '.join(e['notes'])}")
    return "\n".join(lines) + "\n"


def report_only(out: Path) -> int:
    """http.md again from http.json, the knees recomputed (after a change of
    their definition)."""
    results = json.loads((out / "http.json").read_text())
    conns = results["settings"]["conns"]
    for entry in results["endpoints"]:
        series = {int(c): v for c, v in entry.get("throughput", {}).items()}
        if series:
            at = knee(series) if len(series) == len(conns) else None
            entry["knee"] = at
            entry["rps_at_knee"] = series[at] if at else None
    (out / "http.json").write_text(json.dumps(results, indent=1))
    (out / "http.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--conns", default=",".join(map(str, CONNS)), help="connection counts")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn processes per server")
    parser.add_argument(
        "--worker-class",
        default="gthread",
        help="gthread (one thread: one request at a time, keep-alive) or sync",
    )
    parser.add_argument(
        "--peers", default=None, help="only these peers (comma-separated; empty: none)"
    )
    parser.add_argument("--python", help="interpreter of the servers (default: .venv-bench)")
    parser.add_argument("--out", help="output directory (default: benchmarks/published)")
    parser.add_argument(
        "--report", action="store_true", help="measure nothing: rewrite http.md from http.json"
    )
    args = parser.parse_args()
    if args.report:
        return report_only(Path(args.out or HERE / "published"))
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    import run
    from peers import PEERS

    python = args.python or run.bench_python(argparse.Namespace(python=None, smoke=False))
    peers = list(PEERS) if args.peers is None else [p for p in args.peers.split(",") if p]
    started = time.time()
    results: dict[str, Any] = {
        "machine": run.machine(),
        "command": " ".join(["benchmarks/http_run.py", *sys.argv[1:]]),
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "conns": [int(c) for c in args.conns.split(",")],
            "workers": args.workers,
            "worker_class": args.worker_class,
            "peers": peers,
        },
    }
    servers: list[Server] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
            scratch = Path(tmp)
            for spec in servers_plan(peers):
                server = Server(spec, args, python, scratch)
                servers.append(server)
                log(f"starting gunicorn for {spec['server']}")
                server.start()
            for server in servers:
                server.wait_ready()
            results.update(measure(args, servers, scratch))
    finally:
        for server in servers:
            server.stop()
        for name in sorted(CREATED):
            drop_pg_database(name)
    results["elapsed_s"] = round(time.time() - started, 1)
    publish(Path(args.out or HERE / "published"), "http", results, markdown(results))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchFailed as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
