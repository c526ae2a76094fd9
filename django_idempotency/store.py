"""The record table on the hot path, in raw SQL.

Every time comparison uses the database's clock, never the app server's: a
server whose clock runs ahead must not see a live claim as abandoned.

Statements per request (transaction control not counted):
- first request: one INSERT (claim) and one UPDATE (store);
- replay, mismatch, in progress: one statement on PostgreSQL (INSERT ... ON
  CONFLICT DO NOTHING and the SELECT of the existing row in one CTE), two on
  SQLite and MySQL/MariaDB (the INSERT, then the SELECT).

The claim learns the record's ``expires_at`` from its own statement where the
database can return it (PostgreSQL; SQLite 3.35+ and MariaDB 10.5+ with
``RETURNING``), so advertising the expiry costs no statement.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, ProgrammingError
from django.db.backends.base.base import BaseDatabaseWrapper

from . import conf
from .encryption import Unreadable, open_record, seal_record
from .exceptions import RecordUnreadable
from .models import IdempotencyRecord, State
from .waiting import CHANNEL

logger = logging.getLogger("django_idempotency")

_MYSQL_DUPLICATE_ENTRY = 1062
#: MySQL/MariaDB refusing a value its column cannot hold: a character the
#: column's character set lacks (1366; a latin1 table and a path in Cyrillic)
#: or, in strict mode, a value too long (1406).
_MYSQL_UNRECORDABLE = frozenset({1366, 1406})
_UNDEFINED_FUNCTION = "42883"


@dataclass(frozen=True)
class NewRecord:
    lookup_hash: str
    key: str
    scope: str
    endpoint: str
    method: str
    path: str
    #: The request's fingerprint under each secret key, the current one first
    #: (written); a record written under any of them is the same request.
    fingerprints: tuple[str, ...]
    request_id: str
    ttl: timedelta
    lock_timeout: timedelta

    @property
    def fingerprint(self) -> str:
        return self.fingerprints[0]


@dataclass(frozen=True)
class Claim:
    """The right to run the view, proven by ``token`` on every later write."""

    record_id: int
    token: str
    #: False for a takeover of an abandoned claim, whose expiry was set by the
    #: first request: callers cannot derive it from their own start time.
    fresh: bool = True
    #: Binds a sealed response to this record (ENCRYPTION_KEYS).
    lookup_hash: str = ""
    #: The record's ``expires_at``: the database's value, or where no statement
    #: returns it a clock read just before the statement plus ``ttl`` (MySQL:
    #: this server's clock; the renewal of an expired record: the database's,
    #: from the row just read), so not later than the real one while clocks agree.
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Existing:
    record_id: int
    state: str
    same_request: bool
    token: str
    request_id: str
    status: int | None
    headers: str
    body: bytes | None
    expired: bool
    abandoned: bool
    #: Opens a sealed response (ENCRYPTION_KEYS).
    lookup_hash: str = ""
    expires_at: datetime | None = None
    #: The database's clock when the row was read.
    now: datetime | None = None


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    request_id: str
    #: When the record expires (None: unknown, e.g. an entry Redis cached
    #: before this was recorded).
    expires_at: datetime | None = None


class Dialect:
    """Vendor SQL for the few places where the backends differ."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.vendor = connection.vendor
        self.qn = connection.ops.quote_name
        self.table = self.qn(IdempotencyRecord._meta.db_table)
        if self.vendor == "postgresql":
            self.now = "statement_timestamp()"
        elif self.vendor == "mysql":
            self.now = "UTC_TIMESTAMP(6)"
        else:
            self.now = "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"

    def later(self, delta: timedelta) -> tuple[str, Any]:
        """SQL for "database now + delta" and its parameter."""
        if self.vendor == "postgresql":
            return f"{self.now} + %s * interval '1 second'", delta.total_seconds()
        if self.vendor == "mysql":
            return f"{self.now} + INTERVAL %s MICROSECOND", delta // timedelta(microseconds=1)
        return (
            "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %s)",
            f"{delta.total_seconds():+} seconds",
        )


