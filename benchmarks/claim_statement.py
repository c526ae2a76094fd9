"""What the claim statement costs on PostgreSQL, and what other forms of it
would cost (issue 13: the first request's overhead against the floor's).

    .venv/bin/python benchmarks/claim_statement.py [--rounds 5] [--n 1000]

Each form runs on one connection of a fresh database, interleaved with the
others in every round, and is reported as its median time per statement and
as a ratio to the floor's INSERT (one narrow row, two indexes) of the same
round: this machine is shared, so only the ratios carry over. The forms:

- ``shipped``: what the engine sends (``store.insert_or_fetch``): a call of
  the PL/pgSQL function of migration 0005 (version 2), which reads the
  existing row first and only then tries INSERT ... ON CONFLICT DO NOTHING,
  its statements planned once per server connection (so even behind a
  transaction pooler);
- ``function v1``: the function of migration 0004, which tries the INSERT
  first and reads only when it did nothing (shipped before 0005);
- ``statement fallback``: the INSERT and the SELECT in one CTE, planned on
  every call: what the engine sends where the function is missing (a
  database not yet migrated to 0004);
- ``upsert``: ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` alone; a replay
  then needs the SELECT as a second statement.

``first`` claims a new key; ``replay`` sends a key that exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import drop_pg_database, fresh_pg_database, pg_name  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=1000, help="statements per form and round")
    args = parser.parse_args()
    name = pg_name("claim")
    fresh_pg_database(name)
    os.environ["BENCH_CONFIG"] = json.dumps({"db": "postgresql", "name": name, "sync": "on"})
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchsite.settings"
    try:
        return _measure(args.rounds, args.n)
    finally:
        from django.db import connections

        connections.close_all()
        drop_pg_database(name)


def _measure(rounds: int, n: int) -> int:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from django_idempotency import store

    call_command("migrate", run_syncdb=True, verbosity=0)
    if store.claim_function(connection) != store._CLAIM_FUNCTIONS[0]:
        raise SystemExit("the claim function of migration 0005 is missing")
    d = store.Dialect(connection)
    sql = store._claim_statements(d, 1)

    def new() -> store.NewRecord:
        key = uuid.uuid4().hex
        digest = hashlib.sha256(key.encode()).hexdigest()
        return store.NewRecord(
            lookup_hash=digest,
            key=key,
            scope="user:1",
            endpoint="POST /payments/",
            method="POST",
            path="/payments/",
            fingerprints=(digest,),
            request_id=uuid.uuid4().hex,
            ttl=timedelta(days=1),
            lock_timeout=timedelta(seconds=60),
        )

    existing = new()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, k varchar(255) UNIQUE)")
    store.insert_or_fetch(connection, existing)

    def run(statements: list[tuple[str, list[Any]]]) -> None:
        with connection.cursor() as cursor:
            for text, params in statements:
                cursor.execute(text, params)
                cursor.fetchall()

    def shipped(record: store.NewRecord) -> None:
        store.insert_or_fetch(connection, record)

    def function_v1(record: store.NewRecord) -> None:
        # Through the engine's own code, as a database migrated to 0004 only.
        chosen = store._CLAIM_FUNCTION_CHOSEN
        chosen[connection.alias] = "django_idempotency_claim_v1"
        try:
            store.insert_or_fetch(connection, record)
        finally:
            chosen[connection.alias] = store._CLAIM_FUNCTIONS[0]

    def statement(record: store.NewRecord) -> None:
        params = store._insert_params(d, record, store.new_token())
        fps = record.fingerprints
        run([(sql.claim_or_fetch, [*params, *fps, *fps, record.lookup_hash])])

    def upsert(record: store.NewRecord) -> None:
        params = store._insert_params(d, record, store.new_token())
        with connection.cursor() as cursor:
            cursor.execute(sql.upsert_returning, params)
            if not cursor.fetchall():
                fps = record.fingerprints
                cursor.execute(sql.select, [*fps, *fps, record.lookup_hash])
                cursor.fetchall()

    def floor() -> None:
        run([("INSERT INTO bench_floor (k) VALUES (%s) RETURNING id", [uuid.uuid4().hex])])

    def first(form: Callable[[store.NewRecord], None]) -> Callable[[], None]:
        return lambda: form(new())

    def replay(form: Callable[[store.NewRecord], None]) -> Callable[[], None]:
        return lambda: form(existing)

    forms: dict[str, Callable[[], None]] = {"floor INSERT": floor}
    for label, claim in (
        ("shipped", shipped),
        ("function v1", function_v1),
        ("statement fallback", statement),
        ("upsert", upsert),
    ):
        forms[f"{label}, first"] = first(claim)
        forms[f"{label}, replay"] = replay(claim)

    for sync in ("on", "off"):
        with connection.cursor() as cursor:
            cursor.execute(f"SET synchronous_commit = {sync}")
        ratios: dict[str, list[float]] = {label: [] for label in forms}
        medians: dict[str, list[float]] = {label: [] for label in forms}
        for _ in range(rounds):
            round_medians = {}
            for label, form in forms.items():
                samples = []
                for _ in range(n):
                    started = time.perf_counter()
                    form()
                    samples.append(time.perf_counter() - started)
                round_medians[label] = statistics.median(samples)
            for label, value in round_medians.items():
                medians[label].append(value * 1e6)
                ratios[label].append(value / round_medians["floor INSERT"])
        print(f"\nsynchronous_commit = {sync}: {rounds} rounds of {n} statements per form")
        print("| form | median µs | x the floor's INSERT (median of rounds) |")
        print("|---|---|---|")
        for label in forms:
            print(
                f"| {label} | {statistics.median(medians[label]):.0f} "
                f"| {statistics.median(ratios[label]):.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
