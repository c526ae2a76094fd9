"""``manage.py demo_client --url URL``: the retrying client of
``django_idempotency.client`` against the running demo (``make demo``).

Each transfer is sent with a read timeout shorter than the operation
(``X-Demo-Delay``): the first attempt times out, the retry with the same key
finds the first still running (409) and waits, the next gets the replay. One
transfer per logical operation, whatever the network did.
"""

from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandParser
from rest_framework.authtoken.models import Token

from django_idempotency.client import IdempotentTransport, RetryPolicy

from ...models import Transfer


class Command(BaseCommand):
    help = "Send transfers through the retrying client, with answers slower than its timeout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/")
        parser.add_argument("--transfers", type=int, default=3)
        parser.add_argument("--delay", type=float, default=1.5, help="seconds each transfer takes")
        parser.add_argument("--timeout", type=float, default=0.5, help="the client's read timeout")

    def handle(self, *args: Any, **options: Any) -> None:
        token = Token.objects.get(user__username="alice").key
        before = Transfer.objects.count()
        policy = RetryPolicy(base_delay=0.2, max_delay=2.0, deadline=30.0)
        client = httpx.Client(
            base_url=options["url"],
            transport=IdempotentTransport(policy=policy),
            timeout=httpx.Timeout(5.0, read=options["timeout"]),
            headers={"Authorization": f"Token {token}", "X-Demo-Delay": str(options["delay"])},
        )
        with client:
            for number in range(options["transfers"]):
                response = client.post(
                    "orzcash/transfers/",
                    json={"amount": "10.00", "currency": "USDT", "destination": f"wallet-{number}"},
                )
                report = response.extensions["idempotency"]
                self.stdout.write(
                    f"transfer {number + 1}: {response.status_code} after {report.attempts} "
                    f"attempts ({', '.join(str(outcome) for outcome in report.outcomes)}), "
                    f"replayed: {response.headers.get('Idempotent-Replayed') == 'true'}"
                )
        made = Transfer.objects.count() - before
        self.stdout.write(
            self.style.SUCCESS(f"{options['transfers']} transfers asked for, {made} made.")
        )