def _max_length(name: str) -> int:
    length = getattr(IdempotencyRecord._meta.get_field(name), "max_length", None)
    assert isinstance(length, int)
    return length


# Values longer than their column are cut rather than refused: they come from
# the URL or the project's scope callables, and only identify the record.
_SCOPE_MAX = _max_length("scope")
_ENDPOINT_MAX = _max_length("endpoint")
_PATH_MAX = _max_length("path")

_INSERT_COLUMNS = (
    "lookup_hash",
    "key",
    "scope",
    "endpoint",
    "method",
    "path",
    "fingerprint",
    "state",
    "token",
    "request_id",
    "response_headers",
    "created_at",
    "locked_until",
    "expires_at",
)


def _insert_text(d: Dialect) -> str:
    lock_sql, _ = d.later(timedelta())
    ttl_sql, _ = d.later(timedelta())
    columns = ", ".join(d.qn(c) for c in _INSERT_COLUMNS)
    return (
        f"INSERT INTO {d.table} ({columns}) VALUES "
        f"(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '', {d.now}, {lock_sql}, {ttl_sql})"
    )


def _insert_params(d: Dialect, new: NewRecord, token: str) -> list[Any]:
    return [
        new.lookup_hash,
        new.key,
        new.scope[:_SCOPE_MAX],
        new.endpoint[:_ENDPOINT_MAX],
        new.method,
        new.path[:_PATH_MAX],
        new.fingerprint,
        State.IN_PROGRESS.value,
        token,
        new.request_id,
        d.later(new.lock_timeout)[1],
        d.later(new.ttl)[1],
    ]


def _select_columns(d: Dialect, fingerprints: int) -> str:
    """The columns of ``Existing`` after ``id`` (the body only when it will be replayed)."""
    q = d.qn
    fingerprint = q("fingerprint")
    same = (
        f"{fingerprint} = %s"
        if fingerprints == 1
        else (f"{fingerprint} IN ({', '.join(['%s'] * fingerprints)})")
    )
    return (
        f"{q('state')}, {same}, {q('token')}, {q('request_id')}, {q('response_status')}, "
        f"{q('response_headers')}, CASE WHEN {same} THEN {q('response_body')} END, "
        f"{q('expires_at')} <= {d.now}, {q('locked_until')} <= {d.now}, "
        f"{q('expires_at')}, {d.now}"
    )


def _existing(row: Sequence[Any], lookup_hash: str) -> Existing:
    body = row[7]
    return Existing(
        record_id=row[0],
        state=row[1],
        same_request=bool(row[2]),
        token=row[3],
        request_id=row[4],
        status=row[5],
        headers=row[6],
        body=None if body is None else bytes(body),
        expired=bool(row[8]),
        abandoned=bool(row[9]),
        lookup_hash=lookup_hash,
        expires_at=_as_datetime(row[10]),
        now=_as_datetime(row[11]),
    )


def _as_datetime(value: Any) -> datetime | None:
    """A timestamp as a raw cursor returns it (SQLite: text; MySQL: naive)
    as an aware datetime. Every timestamp the engine writes is UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def storable(new: NewRecord) -> bool:
    """False when a value of the record cannot be stored on every backend:
    PostgreSQL text cannot hold NUL. The key and request id are validated on
    their own; path, scope and endpoint come from the URL or user callables."""
    return not any("\0" in value for value in (new.path, new.scope, new.endpoint))


def refused_as_unrecordable(connection: BaseDatabaseWrapper, exc: BaseException) -> bool:
    """Did the database refuse the claim for a value of the request that the
    records table cannot hold? The same request would be refused again: it
    is the client's input, not an outage."""
    if connection.vendor != "mysql":
        return False
    return getattr(exc.__cause__, "args", (None,))[0] in _MYSQL_UNRECORDABLE


