"""Check W006: waiting duplicates would LISTEN on a database that looks like
PgBouncer, where a LISTEN is never heard and stays on a pooled connection."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

BOUNCER = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": "records",
    "HOST": "127.0.0.1",
    "PORT": "6432",
}
DIRECT = {**BOUNCER, "PORT": "5432"}


def w006(idempotency: dict[str, Any]) -> list[Any]:
    databases = {**settings.DATABASES, "bouncer": BOUNCER, "direct": DIRECT}
    with (
        pytest.warns(UserWarning, match="DATABASES"),
        override_settings(DATABASES=databases, IDEMPOTENCY=idempotency),
    ):
        return [m for m in run_checks(tags=["compatibility"]) if m.id == "django_idempotency.W006"]


def test_listening_on_the_records_database_behind_pgbouncer_warns() -> None:
    (message,) = w006({"DATABASE": "bouncer"})
    assert message.is_serious() is False
    assert "'bouncer'" in message.msg and "port 6432" in message.msg
    assert "LISTEN_DATABASE" in message.hint and "False" in message.hint


def test_a_listener_pointed_past_pgbouncer_is_not_warned_about() -> None:
    assert w006({"DATABASE": "bouncer", "LISTEN_DATABASE": "direct"}) == []
    assert w006({"DATABASE": "bouncer", "LISTEN_DATABASE": False}) == []
    assert w006({"DATABASE": "direct"}) == []


def test_a_listener_pointed_at_pgbouncer_is_warned_about() -> None:
    (message,) = w006({"DATABASE": "direct", "LISTEN_DATABASE": "bouncer"})
    assert "'direct'" in message.msg and "'bouncer'" in message.msg
