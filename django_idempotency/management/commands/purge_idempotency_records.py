"""``manage.py purge_idempotency_records``: the purge, for cron and timers;
with ``--scope`` or ``--user``, the erasure of one caller's records.

Exit status: 0 when the purge ran (even if nothing was due), 1 with a message
on stderr when it could not run (bad option, unknown alias, database error,
Redis unreachable during an erasure).
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils.connection import ConnectionDoesNotExist

from django_idempotency import conf
from django_idempotency.erasure import ErasureIncomplete, ErasureResult, erase, scope_for_user
from django_idempotency.purge import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PAUSE,
    MAX_PAUSE,
    PurgeResult,
    batches_text,
    combined,
    parse_age,
    purge,
)


class Command(BaseCommand):
    help = (
        "Delete idempotency records past their expiry (abandoned in-progress "
        "claims included), in small batches; safe to run while traffic flows."
    )

    # Under cron every few minutes, a system check warning of the project
    # (printed to stderr) would mail someone each run; the purge needs none.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            metavar="N",
            help=f"Rows deleted per transaction (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--pause",
            type=float,
            # None: not given, which an erasure needs to tell apart from 0.
            default=None,
            metavar="SECONDS",
            help="Wait this long between two batches, leaving the database to the "
            f"requests it serves meanwhile (default {DEFAULT_PAUSE:g}; 0 for none).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted, delete nothing.",
        )
        parser.add_argument(
            "--older-than",
            default=None,
            metavar="AGE",
            help="Extra margin past expiry before a record is deleted, e.g. 7d, 12h, 30m.",
        )
        parser.add_argument(
            "--database",
            default=None,
            metavar="ALIAS",
            help="Database alias holding the records (default: every alias of "
            'IDEMPOTENCY["DATABASE"]).',
        )
        parser.add_argument(
            "--scope",
            default=None,
            metavar="SCOPE",
            help="Erase every record of this scope (live ones too), e.g. for a "
            "data-protection request; nothing else is purged.",
        )
        parser.add_argument(
            "--user",
            default=None,
            metavar="ID",
            help="Erase every record of the user with this primary key (the default scope).",
        )
        parser.add_argument(
            "--include-in-progress",
            action="store_true",
            help="With --scope/--user: also delete records whose request may still be "
            "running (a retry could then run the operation again).",
        )

    def handle(
        self,
        *,
        batch_size: int,
        dry_run: bool,
        pause: float | None = None,
        older_than: str | timedelta | None,
        database: str | None,
        verbosity: int,
        scope: str | None = None,
        user: str | None = None,
        include_in_progress: bool = False,
        **options: Any,
    ) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be a positive number")
        if pause is not None and not 0 <= pause <= MAX_PAUSE:
            raise CommandError(f"--pause must be between 0 and {MAX_PAUSE:g} seconds")
        if scope is not None or user is not None:
            if older_than is not None:
                raise CommandError("--older-than cannot be combined with --scope or --user")
            if pause is not None:
                raise CommandError("--pause cannot be combined with --scope or --user")
            self._erase(scope, user, include_in_progress, batch_size, dry_run, database, verbosity)
            return
        if include_in_progress:
            raise CommandError("--include-in-progress needs --scope or --user")
        if pause is None:
            pause = DEFAULT_PAUSE
        if older_than is None:
            older_than = timedelta()
        elif isinstance(older_than, str):
            try:
                older_than = parse_age(older_than)
            except ValueError as exc:
                raise CommandError(f"--older-than: {exc}") from None

        # Batches commit one by one: a purge that fails halfway has deleted
        # what its earlier batches did, and says so.
        deleted = 0

        def on_batch(count: int) -> None:
            nonlocal deleted
            deleted += count
            if verbosity >= 2:
                self.stdout.write(f"  batch: deleted {count}")

        def failed(exc: DatabaseError) -> str:
            done = f" (after deleting {deleted} records)" if deleted else ""
            return f"{str(exc).strip()}{done}"

        app_settings = conf.get_settings()
        aliases = [database] if database is not None else list(app_settings.databases)
        results: list[PurgeResult] = []
        failures: list[str] = []
        for alias in aliases:
            deleted = 0
            try:
                result = purge(
                    older_than=older_than,
                    batch_size=batch_size,
                    dry_run=dry_run,
                    database=alias,
                    on_batch=on_batch,
                    pause=pause,
                )
            except ConnectionDoesNotExist as exc:
                raise CommandError(f"Unknown database alias: {exc}") from None
            except DatabaseError as exc:
                if len(aliases) == 1:
                    raise CommandError(f"Purge failed: {failed(exc)}") from None
                # One shard down must not keep the others from being purged.
                failures.append(f"{alias}: {failed(exc)}")
                continue
            results.append(result)
            if len(aliases) > 1 and verbosity >= 1:
                self.stdout.write(f"  {alias}: {self._summary(result)}")
        if results and verbosity >= 1:
            total = combined(results)
            self.stdout.write(
                self.style.SUCCESS(self._summary(total))
                if not total.dry_run
                else self._summary(total)
            )
        if failures:
            raise CommandError("Purge failed on " + "; ".join(failures))

    def _summary(self, result: PurgeResult) -> str:
        details = f"{result.expired} expired, {result.abandoned} abandoned in progress"
        if result.dry_run:
            return (
                f"Would delete {result.total} idempotency records ({details}); "
                f"counted in {result.seconds:.2f}s."
            )
        return (
            f"Deleted {result.total} idempotency records ({details}) "
            f"in {result.seconds:.2f}s, {batches_text(result.batches)}."
        )

    def _erase(
        self,
        scope: str | None,
        user: str | None,
        include_in_progress: bool,
        batch_size: int,
        dry_run: bool,
        database: str | None,
        verbosity: int,
    ) -> None:
        if scope is not None and user is not None:
            raise CommandError("give --scope or --user, not both")
        try:
            if user is not None:
                scope = scope_for_user(user)
            if not scope:
                raise ValueError("must not be empty")
        except ValueError as exc:
            raise CommandError(f"--{'user' if user is not None else 'scope'}: {exc}") from None
        try:
            result = erase(
                scope=scope,
                include_in_progress=include_in_progress,
                batch_size=batch_size,
                dry_run=dry_run,
                database=database,
            )
        except ConnectionDoesNotExist as exc:
            raise CommandError(f"Unknown database alias: {exc}") from None
        except DatabaseError as exc:
            raise CommandError(f"Erasure failed: {exc}") from None
        except ErasureIncomplete as exc:
            raise CommandError(f"Erasure incomplete, run it again: {exc}") from None

        if verbosity == 0:
            return
        self.stdout.write(self._erasure_summary(result))
        if result.kept_in_progress:
            # stderr: a script that checks only the exit status still shows
            # its operator that the erasure is not complete yet.
            self.stderr.write(
                self.style.WARNING(
                    f"Kept {result.kept_in_progress} in-progress idempotency records of "
                    f"scope {result.scope!r}: their requests may still be running. Run again "
                    "once they finish (after lock_timeout), or pass --include-in-progress."
                )
            )

    def _erasure_summary(self, result: ErasureResult) -> str:
        if result.dry_run:
            return (
                f"Would delete {result.deleted} idempotency records of scope "
                f"{result.scope!r}; counted in {result.seconds:.2f}s."
            )
        return self.style.SUCCESS(
            f"Deleted {result.deleted} idempotency records of scope {result.scope!r} "
            f"in {result.seconds:.2f}s, {batches_text(result.batches)}."
        )
