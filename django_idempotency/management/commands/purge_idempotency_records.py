"""``manage.py purge_idempotency_records``: the purge, for cron and timers.

Exit status: 0 when the purge ran (even if nothing was due), 1 with a message
on stderr when it could not run (bad option, unknown alias, database error).
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils.connection import ConnectionDoesNotExist

from django_idempotency.purge import DEFAULT_BATCH_SIZE, batches_text, parse_age, purge


class Command(BaseCommand):
    help = (
        "Delete idempotency records past their expiry and in-progress records "
        "abandoned long ago, in small batches; safe to run while traffic flows."
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
            "--dry-run",
            action="store_true",
            help="Count what would be deleted, delete nothing.",
        )
        parser.add_argument(
            "--older-than",
            default="0s",
            metavar="AGE",
            help="Extra margin past expiry before a record is deleted, e.g. 7d, 12h, 30m.",
        )
        parser.add_argument(
            "--database",
            default=None,
            metavar="ALIAS",
            help='Database alias holding the records (default: IDEMPOTENCY["DATABASE"]).',
        )

    def handle(
        self,
        *,
        batch_size: int,
        dry_run: bool,
        older_than: str | timedelta,
        database: str | None,
        verbosity: int,
        **options: Any,
    ) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be a positive number")
        if isinstance(older_than, str):
            try:
                older_than = parse_age(older_than)
            except ValueError as exc:
                raise CommandError(f"--older-than: {exc}") from None

        def report_batch(count: int) -> None:
            self.stdout.write(f"  batch: deleted {count}")

        try:
            result = purge(
                older_than=older_than,
                batch_size=batch_size,
                dry_run=dry_run,
                database=database,
                on_batch=report_batch if verbosity >= 2 else None,
            )
        except ConnectionDoesNotExist as exc:
            raise CommandError(f"Unknown database alias: {exc}") from None
        except DatabaseError as exc:
            raise CommandError(f"Purge failed: {exc}") from None

        if verbosity == 0:
            return
        details = f"{result.expired} expired, {result.abandoned} abandoned in progress"
        if result.dry_run:
            self.stdout.write(
                f"Would delete {result.total} idempotency records ({details}); "
                f"counted in {result.seconds:.2f}s."
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Deleted {result.total} idempotency records ({details}) "
                    f"in {result.seconds:.2f}s, {batches_text(result.batches)}."
                )
            )
