"""Scale and purge, on PostgreSQL, with records generated in bulk
(generate_series), never through requests: 10 million requests would take
hours; one INSERT ... SELECT takes minutes.

Scale: the same measurement at each table size, normalised by the plain
endpoint of the same process. Purge: the management command deletes a table
of expired records while another process keeps serving first requests, whose
latencies are recorded with their timestamps.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from common import HERE, ROOT, drop_pg_database, fresh_pg_database, log, pg_name, tag

TABLE = "django_idempotency_idempotencyrecord"
BATCH = 1_000_000


def _connect(database: str) -> Any:
    import psycopg

    return psycopg.connect(host="127.0.0.1", user="postgres", dbname=database, autocommit=True)


def bulk_insert(database: str, start: int, stop: int, expired: bool = False) -> float:
    """Rows start+1..stop, completed, with unique lookup hashes. Returns seconds."""
    expires = "now() - interval '1 day'" if expired else "now() + interval '1 day'"
    began = time.monotonic()
    with _connect(database) as conn:
        for low in range(start, stop, BATCH):
            high = min(stop, low + BATCH)
            conn.execute(
                f"""
                INSERT INTO {TABLE} (
                    lookup_hash, key, scope, endpoint, method, path, fingerprint, state,
                    token, request_id, response_headers, created_at, locked_until,
                    expires_at, completed_at, response_status, response_body
                )
                SELECT encode(sha256(('bulk:' || g)::bytea), 'hex'), 'bulk-' || g,
                       'user:' || (g %% 1000), 'POST ours/', 'POST', '/ours/',
                       encode(sha256(('fp:' || g)::bytea), 'hex'), 'completed',
                       md5(g::text), 'req-' || g, '[["Content-Type", "application/json"]]',
                       now() - interval '2 days', now() - interval '2 days', {expires},
                       now() - interval '2 days', 201,
                       convert_to('{{"id": ' || g || ', "amount": 1000, "note": "bench"}}', 'UTF8')
                FROM generate_series(%s::bigint, %s::bigint) AS g
                """,
                [low + 1, high],
            )
            log(f"  {high:,} records in the table ({time.monotonic() - began:.0f} s)")
        conn.execute(f"VACUUM ANALYZE {TABLE}")
    return time.monotonic() - began


def section(run: Any, have_pg: bool, args: Any, results: dict[str, Any]) -> None:
    if not have_pg:
        results["pending"].append("scale: PostgreSQL was not reachable")
        return
    sizes = [0, *sorted(int(n) for n in args.scale_rows.split(",") if n)]
    # Table size changes index depth and cache misses, not disk flushes: with
    # flushes off the figures show the first without the noise of the second.
    sync = "off" if "off" in args.sync.split(",") else args.sync.split(",")[0]
    database = pg_name("scale")
    fresh_pg_database(database)
    config = run.config("postgresql", database, sync=sync)
    run.worker(config, {"action": "setup"})
    current = 0
    try:
        for size in sizes:
            if size > current:
                log(f"scale: generating {size - current:,} records")
                seconds = bulk_insert(database, current, size)
                results.setdefault("scale_generation", []).append(
                    {"rows": size, "added": size - current, "seconds": round(seconds, 1)}
                )
                current = size
            results["scale"] += _measure(run, config, size, sync, "before" if size == 0 else "")
        # The empty table once more at the end: if the machine got faster or
        # slower meanwhile, the two empty-table figures show by how much.
        with _connect(database) as conn:
            conn.execute(f"TRUNCATE {TABLE}")
            conn.execute(f"VACUUM ANALYZE {TABLE}")
        results["scale"] += _measure(run, config, 0, sync, "after")
    finally:
        drop_pg_database(database)


def _measure(
    run: Any, config: dict[str, Any], size: int, sync: str, phase: str
) -> list[dict[str, Any]]:
    log(f"scale: measuring with {size:,} records in the table {phase}".rstrip())
    # Twice the rounds of the other sections: the differences looked for are small.
    plan = run.plan(["plain", "ours"], ["none", "first", "replay", "mismatch"])
    plan["rounds"] *= 2
    rows = run.worker(config, plan)["rows"]
    plain = next(r for r in rows if r["variant"] == "plain")
    for row in rows:
        row["x_plain"] = row["median_us"] / plain["median_us"]
    return tag(rows, table_rows=size, sync=sync, phase=phase)


def purge_section(run: Any, have_pg: bool, args: Any, results: dict[str, Any]) -> None:
    if not have_pg:
        results["pending"].append("purge: PostgreSQL was not reachable")
        return
    if not (ROOT / "django_idempotency" / "purge.py").exists():
        results["pending"].append("purge: django_idempotency/purge.py does not exist yet")
        return
    rows = args.purge_rows
    database = pg_name("purge")
    fresh_pg_database(database)
    config = run.config("postgresql", database, sync=args.sync.split(",")[0])
    try:
        run.worker(config, {"action": "setup"})
        log(f"purge: generating {rows:,} expired records")
        bulk_insert(database, 0, rows, expired=True)
        results["purge"].append(_purge_while_serving(run, config, rows))
    finally:
        drop_pg_database(database)


def _purge_while_serving(run: Any, config: dict[str, Any], rows: int) -> dict[str, Any]:
    stop = run.scratch / "serve.stop"
    ready = run.scratch / "serve.ready"
    out = run.scratch / "serve.json"
    for path in (stop, ready, out):
        path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "BENCH_CONFIG": json.dumps(config),
        "BENCH_PLAN": json.dumps({"action": "serve", "stop": str(stop), "ready": str(ready)}),
        "BENCH_OUT": str(out),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
        "DJANGO_SETTINGS_MODULE": "benchsite.settings",
    }
    errors_path = run.scratch / "serve.err"
    errors_file = open(errors_path, "w")  # noqa: SIM115 - closed in the finally below
    server = subprocess.Popen([run.python, str(HERE / "worker.py")], env=env, stderr=errors_file)
    try:
        deadline = time.time() + 60
        while not ready.exists():
            if server.poll() is not None or time.time() > deadline:
                errors = errors_path.read_text()[-2000:]
                raise RuntimeError(f"the serving worker did not start: {errors}")
            time.sleep(0.2)
        time.sleep(3)  # latencies before the purge, for comparison
        log(f"purge: purge_idempotency_records on {rows:,} expired records while serving")
        began = time.time()
        command = subprocess.run(
            [run.python, "-m", "django", "purge_idempotency_records"],
            env={**env, "BENCH_PLAN": "{}"},
            cwd=str(HERE),
            capture_output=True,
            text=True,
        )
        ended = time.time()
        time.sleep(1)
    finally:
        stop.touch()
        server.wait(60)
        errors_file.close()
    if command.returncode != 0:
        raise RuntimeError(f"purge_idempotency_records failed: {command.stderr[-2000:]}")
    if not out.exists():
        raise RuntimeError(f"the serving worker failed: {errors_path.read_text()[-2000:]}")
    served = json.loads(out.read_text())["samples"]
    during = sorted(lat for at, lat in served if began <= at <= ended)
    before = sorted(lat for at, lat in served if at < began)
    seconds = ended - began
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": rows / seconds,
        "requests": len(during),
        "worst_ms": during[-1] / 1e6 if during else None,
        "median_ms": during[len(during) // 2] / 1e6 if during else None,
        "median_before_ms": before[len(before) // 2] / 1e6 if before else None,
        "worst_before_ms": before[-1] / 1e6 if before else None,
        "note": command.stdout.strip().splitlines()[-1][:200] if command.stdout.strip() else "",
    }
