"""Physical cost of a first request on PostgreSQL: WAL bytes written and
whether the completion UPDATE is a HOT update (issue 13).

    .venv/bin/python benchmarks/physical.py [--requests 2000]

WAL bytes are those of this run's own database: of the WAL written between
two readings of ``pg_current_wal_lsn()``, pg_walinspect keeps the records
whose blocks belong to the database plus the commit records of their
transactions, so other databases of a shared server do not count, nor does
the machine's load. Full-page images (the first change of a page after a
checkpoint, whose timing depends on the whole server's WAL volume) are
printed apart. Printed: bytes per request for the unprotected view, the floor
(the least an idempotency layer can write: benchsite's ``floor`` view) and
ours, ``n_tup_hot_upd / n_tup_upd`` of the records table, and its heap size
per record.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import drop_pg_database, fresh_pg_database, pg_name  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--drop-index", action="append", default=[], help="what-if: without it")
    parser.add_argument("--fillfactor", type=int, help="what-if: the records table's fill factor")
    args = parser.parse_args()
    name = pg_name("physical")
    fresh_pg_database(name)
    os.environ["BENCH_CONFIG"] = json.dumps({"db": "postgresql", "name": name, "sync": "on"})
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchsite.settings"
    try:
        return _measure(args.requests, args.drop_index, args.fillfactor)
    finally:
        from django.db import connections

        connections.close_all()
        drop_pg_database(name)


def _measure(n: int, drop: list[str], fillfactor: int | None) -> int:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from django_idempotency.models import IdempotencyRecord

    call_command("migrate", run_syncdb=True, verbosity=0)
    table = IdempotencyRecord._meta.db_table
    get_user_model().objects.create(username="bench")
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        cursor.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        database_oid = int(cursor.fetchone()[0])
        for index in drop:
            cursor.execute(f'DROP INDEX "{index}"')
        if fillfactor:
            cursor.execute(f"ALTER TABLE {table} SET (fillfactor = {int(fillfactor)})")
    client = Client()

    def lsn() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            return str(cursor.fetchone()[0])

    def own_wal(start: str, end: str) -> tuple[int, int]:
        """(bytes, of which full-page images) of this database's WAL records."""
        with connection.cursor() as cursor:
            cursor.execute(
                """
                WITH r AS (SELECT * FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)),
                mine AS (SELECT * FROM r WHERE block_ref LIKE %s)
                SELECT coalesce(sum(record_length), 0), coalesce(sum(fpi_length), 0)
                FROM (
                    SELECT record_length, fpi_length FROM mine
                    UNION ALL
                    SELECT record_length, fpi_length FROM r
                    WHERE resource_manager = 'Transaction'
                      AND xid IN (SELECT xid FROM mine WHERE xid <> 0)
                ) AS ours
                """,
                [start, end, f"%rel %/{database_oid}/%"],
            )
            total, images = cursor.fetchone()
            return int(total), int(images)

    images: dict[str, float] = {}

    def per_request(path: str, keyed: bool) -> float:
        for _ in range(50):  # warm: connections, caches, first pages
            _send(client, path, keyed)
        start = lsn()
        for _ in range(n):
            _send(client, path, keyed)
        total, fpi = own_wal(start, lsn())
        images[path] = fpi / n
        return total / n

    results = {
        "plain": per_request("/plain/", keyed=False),
        "floor": per_request("/floor/", keyed=True),
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_reset()")
    results["ours"] = per_request("/ours/", keyed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = %s",
            [table],
        )
        updates, hot = cursor.fetchone()
        cursor.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
            [table],
        )
        indexes = sorted(row[0] for row in cursor.fetchall())
        cursor.execute(
            f"SELECT pg_relation_size(%s::regclass), count(*), "
            f"(SELECT reloptions FROM pg_class WHERE oid = %s::regclass) FROM {table}",
            [table, table],
        )
        heap_bytes, records, options = cursor.fetchone()
    plain = results["plain"]
    print(f"WAL bytes per request ({n} requests each, synchronous_commit on):")
    for variant, wal in results.items():
        added = "" if variant == "plain" else f", adds {wal - plain:,.0f}"
        path = f"/{variant}/"
        print(f"  {variant:6} {wal:8,.0f}{added} (full-page images {images[path]:,.0f})")
    floor_added, ours_added = results["floor"] - plain, results["ours"] - plain
    print(f"  ours adds {ours_added / floor_added:.2f}x what the floor adds")
    print(f"completion UPDATEs that were HOT: {hot} of {updates}")
    print(f"indexes of {table}: {', '.join(indexes)}")
    print(
        f"heap: {heap_bytes / records:,.0f} bytes per record ({records} records, "
        f"options {options or 'none'})"
    )
    return 0


def _send(client: object, path: str, keyed: bool) -> None:
    headers = {"HTTP_X_USER": "bench"}
    if keyed:
        headers["HTTP_IDEMPOTENCY_KEY"] = str(uuid.uuid4())
    response = client.post(  # type: ignore[attr-defined]
        path, {"amount": 1, "note": "coffee"}, content_type="application/json", **headers
    )
    if response.status_code != 201:
        raise RuntimeError(f"{path} answered {response.status_code}: {response.content[:200]!r}")


if __name__ == "__main__":
    sys.exit(main())
