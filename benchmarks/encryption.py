"""What ENCRYPTION_KEYS costs: encrypted against plain, in the same run.

    python benchmarks/encryption.py [--db sqlite|postgresql] [--rounds 30] [--n 50]

For 1 KiB and 64 KiB response bodies it times, plain and sealed, interleaved
round by round (the machine's drift hits both alike):

- ``seal`` / ``open``: the cipher alone (AES-256-GCM, no I/O);
- ``encrypt+store``: ``store.complete()``, the UPDATE that stores a response;
- ``load+decrypt``: the record's read (``store.insert_or_fetch``) and
  ``store.stored_response()``, what a replay does before answering;
- ``first request`` / ``replay``: a whole request through Django's handler.

Each figure is the mean per operation of the fastest round: on a shared
machine other processes only ever add time, so the fastest of many short
rounds is the closest to the cost of the code itself. SQLite
runs with ``synchronous=OFF`` (and PostgreSQL with ``synchronous_commit=off``)
so that disk flushes, which encryption does not change, do not hide its CPU
cost. Needs the ``encryption`` extra (``cryptography``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common  # benchmarks/common.py, next to this file

SIZES = {"1 KiB": 1024, "64 KiB": 64 * 1024}
KEY = "q9kXXU0C9l3cK6yA3x5H0qg3Yk9jz2m7QyJr4Zc1x8w="  # benchmark only
HEADERS = [("Content-Type", "application/json"), ("Location", "/orders/1/")]


def configure(db: str, name: str) -> None:
    import django
    from django.conf import settings

    if db == "postgresql":
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "NAME": name,
            "CONN_MAX_AGE": None,
            "OPTIONS": {"options": "-c synchronous_commit=off"},
        }
    else:
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            "OPTIONS": {"init_command": "PRAGMA synchronous=OFF"},
        }
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        ROOT_URLCONF=__name__,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework",
            "django_idempotency",
        ],
        DATABASES={"default": database},
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": [],
            "DEFAULT_PERMISSION_CLASSES": [],
            "UNAUTHENTICATED_USER": None,
        },
        IDEMPOTENCY={"SCOPE": __name__ + ".one_client"},
    )
    django.setup()


def one_client(request: Any) -> str:
    return "bench"


urlpatterns: list[Any] = []


def build_urls() -> None:
    from django.urls import path
    from rest_framework.decorators import api_view
    from rest_framework.response import Response

    from django_idempotency import idempotent

    for size in SIZES.values():
        payload = {"data": "x" * (size - 12)}  # about ``size`` bytes of JSON

        @api_view(["POST"])
        @idempotent
        def view(request: Any, payload: dict[str, str] = payload) -> Response:
            return Response(payload, status=201)

        urlpatterns.append(path(f"{size}/", view))


def timed(operation: Callable[[int], object], n: int) -> float:
    """Mean seconds per call of ``operation(i)`` for i in range(n)."""
    started = time.perf_counter()
    for i in range(n):
        operation(i)
    return (time.perf_counter() - started) / n


def _cipher_ops(body: bytes, n: int) -> dict[str, dict[str, float]]:
    """``seal`` and ``open`` alone; "plain" is what the unencrypted path does instead."""
    from django_idempotency import encryption

    ring = encryption.Keyring(encryption.decode_keys([KEY]))
    lookup = "h" * 64
    plain_headers = json.dumps(HEADERS)
    sealed = encryption.seal_record(ring, lookup, 201, HEADERS, body)[1]
    return {
        "seal": {
            "plain": timed(lambda i: json.dumps(HEADERS), n),
            "sealed": timed(lambda i: encryption.seal_record(ring, lookup, 201, HEADERS, body), n),
        },
        "open": {
            "plain": timed(
                lambda i: encryption.open_record(None, lookup, 201, plain_headers, body), n
            ),
            "sealed": timed(
                lambda i: encryption.open_record(ring, lookup, 201, "sealed", sealed), n
            ),
        },
    }


def _new_record(tag: str) -> Any:
    from django_idempotency import store

    key = f"{tag}-{uuid.uuid4().hex}"
    return store.NewRecord(
        lookup_hash=key.ljust(64, "0")[:64],
        key=key,
        scope="bench",
        endpoint="POST bench/",
        method="POST",
        path="/bench/",
        fingerprints=("0" * 64,),
        request_id="r",
        ttl=timedelta(hours=24),
        lock_timeout=timedelta(minutes=1),
    )


def _store_ops(body: bytes, n: int, mode: str) -> dict[str, float]:
    """``encrypt+store`` (the UPDATE of ``complete``) and ``load+decrypt``
    (the record's read and ``stored_response``) under the current settings."""
    from django.db import connection

    from django_idempotency import store

    stored = store.StoredResponse(201, HEADERS, body, "r")
    news = [_new_record(mode) for _ in range(n)]
    claims = [store.insert_or_fetch(connection, new) for new in news]

    def complete(i: int) -> None:
        claim = claims[i]
        assert isinstance(claim, store.Claim)
        assert store.complete(connection, claim, stored)

    def load(i: int) -> None:
        found = store.insert_or_fetch(connection, news[i])
        assert isinstance(found, store.Existing)
        assert store.stored_response(found).body == body

    return {"encrypt+store": timed(complete, n), "load+decrypt": timed(load, n)}


def _request_ops(size: int, n: int, mode: str) -> dict[str, float]:
    """A first request with a new key, then its replay, through Django's handler."""
    from django.test import Client

    client = Client()
    keys = [f"{mode}-{uuid.uuid4().hex}" for _ in range(n)]

    def send(i: int) -> Any:
        return client.post(
            f"/{size}/", {}, content_type="application/json", HTTP_IDEMPOTENCY_KEY=keys[i]
        )

    def first(i: int) -> None:
        assert send(i).status_code == 201

    def replay(i: int) -> None:
        assert send(i)["Idempotent-Replayed"] == "true"

    return {"first request": timed(first, n), "replay": timed(replay, n)}


def measure(rounds: int, n: int) -> dict[str, dict[str, dict[str, float]]]:
    from django.core.management import call_command
    from django.test.utils import override_settings

    from django_idempotency import conf

    call_command("migrate", verbosity=0)
    modes = {
        "plain": {"SCOPE": __name__ + ".one_client"},
        "sealed": {"SCOPE": __name__ + ".one_client", "ENCRYPTION_KEYS": [KEY]},
    }
    samples: dict[str, dict[str, dict[str, list[float]]]] = {}
    # Round 0 warms up (imports, URL resolution, statement caches) and is dropped.
    for round_ in range(rounds + 1):
        # Alternate which mode goes first, so neither always runs on a warmer cache.
        order = list(modes) if round_ % 2 else list(reversed(modes))
        for label, size in SIZES.items():
            body = json.dumps({"data": "x" * (size - 12)}).encode()
            figures: dict[str, dict[str, float]] = _cipher_ops(body, n)
            for mode in order:
                with override_settings(IDEMPOTENCY=modes[mode]):
                    assert (conf.get_settings().keyring is None) == (mode == "plain")
                    measured = {**_store_ops(body, n, mode), **_request_ops(size, n, mode)}
                for what, seconds in measured.items():
                    figures.setdefault(what, {})[mode] = seconds
            if round_ == 0:
                continue
            for what, by_mode in figures.items():
                for mode, seconds in by_mode.items():
                    samples.setdefault(label, {}).setdefault(what, {}).setdefault(mode, [])
                    samples[label][what][mode].append(seconds)
    return {
        label: {
            what: {mode: min(values) for mode, values in by_mode.items()}
            for what, by_mode in cells.items()
        }
        for label, cells in samples.items()
    }


def report(figures: dict[str, dict[str, dict[str, float]]], db: str) -> str:
    lines = [
        f"ENCRYPTION_KEYS cost ({db}; fastest round, microseconds per operation)",
        "",
        f"{'body':<8} {'operation':<15} {'plain':>10} {'encrypted':>10} {'ratio':>7} {'added':>8}",
    ]
    for label, cells in figures.items():
        for what, modes in cells.items():
            plain, sealed = modes["plain"] * 1e6, modes["sealed"] * 1e6
            ratio = f"{sealed / plain:.2f}x" if what not in ("seal", "open") else "-"
            lines.append(
                f"{label:<8} {what:<15} {plain:>10.1f} {sealed:>10.1f} {ratio:>7} "
                f"{sealed - plain:>+8.1f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--n", type=int, default=50, help="operations per round and cell")
    args = parser.parse_args()
    if args.db == "postgresql":
        name = common.pg_name("encryption")
        common.fresh_pg_database(name)
    else:
        name = str(Path(tempfile.gettempdir()) / f"bench-encryption-{os.getpid()}.sqlite3")
    try:
        configure(args.db, name)
        build_urls()
        figures = measure(args.rounds, args.n)
    finally:
        if args.db == "postgresql":
            from django.db import connections

            connections.close_all()
            common.drop_pg_database(name)
        else:
            Path(name).unlink(missing_ok=True)
    print(report(figures, args.db))


if __name__ == "__main__":
    main()
