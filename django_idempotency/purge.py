"""Deleting records nobody can replay any more, in small batches.

Safe while traffic flows: each batch is one DELETE statement, committed on
its own, that removes at most ``batch_size`` rows chosen by id, so no
statement holds many row locks or writes much transaction log. Every DELETE
checks its criterion again, so a record renewed or taken over between the
batch's SELECT and its DELETE stays.

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
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.db.models.sql.subqueries import DeleteQuery

from . import cache_lock, conf
from .models import IdempotencyRecord, State
from .options import MAX_DURATION

logger = logging.getLogger("django_idempotency")

DEFAULT_BATCH_SIZE = 5000
#: In-progress records are only abandoned once their lock ran out this long ago
#: (or ``older_than``, if longer): a view may legitimately run past its lock.
ABANDONED_MARGIN = timedelta(hours=1)

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
    connection = connections[alias]
    # With the Redis front, each batch's lookup hashes too, so that Redis
    # forgets what the database no longer holds.
    redis_front = conf.get_settings().lock == "cache"
    if connection.vendor not in ("postgresql", "sqlite"):
        # MySQL/MariaDB refuse a LIMIT in an IN subquery.
        return _select_then_delete(queryset, batch_size, order_by, on_batch)
    # PostgreSQL, SQLite: each batch is one statement that picks its rows
    # itself and hands back where it stopped (and the hashes).
    deleted = batches = 0
    # Each batch starts where the last one stopped (ties included), so that
    # its index range scan does not wade through the entries of the rows
    # earlier batches deleted, which stay in the index until a vacuum.
    # Rows below it cannot start to match: a record that is renewed or
    # claimed again moves into the future.
    bound: Any = None
    while True:
        todo = queryset if bound is None else queryset.filter(**{f"{order_by}__gte": bound})
        batch = todo.order_by(order_by).values("pk")[:batch_size]
        # The outer filter too, not only the subquery's: a row renewed while
        # the statement waited for its lock is checked again, and kept.
        sql, params = _delete_sql(queryset.filter(pk__in=batch), alias)
        # No transaction: autocommit makes each batch one short transaction.
        # _raw SQL, never the Collector, which would load every row (bodies
        # included) as soon as a project connects any pre_delete/post_delete
        # receiver.
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING {_returned(connection, order_by)}", params)
            rows = cursor.fetchall()
        if not rows:
            break
        count = len(rows)
        bound = _as_bound(connection, max(row[0] for row in rows))
        if redis_front:
            cache_lock.forget_deleted(alias, [row[1] for row in rows])
        deleted += count
        batches += 1
        if on_batch is not None:
            on_batch(count)
        if count < batch_size:
            break
    return deleted, batches


def _returned(connection: BaseDatabaseWrapper, order_by: str) -> str:
    """What each deleted row hands back: its ``order_by`` value and lookup hash."""
    meta = IdempotencyRecord._meta
    field = meta.pk if order_by == "pk" else meta.get_field(order_by)
    column = getattr(field, "column", order_by)
    return f"{connection.ops.quote_name(column)}, {connection.ops.quote_name('lookup_hash')}"


def _as_bound(connection: BaseDatabaseWrapper, value: Any) -> Any:
    """A value RETURNING handed back, as the ORM's filter takes it. SQLite
    returns datetimes naive (in UTC when USE_TZ): read as Django reads them,
    never as local time, which would move the bound by hours."""
    if isinstance(value, (str, datetime)) and connection.vendor == "sqlite":
        convert = connection.ops.convert_datetimefield_value  # type: ignore[attr-defined]
        return convert(value, None, connection)
    return value


def _delete_sql(queryset: QuerySet[IdempotencyRecord], alias: str) -> tuple[str, tuple[Any, ...]]:
    """The DELETE that ``queryset._raw_delete`` would send, as SQL and parameters."""
    query = queryset.query.chain(DeleteQuery)
    sql, params = query.get_compiler(alias).as_sql()
    return sql, tuple(params)


def _select_then_delete(
    queryset: QuerySet[IdempotencyRecord],
    batch_size: int,
    order_by: str,
    on_batch: Callable[[int], None] | None,
) -> tuple[int, int]:
    """MySQL/MariaDB with the Redis front: each batch's lookup hashes are read
    first, so that Redis forgets what the DELETE removes."""
    alias = queryset.db
    ordered = queryset.order_by(order_by)
    deleted = batches = 0
    while True:
        # No transaction spans the SELECT and the DELETE: the DELETE re-checks
        # the filter anyway.
        rows = list(ordered.values_list("pk", "lookup_hash")[:batch_size])
        if not rows:
            break
        count = queryset.filter(pk__in=[pk for pk, _ in rows])._raw_delete(alias)
        cache_lock.forget_deleted(alias, [lookup for _, lookup in rows])
        deleted += count
        batches += 1
        if on_batch is not None:
            on_batch(count)
        if len(rows) < batch_size:
            break
    return deleted, batches


def purge(
    *,
    older_than: timedelta = timedelta(),
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    database: str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> PurgeResult:
    """Delete expired records and abandoned in-progress records.

    - expired: completed, ``expires_at`` earlier than now minus ``older_than``;
    - abandoned: expired too, but still in progress, with ``locked_until``
      earlier than now minus ``max(ABANDONED_MARGIN, older_than)``.

    ``database`` defaults to every alias ``IDEMPOTENCY["DATABASE"]`` names,
    one after the other (the first failing one raises). Call it outside any
    transaction, so each batch commits on its own. ``on_batch`` is called with
    the rows each batch deleted.
    """
    if older_than < timedelta():
        raise ValueError("older_than must not be negative")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if database is None and conf.get_settings().sharded:
        return combined(
            purge(
                older_than=older_than,
                batch_size=batch_size,
                dry_run=dry_run,
                database=alias,
                on_batch=on_batch,
            )
            for alias in conf.get_settings().databases
        )
    alias = database or conf.get_settings().database
    started = time.monotonic()
    records = IdempotencyRecord.objects.using(alias)
    # Both passes walk the expires_at index. An abandoned claim (its worker
    # died) is deleted once it has expired, like any record: until then a
    # retry takes it over. No index finds in-progress rows early without
    # holding `state`, which the completion UPDATE writes, and such an index
    # would cost every first request its HOT update (docs/performance.md).
    past = records.expired(older_than)
    expired = past.filter(state=State.COMPLETED)
    # An expired record that a request still works on (a takeover of an
    # abandoned claim near the end of ttl) stays until its claim ended long
    # enough ago: deleting it would let a duplicate start a second live
    # execution.
    abandoned = past.abandoned(max(ABANDONED_MARGIN, older_than))
    if dry_run:
        result = PurgeResult(
            expired=expired.count(),
            abandoned=abandoned.count(),
            batches=0,
            dry_run=True,
            seconds=time.monotonic() - started,
        )
    else:
        expired_count, expired_batches = delete_in_batches(
            expired, batch_size=batch_size, order_by="expires_at", on_batch=on_batch
        )
        abandoned_count, abandoned_batches = delete_in_batches(
            abandoned, batch_size=batch_size, order_by="expires_at", on_batch=on_batch
        )
        result = PurgeResult(
            expired=expired_count,
            abandoned=abandoned_count,
            batches=expired_batches + abandoned_batches,
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