def table_exists(connection: BaseDatabaseWrapper) -> bool:
    """Asked only after a failure (and by a system check): never on the hot path."""
    return IdempotencyRecord._meta.db_table in connection.introspection.table_names()


def migrate_command(alias: str) -> str:
    """What creates the table on ``alias``: named by the error log and check W002."""
    command = "manage.py migrate django_idempotency"
    return command if alias == "default" else f"{command} --database {alias}"


def new_token() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class _ClaimStatements:
    """The claim's SQL for one vendor: the same text on every request (only
    its parameters change), so it is built once per process."""

    insert: str  # MySQL/MariaDB: fails on a duplicate
    insert_returning: str
    upsert: str  # SQLite: does nothing on a duplicate
    upsert_returning: str
    claim_or_fetch: str  # PostgreSQL: the INSERT and the SELECT in one statement
    select: str


_CLAIM_STATEMENTS: dict[tuple[str, int], _ClaimStatements] = {}


def _claim_statements(d: Dialect, fingerprints: int) -> _ClaimStatements:
    cache_key = (d.vendor, fingerprints)
    statements = _CLAIM_STATEMENTS.get(cache_key)
    if statements is None:
        insert = _insert_text(d)
        columns = _select_columns(d, fingerprints)
        by_hash = f"{d.qn('lookup_hash')} = %s"
        returning = f" RETURNING {d.qn('id')}, {d.qn('expires_at')}"
        upsert = f"{insert} ON CONFLICT ({d.qn('lookup_hash')}) DO NOTHING"
        statements = _CLAIM_STATEMENTS[cache_key] = _ClaimStatements(
            insert=insert,
            insert_returning=insert + returning,
            upsert=upsert,
            upsert_returning=upsert + returning,
            claim_or_fetch=(
                f"WITH ins AS ({upsert}{returning}) "
                "SELECT id, TRUE, NULL, FALSE, NULL, NULL, NULL, NULL, NULL, FALSE, FALSE, "
                f"expires_at, NULL FROM ins UNION ALL SELECT {d.qn('id')}, FALSE, {columns} "
                f"FROM {d.table} WHERE {by_hash}"
            ),
            select=f"SELECT {d.qn('id')}, {columns} FROM {d.table} WHERE {by_hash}",
        )
    return statements


#: The claim as a PL/pgSQL function (migrations 0004 and 0005, PostgreSQL
#: only), newest first: its plans are cached per server connection (see
#: migration 0004 for why). A process calls the newest its database has: a
#: database not yet migrated forward, or migrated back, has an older one.
_CLAIM_FUNCTIONS = ("django_idempotency_claim_v2", "django_idempotency_claim_v1")
_CLAIM_FUNCTION_ARGUMENTS = (
    "(text, text, text, text, text, text, text, text, text, text, "
    "double precision, double precision, text[])"
)
_CLAIM_FUNCTION_CALLS = {
    name: f"SELECT * FROM {name}({', '.join(['%s'] * 13)})" for name in _CLAIM_FUNCTIONS
}
_CLAIM_FUNCTION_PROBE = "SELECT " + ", ".join(["to_regprocedure(%s) IS NOT NULL"] * 2)

#: Per database alias, the claim function its database has (None: none):
#: asked once per process, since a database is migrated before a release
#: that needs it runs.
_CLAIM_FUNCTION_CHOSEN: dict[str, str | None] = {}


def claim_function(connection: BaseDatabaseWrapper) -> str | None:
    """The name of the claim function to call on this PostgreSQL database."""
    alias = connection.alias
    if alias not in _CLAIM_FUNCTION_CHOSEN:
        connection.ensure_connection()
        # On the driver's own cursor: a once-per-process probe is not one of
        # the request's statements, so it stays out of the project's query
        # logs and counts (assertNumQueries), which describe the request.
        raw = connection.connection.cursor()
        try:
            raw.execute(
                _CLAIM_FUNCTION_PROBE,
                [name + _CLAIM_FUNCTION_ARGUMENTS for name in _CLAIM_FUNCTIONS],
            )
            present = raw.fetchone()
        finally:
            raw.close()
        _CLAIM_FUNCTION_CHOSEN[alias] = next(
            (name for name, there in zip(_CLAIM_FUNCTIONS, present, strict=True) if there), None
        )
    return _CLAIM_FUNCTION_CHOSEN[alias]


