"""Deleting every record of one caller, for data-protection requests.

A caller is a scope (``user:42`` for a user under the default scope). Records
are deleted in batches like the purge's (one short DELETE each), and their
responses cached in Redis are dropped with them.

In-progress records whose claim is still live are kept unless asked for: such
a record is all that stops a retry from running the operation a second time
while the first request still runs (a second charge, a second letter).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.db.models import QuerySet

from . import cache_lock, conf
from .identity import user_scope
from .models import IdempotencyRecord
from .purge import DEFAULT_BATCH_SIZE

logger = logging.getLogger("django_idempotency")

_SCOPE_MAX = IdempotencyRecord._meta.get_field("scope").max_length or 255


class ErasureIncomplete(Exception):
    """Some records may remain: Redis could not be told to forget them (it
    may still replay them), or one of several records databases failed.
    Running the erasure again finishes it."""


@dataclass(frozen=True)
class ErasureResult:
    """What one erasure deleted (or, with ``dry_run``, would delete)."""

    scope: str
    #: Records deleted (would be deleted, on a dry run).
    deleted: int
    #: In-progress records with a live claim that were left in place.
    kept_in_progress: int
    batches: int
    dry_run: bool
    seconds: float


def scope_for_user(user: Any) -> str:
    """The scope ``identity.default_scope`` gives ``user`` (a user or its
    primary key). A user who no longer exists can still be named by key."""
    pk = getattr(user, "pk", user)
    if pk is None:
        raise ValueError("the user has no primary key (it was never saved)")
    try:
        pk = get_user_model()._meta.pk.to_python(pk)
    except ValidationError as exc:
        raise ValueError(f"{user!r} is not a user primary key: {' '.join(exc.messages)}") from None
    return user_scope(pk)


def erase(
    *,
    scope: str | None = None,
    user: Any = None,
    include_in_progress: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    database: str | None = None,
) -> ErasureResult:
    """Delete every record of one scope, in the database and in Redis.

    Give exactly one of ``scope`` (as stored: what the ``scope`` callable
    returned) or ``user`` (a user or its primary key, for the default scope).
    Expired and completed records go, and in-progress records whose lock ran
    out; in-progress records whose request may still run are kept (and
    counted) unless ``include_in_progress``. ``database`` defaults to every
    alias ``IDEMPOTENCY["DATABASE"]`` names. Call it outside a transaction so
    each batch commits on its own. Raises :class:`ErasureIncomplete` when the
    Redis front is configured and Redis cannot be reached; run it again then.
    """
    if (scope is None) == (user is None):
        raise ValueError("give exactly one of scope= or user=")
    if user is not None:
        scope = scope_for_user(user)
    if not isinstance(scope, str) or not scope:
        raise ValueError("scope must be a non-empty string")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if database is None and conf.get_settings().sharded:
        # Every shard, not only the scope's: records written before an alias
        # was added to DATABASE may still sit where the scope used to live.
        results: list[ErasureResult] = []
        failed: list[str] = []
        for alias in conf.get_settings().databases:
            # Past a shard that fails: the others' records go now, and the
            # error names what is left, so a second run finishes the job.
            try:
                results.append(
                    erase(
                        scope=scope,
                        include_in_progress=include_in_progress,
                        batch_size=batch_size,
                        dry_run=dry_run,
                        database=alias,
                    )
                )
            except (DatabaseError, ErasureIncomplete) as exc:
                logger.error("Idempotency erasure of scope %r failed on %r: %s", scope, alias, exc)
                failed.append(f"{alias}: {exc}")
        if failed:
            erased = sum(r.deleted for r in results)
            raise ErasureIncomplete(
                f"failed on {'; '.join(failed)} ({erased} records erased on the other "
                "databases; run it again)"
            )
        return ErasureResult(
            scope=scope,
            deleted=sum(r.deleted for r in results),
            kept_in_progress=sum(r.kept_in_progress for r in results),
            batches=sum(r.batches for r in results),
            dry_run=dry_run,
            seconds=sum(r.seconds for r in results),
        )
    alias = database or conf.get_settings().database
    started = time.monotonic()
    # The engine cuts scopes to the column's length before storing them.
    mine = IdempotencyRecord.objects.using(alias).filter(scope=scope[:_SCOPE_MAX])
    doomed = mine if include_in_progress else mine.idle()
    if dry_run:
        deleted, batches = doomed.count(), 0
    else:
        deleted, batches = _delete(doomed, batch_size)
    kept = 0 if include_in_progress else mine.exclude(pk__in=mine.idle().values("pk")).count()
    result = ErasureResult(
        scope=scope,
        deleted=deleted,
        kept_in_progress=kept,
        batches=batches,
        dry_run=dry_run,
        seconds=time.monotonic() - started,
    )
    # INFO, unlike the purge's DEBUG: an erasure is a rare, deliberate act
    # that an audit trail should show. The scope is logged: it is what the
    # request asked to erase, and names no more than the request did.
    logger.info(
        "Idempotency erasure of scope %r on %r%s: %d deleted, %d in progress kept, %.2fs",
        scope,
        alias,
        " (dry run)" if dry_run else "",
        result.deleted,
        result.kept_in_progress,
        result.seconds,
    )
    return result


def _delete(queryset: QuerySet[IdempotencyRecord], batch_size: int) -> tuple[int, int]:
    """Like ``purge.delete_in_batches``, but Redis is told first and must
    answer: a purge that cannot reach Redis only leaves copies that expire
    anyway, an erasure that did so would report success for data it left.
    Dropping first keeps a failed run repeatable (the rows are still there
    to find), and dropping again after the DELETE catches a response cached
    between the two by a request finishing right then."""
    alias = queryset.db
    app_settings = conf.get_settings()
    redis_front = app_settings.lock == "cache"
    ordered = queryset.order_by("pk")
    deleted = batches = 0
    while True:
        rows = list(ordered.values_list("pk", "lookup_hash")[:batch_size])
        if not rows:
            break
        ids = [pk for pk, _ in rows]
        hashes = [lookup for _, lookup in rows]
        if redis_front:
            _drop(app_settings.cache_alias, hashes)
        # The DELETE re-applies the filter: a record taken over since the
        # SELECT (in progress again, its claim live) stays.
        deleted += queryset.filter(pk__in=ids)._raw_delete(alias)
        batches += 1
        if redis_front:
            _drop(app_settings.cache_alias, hashes)
        if len(ids) < batch_size:
            break
    return deleted, batches


def _drop(cache_alias: str, hashes: list[str]) -> None:
    try:
        cache_lock.drop_responses(cache_alias, hashes, strict=True)
    except Exception as exc:
        raise ErasureIncomplete(
            f"Redis (cache {cache_alias!r}) could not be reached to drop cached responses: {exc}"
        ) from exc
