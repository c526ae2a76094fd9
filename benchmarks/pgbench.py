"""How many app servers one database serves (issue 13, "Past one database"):
the app's own claim and completion statements replayed by pgbench.

    make bench-pgbench
    make bench-pgbench ARGS="--rounds 3 --duration 5 --clients 1,2,4,8,16"

1. A fresh PostgreSQL database gets the app's migrated table (worker.py's
   ``capture`` action migrates the benchmark site), and one first request to
   the endpoint behind django-idempotency is sent in-process with every
   statement captured as the server receives it (Django binds the parameters
   client-side: the values arrive inlined, so pgbench's simple query mode is
   what the app does).
2. pgbench scripts are written from those statements, the per-request values
   replaced by pgbench variables: the lookup hash (64 random digits), the
   key, the claim token and the request id; the completion updates the row
   whose id the claim returned (``\\gset``). The only change to the app's
   text: the claim selects the record id under a name for ``\\gset`` (a
   call of the claim function of migration 0004: its id column instead of
   all of them; the CTE it falls back to: its first SELECT branch names its
   output columns), which changes neither the plan nor the work.
3. Three scripts, interleaved in rounds at each client count, each
   statement its own durable commit as in the app (autocommit,
   ``synchronous_commit`` on):
   - ``pair``: the claim and the completion: the idempotency layer's cost;
   - ``request``: claim, the endpoint's own INSERT, completion: all the
     database work of one first request;
   - ``endpoint``: the endpoint's INSERT alone: the unprotected request.

Reports transactions per second (a transaction: one run of the script, so a
claim and completion pair for ``pair``) and the knee (the client count after
which throughput grows by less than 10 %). With ``--http`` (default
benchmarks/published/http.json) it divides the database's pairs per second
by one gunicorn server's first-request throughput at its knee: how many such
app servers one database serves. Writes benchmarks/published/pgbench.json and
pgbench.md (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    CREATED,
    HERE,
    PG,
    ROOT,
    drop_pg_database,
    fresh_pg_database,
    log,
    pg_name,
    publish,
)
from http_run import knee, knee_label

CLIENTS = [1, 2, 4, 8, 16]
SCRIPTS = ("pair", "request", "endpoint")
#: What the engine calls where migrations 0004/0005 created them (django_idempotency/store.py).
CLAIM_FUNCTIONS = ("django_idempotency_claim_v2", "django_idempotency_claim_v1")


class BenchFailed(Exception):
    pass


def capture(database: str, scratch: Path) -> dict[str, Any]:
    """The statements of one first request to /ours/, on a migrated database."""
    out = scratch / "capture.json"
    config = {"db": "postgresql", "name": database, "sync": "on"}
    proc = subprocess.run(
        [sys.executable, str(HERE / "worker.py")],
        env={
            **os.environ,
            "BENCH_CONFIG": json.dumps(config),
            "BENCH_PLAN": json.dumps({"action": "capture", "variant": "ours", "scenario": "first"}),
            "BENCH_OUT": str(out),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
        },
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BenchFailed(f"capturing the statements failed:\n{proc.stderr[-3000:]}")
    captured: dict[str, Any] = json.loads(out.read_text())
    return captured


def _one_line(sql: str) -> str:
    # pgbench reads one SQL command up to its semicolon; keep it on one line.
    return " ".join(sql.split())


def scripts(captured: dict[str, Any]) -> dict[str, str]:
    statements = captured["statements"]
    claim = next(
        s
        for s in statements
        if "ON CONFLICT" in s["sql"] or any(f in s["sql"] for f in CLAIM_FUNCTIONS)
    )
    function = next((f for f in CLAIM_FUNCTIONS if f in claim["sql"]), None)
    complete = next(s for s in statements if s["sql"].lstrip().startswith("UPDATE"))
    endpoint = next(s for s in statements if "benchsite_order" in s["sql"])
    if "literal" not in claim:
        raise BenchFailed("the driver has no mogrify(): cannot see the statements as sent")
    params = claim["params"]
    lookup, key, token, request_id = params[0], params[1], params[8], params[9]
    record_id = complete["params"][4]
    replace = {
        f"'{lookup}'": "':h1:h2:h3:h4'",
        f"'{key}'": "':k1-0000-4000-a000-:k2'",
        f"'{token}'": "':t1:t2'",
        f"'{request_id}'": "':r1:r2'",
    }
    claim_sql = claim["literal"]
    for old, new in replace.items():
        if old not in claim_sql:
            raise BenchFailed(f"the claim as sent does not hold {old}")
        claim_sql = claim_sql.replace(old, new)
    if function is not None:
        # The function's other columns are NULL on a first request, which
        # \gset cannot store: only the id is kept.
        call = f"SELECT * FROM {function}("
        if call not in claim_sql:
            raise BenchFailed(f"the claim's shape changed: no '{call}'")
        claim_sql = claim_sql.replace(call, f"SELECT o_id AS claim_id FROM {function}(")
    else:
        # \gset stores every column under its name: the first branch of the
        # UNION names them (the second takes the names of the first).
        match = re.search(r"\) SELECT (id, .*?) FROM ins UNION ALL", claim_sql)
        if not match:
            raise BenchFailed("the claim's shape changed: no 'SELECT id, ... FROM ins' branch")
        columns = [c.strip() for c in match.group(1).split(",")]
        named = ", ".join(
            [columns[0] + " AS claim_id"] + [f"{c} AS c{i}" for i, c in enumerate(columns[1:], 1)]
        )
        claim_sql = claim_sql.replace(match.group(0), f") SELECT {named} FROM ins UNION ALL")
    complete_sql = complete["literal"]
    for old, new in ((f"'{token}'", "':t1:t2'"), (f'"id" = {record_id} ', '"id" = :claim_id ')):
        if old not in complete_sql:
            raise BenchFailed(f"the completion as sent does not hold {old}")
        complete_sql = complete_sql.replace(old, new)
    head = "\n".join(
        [
            "-- Written by benchmarks/pgbench.py from the statements django-idempotency sent",
            "-- for one first request; per-request values are pgbench variables.",
            *(f"\\set h{i} random(1000000000000000, 9999999999999999)" for i in range(1, 5)),
            "\\set k1 random(10000000, 99999999)",
            "\\set k2 random(100000000000, 999999999999)",
            *(f"\\set {v} random(1000000000000000, 9999999999999999)" for v in ("t1", "t2")),
            *(f"\\set {v} random(1000000000000000, 9999999999999999)" for v in ("r1", "r2")),
        ]
    )
    claim_line = _one_line(claim_sql) + " \\gset"
    complete_line = _one_line(complete_sql) + ";"
    endpoint_line = _one_line(endpoint["literal"]) + ";"
    return {
        "pair": f"{head}\n{claim_line}\n{complete_line}\n",
        "request": f"{head}\n{claim_line}\n{endpoint_line}\n{complete_line}\n",
        "endpoint": f"{endpoint_line}\n",
    }


def pgbench(database: str, script: Path, clients: int, seconds: int) -> dict[str, Any]:
    command = [
        "pgbench", "-h", str(PG["host"]), "-p", str(PG["port"]), "-U", PG["user"],
        "-n", "-M", "simple", "-f", str(script), "-c", str(clients),
        "-j", str(min(clients, 2)), "-T", str(seconds), database,
    ]  # fmt: skip
    for _ in range(10):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
        # Other clients of a shared server can take every connection for a while.
        if "too many clients" not in proc.stderr:
            break
        log(f"{script.name}, {clients} clients: the server had no connection left; again in 10 s")
        time.sleep(10)
    tps = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", proc.stdout, re.M)
    latency = re.search(r"^latency average = ([0-9.]+) ms", proc.stdout, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", proc.stdout, re.M)
    done = re.search(r"^number of transactions actually processed: (\d+)", proc.stdout, re.M)
    if (
        proc.returncode != 0
        or not tps
        or (failed and int(failed.group(1)))
        or "error" in (proc.stderr.lower())
    ):
        raise BenchFailed(f"pgbench failed ({script.name}, {clients} clients): "
                          f"{proc.stdout[-1000:]}{proc.stderr[-1500:]}")  # fmt: skip
    return {
        "tps": float(tps.group(1)),
        "latency_ms": float(latency.group(1)) if latency else None,
        "transactions": int(done.group(1)) if done else None,
    }


def in_progress(database: str) -> int:
    import psycopg

    with psycopg.connect(**{**PG, "dbname": database}) as conn:
        row = conn.execute(
            "SELECT count(*) FROM django_idempotency_idempotencyrecord WHERE state = 'in_progress'"
        ).fetchone()
        assert row is not None
        return int(row[0])


def records(database: str) -> int:
    import psycopg

    with psycopg.connect(**{**PG, "dbname": database}) as conn:
        row = conn.execute("SELECT count(*) FROM django_idempotency_idempotencyrecord").fetchone()
        assert row is not None
        return int(row[0])


def per_server(http: Path) -> dict[str, Any] | None:
    """One gunicorn server's first-request throughput at its knee (http.json)."""
    if not http.exists():
        return None
    data = json.loads(http.read_text())
    ours = next((e for e in data.get("endpoints", []) if e["name"] == "ours"), None)
    if not ours or not ours.get("rps_at_knee"):
        return None
    return {
        "source": str(http.relative_to(ROOT)) if http.is_relative_to(ROOT) else str(http),
        "rps": ours["rps_at_knee"],
        "knee": ours["knee"],
        "workers": data["settings"]["workers"],
        "worker_class": data["settings"]["worker_class"],
        "command": data.get("command"),
    }


