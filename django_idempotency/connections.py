"""Which connection a claim is written on.

A claim must be committed, and so visible to every other process, before the
view starts. Inside a transaction the caller opened (``ATOMIC_REQUESTS``, an
enclosing ``atomic()``), an INSERT on the request's connection would stay
invisible until the whole request commits and would vanish with a rollback.
There the claim goes through a second, autocommit connection to the same
database, kept per thread and closed like Django's own at the end of requests.
"""

from __future__ import annotations

from typing import Any

from asgiref.local import Local
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

# Thread-critical like Django's own connections: under ASGI each request runs
# in a new context, and a context-local connection would be opened per request.
_side = Local(thread_critical=True)


def in_caller_transaction(connection: BaseDatabaseWrapper) -> bool:
    """True inside a transaction that is not a test case's wrapper.

    ``TestCase`` wraps each test in atomic blocks marked ``_from_testcase``;
    they stand in for autocommit, exactly as Django's ``durable`` check treats them.
    """
    if not connection.in_atomic_block:
        return not connection.get_autocommit()
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def side_connection(alias: str) -> BaseDatabaseWrapper:
    conns: dict[str, BaseDatabaseWrapper] | None = getattr(_side, "conns", None)
    if conns is None:
        conns = _side.conns = {}
    conn = conns.get(alias)
    if conn is None:
        conn = conns[alias] = connections.create_connection(alias)
    return conn


def claim_connection(alias: str) -> tuple[BaseDatabaseWrapper, bool]:
    """The connection to claim on, and whether the caller's transaction is open.

    SQLite has one writer: a second connection would wait on the request's own
    write lock, so there the claim joins the caller's transaction (duplicates
    then wait for it; see docs/concurrency.md).
    """
    connection = connections[alias]
    if not in_caller_transaction(connection):
        return connection, False
    if connection.vendor == "sqlite":
        return connection, True
    return side_connection(alias), True


def close_side_connections(**kwargs: Any) -> None:
    """``request_finished`` receiver: the same life cycle as Django's connections."""
    for conn in (getattr(_side, "conns", None) or {}).values():
        conn.close_if_unusable_or_obsolete()


def snapshot_isolation(connection: BaseDatabaseWrapper) -> bool:
    """True for PostgreSQL at REPEATABLE READ or SERIALIZABLE, where a
    transaction does not see rows committed after its first statement.

    (MySQL/MariaDB UPDATEs read the latest committed row at any level.)
    """
    if connection.vendor != "postgresql":
        return False
    level = getattr(connection, "isolation_level", None)
    name = getattr(level, "name", None)  # psycopg 3: IsolationLevel enum
    if name is not None:
        return name in ("REPEATABLE_READ", "SERIALIZABLE")
    return level in (2, 3)  # psycopg2's ISOLATION_LEVEL_REPEATABLE_READ / _SERIALIZABLE
