"""The peers: speed in-process (worker.py, variant "peer"), correctness on a
real gunicorn with separate worker processes.

Correctness, for ours and each peer:
- views ran: N identical requests (same user, key and body) sent at once to a
  gunicorn with N sync workers, the view slowed down so that every duplicate
  arrives while the first still runs; the rows the view inserted are counted.
- cross-user replay: user A sends key K, then user B sends the same key and
  body; a leak is B receiving A's response (A's order id) instead of its own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from common import HERE, ROOT, SCENARIOS, drop_pg_database, fresh_pg_database, log, pg_name, tag

OURS = {"package": "django-idempotency", "mode": "view decorator, database"}


def slug(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (name or "ours").lower())


def peer_info(name: str | None) -> dict[str, str]:
    if name is None:
        return OURS
    from peers import PEERS

    return {"package": PEERS[name]["package"], "mode": PEERS[name]["mode"]}


def section(
    run: Any, have_pg: bool, args: Any, sections: list[str], results: dict[str, Any]
) -> None:
    if not have_pg:
        results["pending"].append("peers: PostgreSQL was not reachable")
        return
    from peers import PEERS

    names: list[str | None] = [None, *(args.peers.split(",") if args.peers else PEERS)]
    # Durable commits, as in production: how many a package needs per
    # request is part of its cost.
    sync = "on" if "on" in args.sync.split(",") else args.sync.split(",")[0]
    for name in names:
        info = peer_info(name)
        if "peers" in sections:
            results["peers"] += speed(run, name, info, sync)
        if "correctness" in sections:
            results["correctness"].append({**info, **correctness(run, name, args.concurrency)})


def speed(run: Any, name: str | None, info: dict[str, str], sync: str) -> list[dict[str, Any]]:
    database = pg_name(f"peer_{slug(name)}")
    fresh_pg_database(database)
    variant = "ours" if name is None else "peer"
    log(f"speed of {info['package']} ({info['mode']})")
    try:
        out = run.worker(
            run.config("postgresql", database, peer=name, sync=sync),
            run.plan(["plain", variant], SCENARIOS),
        )
    except RuntimeError as exc:
        log(f"{info['package']} failed: {str(exc)[-300:]}")
        return [
            {
                **info,
                "sync": sync,
                "variant": "peer",
                "scenario": "-",
                "note": f"could not be run: {str(exc)[-500:]}",
            }
        ]
    finally:
        drop_pg_database(database)
    rows = out["rows"]
    plain = next(r for r in rows if r["variant"] == "plain")
    measured = []
    for row in rows:
        if row["variant"] == "plain":
            continue
        ratio = row["median_us"] / plain["median_us"] if row.get("median_us") else None
        note = row.get("note") or _answers_note(row)
        measured.append({**row, "variant": "peer", "x_plain": ratio, "note": note})
    return tag(measured, sync=sync, **info)


def _answers_note(row: dict[str, Any]) -> str:
    statuses = row.get("statuses") or {}
    expected = {
        "first": {"201"},
        "replay": {"201"},
        "mismatch": {"422", "409", "400"},
        "in_progress": {"409"},
    }.get(row["scenario"], set())
    odd = {s: n for s, n in statuses.items() if s not in expected}
    notes = []
    if odd:
        notes.append("answered " + ", ".join(f"{s} x{n}" for s, n in odd.items()))
    runs = row.get("view_runs_per_request") or 0
    if row["scenario"] != "first" and runs > 0:
        notes.append(f"the view ran again ({runs:.0%} of requests)")
    return "; ".join(notes)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def correctness(run: Any, name: str | None, concurrency: int) -> dict[str, Any]:
    import psycopg

    database = pg_name(f"corr_{slug(name)}")
    fresh_pg_database(database)
    config = run.config("postgresql", database, peer=name, sync="on")
    label = peer_info(name)["package"]
    log(f"correctness of {label}: {concurrency} identical requests, {concurrency} gunicorn workers")
    try:
        run.worker(config, {"action": "setup"})
    except RuntimeError as exc:
        drop_pg_database(database)
        return {
            "requests": concurrency,
            "views_ran": None,
            "note": f"could not be set up: {str(exc)[-300:]}",
        }
    port = _free_port()
    gunicorn = str(Path(run.python).parent / "gunicorn")
    env = {
        **os.environ,
        "BENCH_CONFIG": json.dumps(config),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
    }
    logfile = run.scratch / f"gunicorn-{slug(name)}.log"
    with open(logfile, "w") as log_out:
        server = subprocess.Popen(
            [
                gunicorn,
                "benchsite.wsgi:application",
                "--chdir",
                str(HERE),
                "--workers",
                str(concurrency),
                "--bind",
                f"127.0.0.1:{port}",
                "--timeout",
                "120",
                "--backlog",
                "256",
            ],
            env=env,
            stdout=log_out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/ours/" if name is None else f"{base}/peer/"
    try:
        _wait_for_workers(server, logfile, base, concurrency)
        result = _race(url, concurrency)
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=database) as conn:
            row = conn.execute(
                "SELECT count(*) FROM benchsite_order WHERE note = %s", [result.pop("marker")]
            ).fetchone()
            assert row is not None
            result["views_ran"] = row[0]
        result.update(_cross_user(url))
        result["requests"] = concurrency
        return result
    except Exception as exc:
        tail = logfile.read_text()[-600:] if logfile.exists() else ""
        return {
            "requests": concurrency,
            "views_ran": None,
            "note": f"{exc.__class__.__name__}: {exc}; {tail}",
        }
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        drop_pg_database(database)


def _wait_for_workers(
    server: subprocess.Popen[bytes], logfile: Path, base: str, workers: int
) -> None:
    import requests

    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {logfile.read_text()[-800:]}")
        if logfile.read_text().count("Booting worker") >= workers:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError("gunicorn workers did not boot in 120 s")
    # Each worker imports Django after it boots; a wave of cheap requests
    # makes sure they are all ready before the race.
    while time.time() < deadline:
        try:
            if requests.get(f"{base}/plain/", timeout=5).status_code in (401, 403, 405):
                break
        except requests.RequestException:
            time.sleep(0.5)
    _parallel([lambda: requests.get(f"{base}/plain/", timeout=30) for _ in range(workers * 2)])
    time.sleep(1)


def _parallel(calls: list[Any]) -> list[Any]:
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def _race(url: str, concurrency: int) -> dict[str, Any]:
    import requests

    marker = f"race-{uuid.uuid4().hex[:12]}"
    body = json.dumps({"amount": 1, "note": marker})
    headers = {
        "X-User": "alice",
        "Idempotency-Key": str(uuid.uuid4()),
        "Content-Type": "application/json",
        "X-Slow": "2",
    }
    answers = _parallel(
        [
            lambda: requests.post(url, data=body, headers=headers, timeout=60)
            for _ in range(concurrency)
        ]
    )
    counts: dict[str, int] = {}
    for answer in answers:
        label = str(answer.status_code) if hasattr(answer, "status_code") else type(answer).__name__
        counts[label] = counts.get(label, 0) + 1
    return {"marker": marker, "answers": ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))}


def _cross_user(url: str) -> dict[str, Any]:
    import requests

    key = str(uuid.uuid4())
    body = json.dumps({"amount": 2, "note": "cross-user"})
    first = requests.post(
        url,
        data=body,
        timeout=30,
        headers={"X-User": "alice", "Idempotency-Key": key, "Content-Type": "application/json"},
    )
    second = requests.post(
        url,
        data=body,
        timeout=30,
        headers={"X-User": "bob", "Idempotency-Key": key, "Content-Type": "application/json"},
    )
    try:
        leak = second.ok and first.ok and second.json().get("id") == first.json().get("id")
    except ValueError:
        leak = None
    return {
        "cross_user_leak": leak,
        "cross_user_answers": f"{first.status_code} then {second.status_code}",
    }
