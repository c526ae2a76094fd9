"""Send the demo requests to the running sample API and print each exchange."""

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from ...walkthrough import walk
from .demo_setup import demo_tokens


class Command(BaseCommand):
    help = (
        "Walk through every endpoint group of the running sample API, printing each "
        "request and response. Exits with status 1 if a response differs from the "
        "documented behaviour."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000/", help="Where the sample API is served."
        )

    def handle(self, *args: Any, url: str, **options: Any) -> None:
        try:
            tokens = demo_tokens()
        except DatabaseError as exc:
            raise CommandError(
                f"The sample database is not ready ({exc}). Run `make demo` first."
            ) from None
        try:
            surprises = walk(
                tokens["alice"], tokens["bob"], url, self.stdout.write, run=uuid.uuid4().hex[:8]
            )
        except OSError as exc:
            raise CommandError(
                f"Cannot reach the sample API at {url} ({exc}). Start it with `make demo` "
                "in another shell first."
            ) from None
        self.stdout.write("")
        if surprises:
            raise CommandError(f"{surprises} response(s) differed from the documented behaviour.")
        self.stdout.write(self.style.SUCCESS("Every response was as documented."))
