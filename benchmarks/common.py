"""What the benchmark's driver (run.py) and its sections (scale.py,
peers_run.py) share: paths, the scenario names, logging and the scratch
PostgreSQL databases."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCENARIOS = ["none", "first", "replay", "mismatch", "in_progress"]
PG: dict[str, Any] = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
MARIADB: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pg_admin() -> Any:
    import psycopg

    return psycopg.connect(**PG, autocommit=True, connect_timeout=3)


def pg_reachable() -> bool:
    try:
        with pg_admin() as conn:
            conn.execute("SELECT 1")
        return True
    except Exception as exc:
        log(f"PostgreSQL not reachable ({exc.__class__.__name__}); skipping it")
        return False


#: Databases this run created; names carry the pid so that two runs (or
#: another helper's benchmark) on the same server never drop each other's.
CREATED: set[str] = set()


def pg_name(purpose: str) -> str:
    return f"bench_idem_{os.getpid()}_{purpose}"


def fresh_pg_database(name: str) -> None:
    CREATED.add(name)
    with pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_pg_database(name: str) -> None:
    with pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    CREATED.discard(name)


def tag(rows: list[dict[str, Any]], **labels: Any) -> list[dict[str, Any]]:
    return [{**labels, **row} for row in rows]


def mariadb_admin() -> Any:
    import MySQLdb  # type: ignore[import-untyped]

    return MySQLdb.connect(**MARIADB, connect_timeout=3)


def mariadb_reachable() -> bool:
    try:
        mariadb_admin().close()
        return True
    except Exception as exc:
        log(f"MariaDB not reachable ({exc.__class__.__name__}); skipping it")
        return False


#: MariaDB databases this run created (dropped at the end, like CREATED's).
CREATED_MARIADB: set[str] = set()


def fresh_mariadb_database(name: str) -> None:
    CREATED_MARIADB.add(name)
    conn = mariadb_admin()
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()


def drop_mariadb_database(name: str) -> None:
    conn = mariadb_admin()
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()
    CREATED_MARIADB.discard(name)


def fresh_database(db: str, purpose: str) -> str | None:
    """A new scratch database for ``db`` (its name), or None for SQLite (the
    runner makes a file)."""
    if db == "postgresql":
        name = pg_name(purpose)
        fresh_pg_database(name)
        return name
    if db == "mysql":
        name = pg_name(purpose)
        fresh_mariadb_database(name)
        return name
    return None


def publish(out_dir: Path, stem: str, results: dict[str, Any], table: str) -> None:
    """Write ``<stem>.json`` (the raw figures) and ``<stem>.md`` (their table)
    to ``out_dir``, and print the table."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=1))
    (out_dir / f"{stem}.md").write_text(table)
    print(table)
    log(f"wrote {out_dir}/{stem}.json, {stem}.md")
