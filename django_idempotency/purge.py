"""Deleting records nobody can replay any more, in small batches.

Safe while traffic flows: each batch is one DELETE statement, committed on
its own, that removes at most ``batch_size`` rows, the earliest by
``expires_at``, so no statement holds many row locks or writes much
transaction log. Every DELETE checks its criterion on the rows it deletes, so
a record renewed or taken over meanwhile stays.

Deleting an in-progress record whose worker is still alive is harmless: the
worker's final UPDATE matches on its claim token, finds no row, and answers
with its real result without storing it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, Q, QuerySet

from . import cache_lock, conf
from .models import IdempotencyRecord, State
from .options import MAX_DURATION

logger = logging.getLogger("django_idempotency")

DEFAULT_BATCH_SIZE = 5000
#: Between two batches by default: measured (docs/purge.md), 5 ms after each
#: batch of 5,000 kept the p99 of concurrent requests within 2x of its level
#: before the purge while still deleting over 200,000 rows per second; no
#: pause let the purge slow them 1.3x to 3.4x from run to run.
DEFAULT_PAUSE = 0.005
#: The longest pause between two batches: longer is a mistake (minutes for
#: milliseconds), not a purge anyone could wait for.
MAX_PAUSE = 60.0

# Between batches; a test moves its clock instead.
_sleep = time.sleep

_AGE_PART = re.compile(r"(\d+)([wdhms])")
_AGE_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


@dataclass(frozen=True)
class PurgeResult:
    """What one purge deleted (or, with ``dry_run``, would delete)."""

    expired: int
    abandoned: int
    batches: int
    dry_run: bool
    seconds: float

    @property
    def total(self) -> int:
        return self.expired + self.abandoned


def combined(results: Iterable[PurgeResult]) -> PurgeResult:
    """One result for the purges of several databases."""
    results = list(results)
    return PurgeResult(
        expired=sum(r.expired for r in results),
        abandoned=sum(r.abandoned for r in results),
        batches=sum(r.batches for r in results),
        dry_run=all(r.dry_run for r in results),
        seconds=sum(r.seconds for r in results),
    )


#: Far longer than any retention, far inside every database's date range.
MAX_AGE = MAX_DURATION


def parse_age(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` or combined (``"1d12h"``)."""
    cleaned = text.strip().lower()
    if not cleaned or _AGE_PART.sub("", cleaned):
        raise ValueError(
            f"invalid age {text!r}: use a number and a unit (w, d, h, m, s), e.g. 7d or 12h"
        )
    total = timedelta()
    try:
        for number, unit in _AGE_PART.findall(cleaned):
            total += timedelta(**{_AGE_UNITS[unit]: int(number)})
    except OverflowError:
        total = MAX_AGE + MAX_AGE
    if total > MAX_AGE:
        # Past this the databases' date arithmetic overflows too.
        raise ValueError(f"age {text!r} is too large: at most {MAX_AGE.days}d")
    return total


def batches_text(count: int) -> str:
    return f"{count} batch" if count == 1 else f"{count} batches"


