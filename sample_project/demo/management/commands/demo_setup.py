"""Create the two demo users and their tokens (again and again: it is idempotent),
then print how to call the sample API."""

import shlex
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from rest_framework.authtoken.models import Token

from ...walkthrough import first_steps

DEMO_USERS = ("alice", "bob")


def demo_tokens() -> dict[str, str]:
    """The demo users' tokens, creating users and tokens that do not exist yet."""
    User = get_user_model()
    tokens = {}
    for username in DEMO_USERS:
        user, created = User.objects.get_or_create(username=username)
        if created:
            # They authenticate with their API token only.
            user.set_unusable_password()
            user.save(update_fields=["password"])
        token, _ = Token.objects.get_or_create(user=user)
        tokens[username] = token.key
    return tokens


class Command(BaseCommand):
    help = "Create the demo users alice and bob with their API tokens, and print curl examples."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000/", help="Where the sample API is served."
        )

    def handle(self, *args: Any, url: str, **options: Any) -> None:
        tokens = demo_tokens()
        # A fresh key per run, so that the first call below really is a first call.
        steps = first_steps(tokens["alice"], uuid.uuid4().hex[:8])
        write = self.stdout.write
        write("")
        write(self.style.SUCCESS(f"django-idempotency sample API: {url}"))
        write(f"  index of the endpoint groups: curl -sS {shlex.quote(url)}")
        write(f"  OpenAPI: {url.rstrip('/')}/api/docs/ (Swagger UI), {url.rstrip('/')}/api/schema/")
        write(f"  a guest checkout to open in a browser: {url}checkout/")
        for username, key in tokens.items():
            write(f"  {username + ':':7}Authorization: Token {key}")
        write("")
        write("Paste these, one at a time (the 'ietf' group: the app's defaults):")
        for number, step in enumerate(steps, start=1):
            write("")
            write(self.style.MIGRATE_HEADING(f"# {number}. {step.title}"))
            line = step.call.curl(url)
            if step.duplicate:
                line = f"{line} & sleep 1; {line}; wait"
            write(line)
        write("")
        write("Every group's behaviour, request by request: make demo-script (in another shell).")
        write("Docs: https://django-idempotency.readthedocs.io/  Stop the server: Ctrl+C.")
        write("")
