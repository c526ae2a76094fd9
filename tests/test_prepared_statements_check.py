"""Check W005: a records database that prepares statements and looks like
PgBouncer, where prepared statements break before PgBouncer 1.21
(tests/concurrency/test_pgbouncer.py shows them failing there)."""

from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import override_settings

PREPARING = {"server_side_binding": True, "prepare_threshold": 5}


def records_database(**entries: Any) -> dict[str, dict[str, Any]]:
    """DATABASES with a PostgreSQL records alias; only the checks read it."""
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "records",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        **entries,
    }
    return {**settings.DATABASES, "bouncer": database}


def w004(**entries: Any) -> list[Any]:
    with (
        pytest.warns(UserWarning, match="DATABASES"),
        override_settings(
            DATABASES=records_database(**entries), IDEMPOTENCY={"DATABASE": "bouncer"}
        ),
    ):
        return [m for m in run_checks(tags=["compatibility"]) if m.id == "django_idempotency.W005"]


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param({"PORT": "6432"}, id="port 6432"),
        pytest.param({"PORT": 6432}, id="port 6432 as an int"),
        pytest.param({"HOST": "pgbouncer.internal"}, id="host named pgbouncer"),
    ],
)
def test_prepared_statements_behind_what_looks_like_pgbouncer_warn(entries: dict[str, Any]) -> None:
    (message,) = w004(OPTIONS=PREPARING, **entries)
    assert message.is_serious() is False
    assert "'bouncer'" in message.msg
    assert "prepare_threshold=5" in message.msg
    assert "guess" in message.msg
    assert "prepare_threshold" in message.hint and "SILENCED_SYSTEM_CHECKS" in message.hint


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param({"PORT": "6432", "OPTIONS": {"server_side_binding": True}}, id="no threshold"),
        pytest.param(
            {"PORT": "6432", "OPTIONS": {**PREPARING, "prepare_threshold": None}},
            id="threshold None",
        ),
        pytest.param({"PORT": "6432", "OPTIONS": {"prepare_threshold": 5}}, id="client binding"),
        pytest.param({"PORT": "5432", "OPTIONS": PREPARING}, id="PostgreSQL's port"),
        pytest.param(
            {"ENGINE": "django.db.backends.sqlite3", "PORT": "6432", "OPTIONS": PREPARING},
            id="not PostgreSQL",
        ),
    ],
)
def test_no_warning_where_nothing_is_prepared_or_nothing_suggests_pgbouncer(
    entries: dict[str, Any],
) -> None:
    assert w004(**entries) == []


def test_only_the_records_database_is_looked_at() -> None:
    with (
        pytest.warns(UserWarning, match="DATABASES"),
        override_settings(DATABASES=records_database(PORT="6432", OPTIONS=PREPARING)),
    ):
        assert not [m for m in run_checks() if m.id == "django_idempotency.W005"]


def test_w004_is_reported_by_check_and_can_be_silenced() -> None:
    databases = records_database(PORT="6432", OPTIONS=PREPARING)
    with (
        pytest.warns(UserWarning, match="DATABASES"),
        override_settings(DATABASES=databases, IDEMPOTENCY={"DATABASE": "bouncer"}),
    ):
        out, err = StringIO(), StringIO()
        call_command("check", stdout=out, stderr=err)  # a warning does not fail
        assert "django_idempotency.W005" in out.getvalue() + err.getvalue()
        with override_settings(SILENCED_SYSTEM_CHECKS=["django_idempotency.W005"]):
            out, err = StringIO(), StringIO()
            call_command("check", stdout=out, stderr=err)
            assert "W005" not in out.getvalue() + err.getvalue()