def delete_in_batches(
    queryset: QuerySet[IdempotencyRecord],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    order_by: str = "pk",
    on_batch: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Delete the records of ``queryset`` ``batch_size`` at a time.

    Returns (rows deleted by this call, batches run). The DELETE re-applies
    the queryset's filter, so a row that stopped matching is kept, and rows a
    concurrent purge removed first are not counted here.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    alias = queryset.db
    # Ordering by an indexed column makes each SELECT an index range scan that
    # starts at the first remaining row, instead of a table scan that wades
    # through the rows previous batches left dead.
    # With the Redis front, each batch's lookup hashes too, so that Redis
    # forgets what the database no longer holds.
    redis_front = conf.get_settings().lock == "cache"
    ordered = queryset.order_by(order_by)
    deleted = batches = 0
    while True:
        # No transaction spans the SELECT and the DELETE: the DELETE re-checks
        # the filter anyway, and on SQLite a transaction that reads before it
        # writes cannot wait for a concurrent writer ("database is locked").
        hashes: list[str] = []
        if redis_front:
            rows = list(ordered.values_list("pk", "lookup_hash")[:batch_size])
            ids = [pk for pk, _ in rows]
            hashes = [lookup for _, lookup in rows]
        else:
            ids = list(ordered.values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        # One statement, so in autocommit one short transaction. _raw_delete,
        # never the Collector, which would load every row (bodies included) as
        # soon as a project connects any pre_delete/post_delete receiver.
        count = queryset.filter(pk__in=ids)._raw_delete(alias)
        cache_lock.forget_deleted(alias, hashes)
        deleted += count
        batches += 1
        if on_batch is not None:
            on_batch(count)
        if len(ids) < batch_size:
            break
    return deleted, batches


@dataclass(frozen=True)
class _Batch:
    picked: int  # rows the batch chose: fewer than batch_size means nothing is left
    expired: int  # completed records deleted
    abandoned: int  # in-progress records deleted (their lock ran out)
    last_expiry: Any  # the latest expires_at deleted, as the database returned it
    hashes: list[str]


def _deletes_returning(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``DELETE ... RETURNING`` exists: PostgreSQL, SQLite 3.35+ and
    MariaDB (since 10.0.5); not MySQL."""
    if connection.vendor == "postgresql":
        return True
    if connection.vendor == "sqlite":
        return bool(connection.Database.sqlite_version_info >= (3, 35))  # type: ignore[attr-defined]
    if connection.vendor == "mysql":
        return bool(connection.mysql_is_mariadb)  # type: ignore[attr-defined]
    return False


class _ExpiredPurge:
    """The batches of the expired pass, each one statement where the database
    allows it.

    Rows are taken in ``expires_at`` order from where the previous batch
    stopped (``expires_at >= the latest one it deleted``), so each batch is an
    index range scan that starts at its first row instead of wading again
    through the index entries earlier batches left dead. The criterion stands
    in the DELETE's own WHERE clause, so the database re-checks it on the row
    it deletes: a record renewed (or completed, or taken over) while the batch
    ran stays.
    """

    def __init__(self, alias: str, older_than: timedelta, batch_size: int) -> None:
        from .store import Dialect  # store imports models; imported late as models does

        self.connection = connections[alias]
        self.batch_size = batch_size
        self.redis_front = conf.get_settings().lock == "cache"
        self.returning = _deletes_returning(self.connection)
        d = Dialect(self.connection)
        self.vendor = d.vendor
        q = self.qn = d.qn
        self.table = d.table
        cutoff_sql, cutoff_param = d.later(-older_than)
        # Expired, and idle: completed, or in progress with its lock run out.
        # An expired record that a request still works on (a takeover of an
        # abandoned claim near the end of ttl) stays until its claim ends.
        self.criterion = (
            f"{q('expires_at')} <= {cutoff_sql} "
            f"AND ({q('state')} = %s OR {q('locked_until')} <= {d.now})"
        )
        self.criterion_params: list[Any] = [cutoff_param, State.COMPLETED.value]

    def _pick(self, after: Any) -> tuple[str, list[Any]]:
        """The WHERE clause of a batch's rows and its parameters."""
        if after is None:
            return self.criterion, list(self.criterion_params)
        return (
            f"{self.criterion} AND {self.qn('expires_at')} >= %s",
            [*self.criterion_params, after],
        )

    def run(self, after: Any) -> _Batch:
        if not self.returning:
            return self._select_then_delete(after)
        if self.vendor == "postgresql":
            return self._postgresql(after)
        return self._returning(after)

    def _postgresql(self, after: Any) -> _Batch:
        q, n = self.qn, self.batch_size
        where, params = self._pick(after)
        hashes = f", array_agg({q('lookup_hash')})" if self.redis_front else ""
        returned = f"{q('state')}, {q('expires_at')}" + (
            f", {q('lookup_hash')}" if self.redis_front else ""
        )
        # By ctid: the DELETE fetches the chosen tuples directly (a TID scan)
        # instead of probing the primary key index for each. A tuple updated
        # meanwhile has a new ctid and fails the re-check, so it stays.
        # Each batch commits without waiting for its WAL to reach the disk:
        # after a crash a lost batch is only deleted again by the next purge.
        # Local to the statement's own transaction (never the session's:
        # behind a transaction pooler that would reach other clients); left
        # alone inside a caller's transaction, whose durability is not ours.
        durability = (
            ""
            if self.connection.in_atomic_block
            else (
                "quick AS MATERIALIZED ("
                "SELECT set_config('synchronous_commit', 'off', true) AS value), "
            )
        )
        touch = ", (SELECT count(*) FROM quick)" if durability else ""
        sql = (
            f"WITH {durability}picked AS MATERIALIZED ("
            f"SELECT ctid FROM {self.table} WHERE {where} "
            f"ORDER BY {q('expires_at')} LIMIT %s), "
            f"gone AS (DELETE FROM {self.table} "
            f"WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked)) AND {self.criterion} "
            f"RETURNING {returned}) "
            f"SELECT (SELECT count(*) FROM picked), count(*), "
            f"count(*) FILTER (WHERE {q('state')} = %s), max({q('expires_at')}){hashes}"
            f"{touch} FROM gone"
        )
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [*params, n, *self.criterion_params, State.IN_PROGRESS.value])
            picked, deleted, abandoned, last, *rest = cursor.fetchone()
        if durability:
            rest = rest[:-1]
        return _Batch(
            picked=picked,
            expired=deleted - abandoned,
            abandoned=abandoned,
            last_expiry=last,
            hashes=[h for h in (rest[0] if rest else None) or [] if h is not None],
        )

    def _returning(self, after: Any) -> _Batch:
        q, n = self.qn, self.batch_size
        where, params = self._pick(after)
        columns = f"{q('state')}, {q('expires_at')}" + (
            f", {q('lookup_hash')}" if self.redis_front else ""
        )
        if self.vendor == "mysql":
            # MariaDB refuses a subquery on the table it deletes from, but
            # deletes in index order with a limit.
            sql = (
                f"DELETE FROM {self.table} WHERE {where} "
                f"ORDER BY {q('expires_at')} LIMIT %s RETURNING {columns}"
            )
            args = [*params, n]
        else:
            sql = (
                f"DELETE FROM {self.table} WHERE {q('id')} IN ("
                f"SELECT {q('id')} FROM {self.table} WHERE {where} "
                f"ORDER BY {q('expires_at')} LIMIT %s) AND {self.criterion} "
                f"RETURNING {columns}"
            )
            args = [*params, n, *self.criterion_params]
        with self.connection.cursor() as cursor:
            cursor.execute(sql, args)
            rows = cursor.fetchall()
        # A single statement is serialised against other writers (SQLite) or
        # counts its limit in rows it deleted (MariaDB): fewer than asked
        # means the range is exhausted.
        return self._batch(len(rows), rows)

    def _select_then_delete(self, after: Any) -> _Batch:
        """MySQL: no RETURNING, so the batch's rows are read first."""
        q, n = self.qn, self.batch_size
        where, params = self._pick(after)
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {q('id')}, {q('state')}, {q('expires_at')}, {q('lookup_hash')} "
                f"FROM {self.table} WHERE {where} ORDER BY {q('expires_at')} LIMIT %s",
                [*params, n],
            )
            rows = cursor.fetchall()
            counts = {State.COMPLETED.value: 0, State.IN_PROGRESS.value: 0}
            for state in counts:
                ids = [row[0] for row in rows if row[1] == state]
                if not ids:
                    continue
                marks = ", ".join(["%s"] * len(ids))
                cursor.execute(
                    f"DELETE FROM {self.table} WHERE {q('id')} IN ({marks}) "
                    f"AND {q('state')} = %s AND {self.criterion}",
                    [*ids, state, *self.criterion_params],
                )
                counts[state] = cursor.rowcount
        return _Batch(
            picked=len(rows),
            expired=counts[State.COMPLETED.value],
            abandoned=counts[State.IN_PROGRESS.value],
            last_expiry=max((row[2] for row in rows), default=None),
            # Forgetting a hash whose row stayed (renewed) only costs Redis a miss.
            hashes=[row[3] for row in rows] if self.redis_front else [],
        )

    def _batch(self, picked: int, rows: list[Any]) -> _Batch:
        abandoned = sum(1 for row in rows if row[0] == State.IN_PROGRESS.value)
        return _Batch(
            picked=picked,
            expired=len(rows) - abandoned,
            abandoned=abandoned,
            last_expiry=max((row[1] for row in rows), default=None),
            hashes=[row[2] for row in rows] if self.redis_front else [],
        )


def purge_expired(
    alias: str,
    *,
    older_than: timedelta = timedelta(),
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    pause: float = DEFAULT_PAUSE,
) -> tuple[int, int, int]:
    """Delete the idle records of ``alias`` expired at least ``older_than``
    ago; returns (completed ones deleted, in-progress ones deleted, batches)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    batches = _ExpiredPurge(alias, older_than, batch_size)
    expired = abandoned = count = 0
    after = None
    while True:
        if count and pause:
            _sleep(pause)
        batch = batches.run(after)
        if batch.picked == 0:
            break
        cache_lock.forget_deleted(alias, batch.hashes)
        expired += batch.expired
        abandoned += batch.abandoned
        count += 1
        if on_batch is not None:
            on_batch(batch.expired + batch.abandoned)
        if batch.picked < batch_size:
            break
        if batch.last_expiry is not None:
            after = batch.last_expiry
    return expired, abandoned, count


def purge(
    *,
    older_than: timedelta = timedelta(),
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    database: str | None = None,
    on_batch: Callable[[int], None] | None = None,
    pause: float = DEFAULT_PAUSE,
) -> PurgeResult:
    """Delete the records whose ``expires_at`` is earlier than now minus
    ``older_than``, except in-progress ones whose lock still runs.

    - expired: completed records among them;
    - abandoned: in-progress claims among them (their worker died or gave up
      and no retry took the claim over before it expired).

    ``database`` defaults to every alias ``IDEMPOTENCY["DATABASE"]`` names,
    one after the other (the first failing one raises). Call it outside any
    transaction, so each batch commits on its own. ``on_batch`` is called with
    the rows each batch deleted. ``pause`` is the seconds to wait between two
    batches (after each one but the last), leaving the database to the
    requests it serves meanwhile; 0 purges as fast as the database allows.
    """
    if older_than < timedelta():
        raise ValueError("older_than must not be negative")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if not 0 <= pause <= MAX_PAUSE:  # NaN fails both
        raise ValueError(f"pause must be between 0 and {MAX_PAUSE:g} seconds")
    if database is None and conf.get_settings().sharded:
        return combined(
            purge(
                older_than=older_than,
                batch_size=batch_size,
                dry_run=dry_run,
                database=alias,
                on_batch=on_batch,
                pause=pause,
            )
            for alias in conf.get_settings().databases
        )
    alias = database or conf.get_settings().database
    started = time.monotonic()
    if dry_run:
        # The same records the batches below delete, counted in one scan.
        counts = (
            IdempotencyRecord.objects.using(alias)
            .expired(older_than)
            .idle()
            .aggregate(
                expired=Count("pk", filter=Q(state=State.COMPLETED)),
                abandoned=Count("pk", filter=Q(state=State.IN_PROGRESS)),
            )
        )
        result = PurgeResult(
            expired=counts["expired"],
            abandoned=counts["abandoned"],
            batches=0,
            dry_run=True,
            seconds=time.monotonic() - started,
        )
    else:
        expired, abandoned, batches = purge_expired(
            alias, older_than=older_than, batch_size=batch_size, on_batch=on_batch, pause=pause
        )
        result = PurgeResult(
            expired=expired,
            abandoned=abandoned,
            batches=batches,
            dry_run=False,
            seconds=time.monotonic() - started,
        )
    # DEBUG, not INFO: a project logging INFO to stderr would otherwise make
    # "-v 0" under cron mail a line every few minutes.
    logger.debug(
        "Idempotency purge on %r%s: %d expired, %d abandoned in %s, %.2fs",
        alias,
        " (dry run)" if dry_run else "",
        result.expired,
        result.abandoned,
        batches_text(result.batches),
        result.seconds,
    )
    return result
