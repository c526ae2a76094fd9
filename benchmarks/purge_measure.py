"""How long purging a million expired records takes on PostgreSQL, and what
requests served meanwhile see.

    PGHOST=127.0.0.1 PGUSER=postgres .venv/bin/python benchmarks/purge_measure.py
    .venv/bin/python benchmarks/purge_measure.py --rows 1000000 --live 100000 --batch-size 5000

It creates (and afterwards drops) its own database, fills it in bulk with
generate_series (never through requests), then runs the
``purge_idempotency_records`` command while a thread keeps sending first
requests (a claim and a stored response each) to the test project's
``/function/`` view. It prints the purge's duration and the request latencies
before and during the purge. The command runs in a process of its own, as
from cron, so the requests meet it only in the database; ``--in-process``
runs it in the requests' process instead, where it also takes their GIL.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
TABLE = "django_idempotency_idempotencyrecord"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="expired records")
    parser.add_argument("--live", type=int, default=100_000, help="live records kept")
    parser.add_argument("--abandoned", type=int, default=1_000, help="abandoned claims")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the command's")
    parser.add_argument("--pause", type=float, default=None, help="the command's --pause")
    parser.add_argument("--database", default="idempotency_purge_measure")
    parser.add_argument(
        "--in-process", action="store_true", help="run the command in the requests' process"
    )
    parser.add_argument("--before", type=float, default=5.0, help="seconds measured before")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    return parser.parse_args()


PURGE_IN_ITS_PROCESS = """
import sys, time
import django
django.setup()
from django.core.management import call_command
began = time.monotonic()
call_command("purge_idempotency_records", *sys.argv[1:])
print(began, time.monotonic())
"""


def admin_connection() -> psycopg.Connection[Any]:

    return psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        password=os.environ.get("PGPASSWORD", ""),
        dbname="postgres",
        autocommit=True,
    )


def fill(rows: int, live: int, abandoned: int) -> float:
    from django.db import connection

    began = time.monotonic()
    # Rows look like real ones: a UUID-like key, a JSON body of ~120 bytes, two
    # headers. Expired ones expired one to three days ago, in insertion order.
    insert = f"""
        INSERT INTO {TABLE} (
            lookup_hash, key, scope, endpoint, method, path, fingerprint, state, token,
            request_id, response_headers, created_at, locked_until, expires_at,
            completed_at, response_status, response_body
        )
        SELECT encode(sha256((%s || g)::bytea), 'hex'), md5(%s || g)::uuid::text,
               'user:' || (g %% 5000), 'POST payments/', 'POST', '/payments/',
               encode(sha256(('fp' || g)::bytea), 'hex'), %s, md5('t' || g), md5('r' || g),
               '[["Content-Type", "application/json"], ["Location", "/payments/' || g || '/"]]',
               now() - %s * interval '1 second' + g * interval '100 ms',
               now() - %s * interval '1 second' + g * interval '100 ms' + interval '1 minute',
               now() - %s * interval '1 second' + g * interval '100 ms' + interval '1 day',
               CASE WHEN %s = 'completed' THEN now() END, CASE WHEN %s = 'completed' THEN 201 END,
               CASE WHEN %s = 'completed' THEN convert_to('{{"id": ' || g
                   || ', "amount": 4200, "currency": "eur", "status": "succeeded", '
                   || '"reference": "order-' || g || '"}}', 'UTF8') END
        FROM generate_series(1, %s) AS g
    """
    expired_age = 3 * 86400  # the newest expired row is ~0.2 days past expiry
    live_age = 3600
    abandoned_age = 2 * 86400  # claims whose worker died, expired a day ago
    with connection.cursor() as cursor:
        for prefix, state, age, count in (
            ("e", "completed", expired_age, rows),
            ("l", "completed", live_age, live),
            ("a", "in_progress", abandoned_age, abandoned),
        ):
            cursor.execute(
                insert, [prefix, prefix, state, age, age, age, state, state, state, count]
            )
        cursor.execute(f"VACUUM ANALYZE {TABLE}")
    return time.monotonic() - began


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> int:
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ["IDEMPOTENCY_TEST_DB"] = "postgresql"
    os.environ["PGDATABASE"] = args.database
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    with admin_connection() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.database}"')
        admin.execute(f'CREATE DATABASE "{args.database}"')

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client

    from django_idempotency.models import IdempotencyRecord
    from tests.factories import CLIENT_API_KEY

    try:
        call_command("migrate", verbosity=0)
        print(f"Filling: {args.rows:,} expired, {args.live:,} live, {args.abandoned:,} abandoned")
        print(f"  filled in {fill(args.rows, args.live, args.abandoned):.1f}s")

        latencies: list[tuple[float, float]] = []  # (wall clock, seconds)
        failures: list[str] = []
        stop = threading.Event()

        def serve() -> None:
            client = Client()
            n = 0
            try:
                while not stop.is_set():
                    n += 1
                    began = time.monotonic()
                    response = client.post(
                        "/function/",
                        {"amount": n},
                        content_type="application/json",
                        HTTP_IDEMPOTENCY_KEY=f"during-purge-{n}",
                        # A known client: keys of anonymous ones are refused.
                        HTTP_X_API_KEY=CLIENT_API_KEY,
                    )
                    latencies.append((time.monotonic(), time.monotonic() - began))
                    if response.status_code != 201:
                        failures.append(f"{response.status_code}: {response.content[:200]!r}")
            finally:
                connections.close_all()

        server = threading.Thread(target=serve)
        server.start()
        time.sleep(args.before)  # latencies before the purge, for comparison
        command = ["-v", "1"]
        if args.batch_size:
            command += ["--batch-size", str(args.batch_size)]
        if args.pause is not None:
            command += ["--pause", str(args.pause)]
        out = StringIO()
        if args.in_process:
            purge_began = time.monotonic()
            call_command("purge_idempotency_records", *command, stdout=out)
            purge_ended = time.monotonic()
        else:
            # CLOCK_MONOTONIC is the machine's, so the command's own readings
            # bound the purge, without its process's start-up.
            finished = subprocess.run(
                [sys.executable, "-c", PURGE_IN_ITS_PROCESS, *command],
                cwd=ROOT,
                env=os.environ,
                check=True,
                capture_output=True,
                text=True,
            )
            *lines, bounds = finished.stdout.strip().splitlines()
            out.write("\n".join(lines))
            purge_began, purge_ended = (float(v) for v in bounds.split())
        time.sleep(1)
        stop.set()
        server.join()

        before = [s for at, s in latencies[20:] if at < purge_began]  # after warm-up
        during = [s for at, s in latencies if purge_began <= at <= purge_ended]
        print(f"Command: manage.py purge_idempotency_records {' '.join(command)}")
        print(f"  {out.getvalue().strip()}")
        seconds = purge_ended - purge_began
        deleted = int(re.search(r"Deleted (\d+) ", out.getvalue()).group(1))  # type: ignore[union-attr]
        print(f"  {deleted:,} rows in {seconds:.1f}s = {deleted / seconds:,.0f} rows/s")
        remaining = IdempotencyRecord.objects.count()
        print(f"  records left: {remaining:,} (the live ones plus those created meanwhile)")
        for label, values in (("before", before), ("during", during)):
            if values:
                print(
                    f"Requests {label} the purge: {len(values):,}, median "
                    f"{statistics.median(values) * 1000:.1f} ms, p99 "
                    f"{percentile(values, 0.99) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"
                )
        if before and during:
            rise = percentile(during, 0.99) / percentile(before, 0.99)
            print(f"p99 during / p99 before: {rise:.2f}x")
        if failures:
            print(f"FAILED requests: {len(failures)}, first: {failures[0]}")
            return 1
        return 0
    finally:
        connections.close_all()
        if not args.keep:
            with admin_connection() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