def markdown(results: dict[str, Any]) -> str:
    clients = results["settings"]["clients"]
    lines = [
        f"Command: `{results['command']}`; PostgreSQL {results['machine'].get('postgresql', '?')}, "
        f"durable commits (each statement its own commit, as the app sends them), simple query "
        f"mode (values inlined, as Django's psycopg binding sends them); "
        f"{results['settings']['rounds']} interleaved rounds of {results['settings']['duration_s']}"
        f" s; {results['machine'].get('cpus')} CPUs shared by pgbench and the database; the table "
        f"grew from {results['records_before']} to {results['records_after']} records, "
        f"all completed.",
        "",
        "| Script | Statements | " + " | ".join(f"{c} clients" for c in clients) + " | Knee |",
        "|---|---|" + "---|" * len(clients) + "---|",
    ]
    labels = {
        "pair": ("claim + completion", "2"),
        "request": ("a whole first request (claim, endpoint INSERT, completion)", "3"),
        "endpoint": ("the unprotected endpoint (its INSERT)", "1"),
    }
    for name in SCRIPTS:
        entry = results["scripts"][name]
        tps = " | ".join(f"{entry['tps'][str(c)]:.0f}" for c in clients)
        at = knee_label(entry["knee"], clients)
        lines.append(f"| {labels[name][0]} | {labels[name][1]} | {tps} | {at} |")
    lines += ["", "Transactions per second (median over rounds): one run of the script each."]
    servers = results.get("servers")
    if servers:
        lines += [
            "",
            f"One app server ({servers['workers']} gunicorn {servers['worker_class']} processes, "
            f"from `{servers['source']}`) serves {servers['rps']:.0f} first requests/s at its "
            f"knee ({servers['knee']} connections). The database completes "
            f"{servers['pairs']:.0f} claim + completion pairs/s at its knee "
            f"({knee_label(servers['pairs_knee'], clients)} clients), "
            f"{servers['requests']:.0f} whole first "
            f"requests/s: **{servers['per_db_pairs']:.1f}** such servers counting the "
            f"idempotency statements alone, **{servers['per_db_requests']:.1f}** counting the "
            f"endpoint's own INSERT too.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--duration", type=int, default=5, help="seconds per pgbench run")
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)), help="client counts")
    parser.add_argument(
        "--http",
        default=str(HERE / "published" / "http.json"),
        help="http_run.py's results: one app server's throughput",
    )
    parser.add_argument("--out", help="output directory (default: benchmarks/published)")
    parser.add_argument(
        "--report",
        action="store_true",
        help="measure nothing: redo the division with --http, rewrite pgbench.md",
    )
    args = parser.parse_args()
    out_dir = Path(args.out or HERE / "published")
    if args.report:
        published: dict[str, Any] = json.loads((out_dir / "pgbench.json").read_text())
        return write(published, Path(args.http), out_dir)
    if not shutil.which("pgbench"):
        raise SystemExit("pgbench is not installed (apt-get install postgresql-client)")
    import run

    clients = [int(c) for c in args.clients.split(",")]
    started = time.time()
    results: dict[str, Any] = {
        "machine": run.machine(),
        "command": " ".join(["benchmarks/pgbench.py", *sys.argv[1:]]),
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "clients": clients},
    }
    database = pg_name("pgbench")
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as tmp:
            scratch = Path(tmp)
            fresh_pg_database(database)
            log("migrating a fresh database and capturing one first request's statements")
            made = scripts(capture(database, scratch))
            paths = {}
            for name, text in made.items():
                paths[name] = scratch / f"{name}.sql"
                paths[name].write_text(text)
            results["scripts_text"] = made
            # A first run of each checks the scripts before anything is timed.
            for name in SCRIPTS:
                pgbench(database, paths[name], 1, 1)
            results["records_before"] = records(database)
            jobs = [(name, c) for name in SCRIPTS for c in clients]
            for round_no in range(args.rounds):
                random.shuffle(jobs)
                for name, c in jobs:
                    out = pgbench(database, paths[name], c, args.duration)
                    samples.setdefault((name, c), []).append(out)
                    log(f"round {round_no + 1} {name} at {c} clients: {out['tps']:.0f} tx/s")
            left = in_progress(database)
            if left:
                raise BenchFailed(f"{left} records left in progress: completions missed claims")
            results["records_after"] = records(database)
    finally:
        for name in sorted(CREATED):
            drop_pg_database(name)
    results["scripts"] = {}
    for name in SCRIPTS:
        tps = {c: statistics.median(s["tps"] for s in samples[(name, c)]) for c in clients}
        at = knee(tps)
        results["scripts"][name] = {
            "tps": {str(c): v for c, v in tps.items()},
            "per_round": {str(c): [s["tps"] for s in samples[(name, c)]] for c in clients},
            "knee": at,
            "tps_at_knee": tps[at],
            "max_tps": max(tps.values()),
        }
    results["elapsed_s"] = round(time.time() - started, 1)
    return write(results, Path(args.http), out_dir)


def write(results: dict[str, Any], http: Path, out_dir: Path) -> int:
    server = per_server(http)
    results.pop("servers", None)
    if server:
        pair = results["scripts"]["pair"]
        whole = results["scripts"]["request"]
        results["servers"] = {
            **server,
            "pairs": pair["tps_at_knee"],
            "pairs_knee": pair["knee"],
            "requests": whole["tps_at_knee"],
            "per_db_pairs": pair["tps_at_knee"] / server["rps"],
            "per_db_requests": whole["tps_at_knee"] / server["rps"],
        }
    publish(out_dir, "pgbench", results, markdown(results))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchFailed as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