def _call_claim_function(
    connection: BaseDatabaseWrapper, cursor: Any, name: str, params: list[Any]
) -> list[Any] | None:
    """The function's rows; None when it has gone since the probe (a
    migration back) and the statement form can still be sent instead."""
    try:
        cursor.execute(_CLAIM_FUNCTION_CALLS[name], params)
    except ProgrammingError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != _UNDEFINED_FUNCTION:
            raise
        # The next claim asks again: an older function may still be there.
        _CLAIM_FUNCTION_CHOSEN.pop(connection.alias, None)
        # Inside a transaction the failed statement has aborted it.
        if connection.in_atomic_block:
            raise
        return None
    return list(cursor.fetchall())


def forget_claim_function(alias: str | None = None) -> None:
    """Ask again which claim function exists (after a migration back or
    forth in a running process; tests)."""
    if alias is None:
        _CLAIM_FUNCTION_CHOSEN.clear()
    else:
        _CLAIM_FUNCTION_CHOSEN.pop(alias, None)


def insert_or_fetch(
    connection: BaseDatabaseWrapper, new: NewRecord, token: str | None = None
) -> Claim | Existing | None:
    """Claim the key, or return the row that holds it (None: it vanished meanwhile).

    ``token`` proves the claim later; a new one unless given."""
    d = Dialect(connection)
    token = token or new_token()
    params = _insert_params(d, new, token)
    fingerprints = new.fingerprints
    sql = _claim_statements(d, len(fingerprints))
    select_params = [*fingerprints, *fingerprints, new.lookup_hash]
    can_return = bool(connection.features.can_return_columns_from_insert)
    # Read before the statement: where the database cannot return the expiry,
    # this is the best estimate that is never later than the real one.
    estimate = datetime.now(UTC) + new.ttl
    with connection.cursor() as cursor:
        function = claim_function(connection) if d.vendor == "postgresql" else None
        if function is not None:
            rows = _call_claim_function(connection, cursor, function, [*params, list(fingerprints)])
            if rows is not None:
                if rows and rows[0][1]:
                    return Claim(
                        rows[0][0],
                        token,
                        lookup_hash=new.lookup_hash,
                        expires_at=_as_datetime(rows[0][11]),
                    )
                # No row: the record was deleted between the INSERT and the SELECT.
                return _existing((rows[0][0], *rows[0][2:]), new.lookup_hash) if rows else None
        if d.vendor == "postgresql":
            # One round trip: the SELECT branch returns the existing row when the
            # INSERT did nothing. It needs no "NOT EXISTS (ins)" guard (which
            # doubles the planning time): all parts of the statement share one
            # snapshot, so it never sees the row the INSERT just added. That
            # snapshot can also miss a row committed while the statement ran;
            # the plain SELECT below catches that rare case.
            cursor.execute(sql.claim_or_fetch, [*params, *select_params])
            rows = cursor.fetchall()
            # Both branches return a row only when our INSERT replaced a row
            # deleted after the snapshot was taken: then the claim is ours.
            for row in rows:
                if row[1]:
                    return Claim(
                        row[0],
                        token,
                        lookup_hash=new.lookup_hash,
                        expires_at=_as_datetime(row[11]),
                    )
            if rows:
                return _existing((rows[0][0], *rows[0][2:]), new.lookup_hash)
        elif d.vendor == "sqlite":
            if can_return:
                cursor.execute(sql.upsert_returning, params)
                # Fetched to the end: SQLite finishes the statement only then.
                returned = cursor.fetchall()
                if returned:
                    return Claim(
                        returned[0][0],
                        token,
                        lookup_hash=new.lookup_hash,
                        expires_at=_as_datetime(returned[0][1]),
                    )
            else:
                cursor.execute(sql.upsert, params)
                if cursor.rowcount == 1:
                    return Claim(
                        _lastrowid(cursor), token, lookup_hash=new.lookup_hash, expires_at=estimate
                    )
        else:
            try:
                cursor.execute(sql.insert_returning if can_return else sql.insert, params)
            except IntegrityError as exc:
                if getattr(exc.__cause__, "args", (None,))[0] != _MYSQL_DUPLICATE_ENTRY:
                    raise
            else:
                if can_return:
                    returned_row = cursor.fetchone()
                    return Claim(
                        returned_row[0],
                        token,
                        lookup_hash=new.lookup_hash,
                        expires_at=_as_datetime(returned_row[1]),
                    )
                return Claim(
                    _lastrowid(cursor), token, lookup_hash=new.lookup_hash, expires_at=estimate
                )
        cursor.execute(sql.select, select_params)
        row = cursor.fetchone()
    return None if row is None else _existing(row, new.lookup_hash)


