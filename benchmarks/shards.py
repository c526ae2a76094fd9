"""Throughput of the records tier with 1, 2 and 4 shards (issue 13).

    .venv/bin/python benchmarks/shards.py [--shards 1,2,4] [--clients 16]
        [--seconds 5] [--rounds 3] [--instances]

Each client is a process that sends first requests' record statements as
fast as it can: a fresh scope and key, the app's claim (``store.insert_or_fetch``)
on the shard ``IDEMPOTENCY["DATABASE"]`` picks for the scope, then the app's
completion (``store.complete``). That is all a first request asks of the
records databases, with the app's own routing and SQL; the view and HTTP are
left out, so that the figure is the records tier's and not the app servers'.
Durable commits (PostgreSQL's default ``synchronous_commit = on``).

Shards are databases on the PostgreSQL at 127.0.0.1:5432, or with
``--instances`` separate PostgreSQL clusters (``initdb`` into a temporary
directory, one server process each, on ports from 5441): separate write-ahead
logs, as separate primaries would have, but on this machine's same CPUs and
disk. Variants run interleaved, in a shuffled order per round; the result is
each variant's median over the rounds and its ratio to one shard in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import PG, drop_pg_database, fresh_pg_database, log, pg_name  # noqa: E402

FIRST_PORT = 5441


def database_settings(shards: list[dict[str, Any]]) -> dict[str, Any]:
    databases = {
        f"shard_{i}": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": s["host"],
            "PORT": s["port"],
            "USER": s["user"],
            "NAME": s["dbname"],
            "CONN_MAX_AGE": None,
        }
        for i, s in enumerate(shards)
    }
    return {"default": databases["shard_0"], **databases}


def configure(shards: list[dict[str, Any]]) -> None:
    import django
    from django.conf import settings

    databases = database_settings(shards)
    settings.configure(
        DATABASES=databases,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework",
            "django_idempotency",
        ],
        IDEMPOTENCY={"DATABASE": [alias for alias in databases if alias != "default"]},
        USE_TZ=True,
        SECRET_KEY="bench",
    )
    django.setup()


def _migrate(shards: list[dict[str, Any]]) -> None:
    configure(shards)
    from django.core.management import call_command

    for i in range(len(shards)):
        call_command("migrate", "django_idempotency", database=f"shard_{i}", verbosity=0)


def migrate(shards: list[dict[str, Any]]) -> None:
    """In a child process: Django is configured once per process."""
    process = multiprocessing.get_context("spawn").Process(target=_migrate, args=(shards,))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError("migrating the shards failed")


def client(shards: list[dict[str, Any]], start: Any, seconds: float, counts: Any, i: int) -> None:
    configure(shards)
    from django.db import connections

    from django_idempotency import conf, store

    app = conf.get_settings()
    response = store.StoredResponse(
        status=201,
        headers=[("Content-Type", "application/json")],
        body=b'{"id": 1, "amount": 10}',
        request_id="",
    )
    # Connect before the start, so that connecting is not measured.
    for alias in app.databases:
        connections[alias].ensure_connection()
    start.wait()
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        scope = f"user:{uuid.uuid4().int % 10**9}"
        key = uuid.uuid4().hex
        new = store.NewRecord(
            lookup_hash=uuid.uuid4().hex + uuid.uuid4().hex,
            key=key,
            scope=scope,
            endpoint="POST orders/",
            method="POST",
            path="/orders/",
            fingerprints=(uuid.uuid4().hex * 2,),
            request_id=key[:16],
            ttl=timedelta(hours=24),
            lock_timeout=timedelta(seconds=60),
        )
        connection = connections[app.database_for(scope)]
        claim = store.insert_or_fetch(connection, new)
        assert isinstance(claim, store.Claim), claim
        assert store.complete(connection, claim, response)
        done += 1
    counts[i] = done


def measure(shards: list[dict[str, Any]], clients: int, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(clients + 1)
    counts = context.Array("l", clients)
    processes = [
        context.Process(target=client, args=(shards, start, seconds, counts, i))
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    start.wait()
    began = time.monotonic()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"a client exited with {process.exitcode}")
    elapsed = max(seconds, time.monotonic() - began)
    done: int = sum(counts[i] for i in range(clients))
    return done / elapsed


class Instances:
    """Separate PostgreSQL clusters, as stand-ins for separate primaries."""

    def __init__(self, count: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bench-shards-"))
        shutil.chown(self.root, "postgres")
        self.bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]).parent
        self.ports = [FIRST_PORT + i for i in range(count)]

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(
            ["su", "postgres", "-c", " ".join(command)],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> list[dict[str, Any]]:
        shards = []
        for port in self.ports:
            data = self.root / str(port)
            self._as_postgres(
                str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"
            )
            self._as_postgres(
                str(self.bin / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(data / "log"),
                "-w",
                "-o",
                f"'-p {port} -k {self.root} -c listen_addresses=127.0.0.1'",
                "start",
            )
            shards.append(
                {"host": "127.0.0.1", "port": port, "user": "postgres", "dbname": "postgres"}
            )
        return shards

    def stop(self) -> None:
        for port in self.ports:
            data = self.root / str(port)
            if data.exists():
                subprocess.run(
                    ["su", "postgres", "-c", f"{self.bin / 'pg_ctl'} -D {data} -m fast stop"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
        shutil.rmtree(self.root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="1,2,4", help="shard counts to compare")
    parser.add_argument("--clients", type=int, default=16, help="client processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instances", action="store_true", help="a PostgreSQL cluster per shard")
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.shards.split(",")})
    most = max(counts)

    instances: Instances | None = None
    names: list[str] = []
    try:
        if args.instances:
            instances = Instances(most)
            all_shards = instances.start()
        else:
            names = [pg_name(f"shard{i}") for i in range(most)]
            for name in names:
                fresh_pg_database(name)
            all_shards = [{**PG, "dbname": name} for name in names]
        migrate(all_shards)
        rates: dict[int, list[float]] = {n: [] for n in counts}
        for round_ in range(args.rounds):
            order = counts[:]
            random.shuffle(order)
            for n in order:
                rate = measure(all_shards[:n], args.clients, args.seconds)
                rates[n].append(rate)
                log(f"round {round_ + 1}: {n} shard(s): {rate:,.0f} first requests/s")
        base = statistics.median(rates[counts[0]])
        where = "separate PostgreSQL clusters" if args.instances else "databases on one server"
        print(f"\nshards: {where}; {args.clients} clients; load average {os.getloadavg()[0]:.1f}")
        print("| shards | first requests/s (median) | x one shard |")
        print("|---|---|---|")
        for n in counts:
            median = statistics.median(rates[n])
            print(f"| {n} | {median:,.0f} | {median / base:.2f}x |")
        return 0
    finally:
        if instances is not None:
            instances.stop()
        for name in names:
            drop_pg_database(name)


if __name__ == "__main__":
    sys.exit(main())