def fetch(connection: BaseDatabaseWrapper, new: NewRecord) -> Existing | None:
    """The row that holds the key, read only (a waiting duplicate's look: no
    write, so no lock, not even SQLite's one writer's)."""
    d = Dialect(connection)
    columns = _select_columns(d, len(new.fingerprints))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {d.qn('id')}, {columns} FROM {d.table} WHERE {d.qn('lookup_hash')} = %s",
            [*new.fingerprints, *new.fingerprints, new.lookup_hash],
        )
        row = cursor.fetchone()
    return None if row is None else _existing(row, new.lookup_hash)


def _lastrowid(cursor: Any) -> int:
    rowid = cursor.lastrowid
    assert isinstance(rowid, int)
    return rowid


def take_over(connection: BaseDatabaseWrapper, new: NewRecord, existing: Existing) -> Claim | None:
    """Replace an expired record or take over an abandoned claim; None if another won.

    The old token in the WHERE clause makes this a compare-and-set: of several
    racing retries exactly one updates the row. The time condition is checked
    again with the database clock, so a claim completed meanwhile stays.
    """
    d = Dialect(connection)
    token = new_token()
    lock_sql, lock_param = d.later(new.lock_timeout)
    params: list[Any] = [
        token,
        State.IN_PROGRESS.value,
        new.fingerprint,
        new.key,
        new.scope[:_SCOPE_MAX],
        new.endpoint[:_ENDPOINT_MAX],
        new.method,
        new.path[:_PATH_MAX],
        new.request_id,
        lock_param,
    ]
    q = d.qn
    if existing.expired:
        ttl_sql, ttl_param = d.later(new.ttl)
        renew = f", {q('created_at')} = {d.now}, {q('expires_at')} = {ttl_sql}"
        # An expired record that a live request still works on (a takeover
        # near the end of ttl) is not free yet.
        condition = (
            f"{q('expires_at')} <= {d.now} "
            f"AND ({q('state')} = %s OR {q('locked_until')} <= {d.now})"
        )
        params.append(ttl_param)
    else:
        renew = ""
        condition = f"{q('state')} = %s AND {q('locked_until')} <= {d.now}"
    assignments = ", ".join(
        f"{q(column)} = %s"
        for column in (
            "token", "state", "fingerprint", "key", "scope", "endpoint", "method", "path",
            "request_id",
        )
    )  # fmt: skip
    sql = (
        f"UPDATE {d.table} SET {assignments}, {q('locked_until')} = {lock_sql}{renew}, "
        f"{q('completed_at')} = NULL, {q('response_status')} = NULL, "
        f"{q('response_headers')} = '', {q('response_body')} = NULL "
        f"WHERE {q('id')} = %s AND {q('token')} = %s AND {condition}"
    )
    params += [existing.record_id, existing.token]
    params.append(State.COMPLETED.value if existing.expired else State.IN_PROGRESS.value)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        won = cursor.rowcount == 1
    if not won:
        return None
    if existing.expired:
        # Renewed by this UPDATE, which MySQL/MariaDB cannot make return it
        # (one path for all backends: a rare case): the database clock the
        # row was read with is the one nearest before it.
        read_at = existing.now or datetime.now(UTC)
        expires_at: datetime | None = read_at + new.ttl
    else:
        expires_at = existing.expires_at  # a takeover keeps the first request's expiry
    return Claim(
        existing.record_id,
        token,
        fresh=existing.expired,
        lookup_hash=new.lookup_hash,
        expires_at=expires_at,
    )


def _notifying(sql: str, claim: Claim) -> tuple[str, list[Any]]:
    """``sql`` (an UPDATE or DELETE of the claim's row) that also sends
    ``NOTIFY idempotency, '<lookup hash>'`` when it changes the row: still one
    statement, and delivered only when the change commits. Its rowcount is
    the row's (the SELECT returns one row per changed row)."""
    return (
        f"WITH changed AS ({sql} RETURNING 1) SELECT pg_notify(%s, %s) FROM changed",
        [CHANNEL, claim.lookup_hash],
    )


def complete(
    connection: BaseDatabaseWrapper,
    claim: Claim,
    stored: StoredResponse,
    *,
    notify: bool = False,
) -> bool:
    """Store the response; False if the claim was taken over (fenced out).

    ``notify`` (PostgreSQL): wake the duplicates waiting for it (option ``wait``)."""
    d = Dialect(connection)
    q = d.qn
    ring = conf.get_settings().keyring
    if ring is None:
        headers, body = json.dumps(stored.headers), stored.body
    else:
        assert claim.lookup_hash, "a sealed response needs its record's lookup hash"
        headers, body = seal_record(
            ring, claim.lookup_hash, stored.status, stored.headers, stored.body
        )
    sql = (
        f"UPDATE {d.table} SET {q('state')} = %s, {q('completed_at')} = {d.now}, "
        f"{q('response_status')} = %s, {q('response_headers')} = %s, "
        f"{q('response_body')} = %s "
        f"WHERE {q('id')} = %s AND {q('token')} = %s AND {q('state')} = %s"
    )
    params: list[Any] = [
        State.COMPLETED.value,
        stored.status,
        headers,
        body,
        claim.record_id,
        claim.token,
        State.IN_PROGRESS.value,
    ]
    if notify:
        sql, extra = _notifying(sql, claim)
        params += extra
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return bool(cursor.rowcount == 1)


def release(connection: BaseDatabaseWrapper, claim: Claim, *, notify: bool = False) -> bool:
    """Free the key so a retry runs the view; never touches a completed record.

    ``notify``: as for ``complete``."""
    d = Dialect(connection)
    q = d.qn
    sql = f"DELETE FROM {d.table} WHERE {q('id')} = %s AND {q('token')} = %s AND {q('state')} = %s"
    params: list[Any] = [claim.record_id, claim.token, State.IN_PROGRESS.value]
    if notify:
        sql, extra = _notifying(sql, claim)
        params += extra
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return bool(cursor.rowcount == 1)


def stored_response(existing: Existing) -> StoredResponse:
    """The response to replay; ``RecordUnreadable`` if it is sealed and no
    configured key opens it (docs/recipes/encryption.md says why that is no
    reason to run the view again)."""
    try:
        headers, body = open_record(
            conf.get_settings().keyring,
            existing.lookup_hash,
            existing.status,
            existing.headers,
            existing.body,
        )
    except Unreadable as exc:
        logger.error(
            "Idempotency record %s cannot be decrypted: %s. Answering 500 "
            "idempotency_record_unreadable; put its key back in ENCRYPTION_KEYS to replay it.",
            existing.record_id,
            exc,
        )
        raise RecordUnreadable() from None
    return StoredResponse(
        status=existing.status or 200,
        headers=headers,
        body=body or b"",
        request_id=existing.request_id,
        expires_at=existing.expires_at,
    )
