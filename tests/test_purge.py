import datetime as dt
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django import Settings

from django_idempotency import purge as purge_module
from django_idempotency.models import IdempotencyRecord, State
from django_idempotency.purge import PurgeResult, delete_in_batches, parse_age, purge

from .factories import RecordFactory

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


def expired(
    n: int = 1, *, ago: dt.timedelta = dt.timedelta(minutes=5), **kwargs: Any
) -> list[IdempotencyRecord]:
    created = timezone.now() - ago - dt.timedelta(hours=24)
    return RecordFactory.create_batch(
        n, created_at=created, expires_at=created + dt.timedelta(hours=24), **kwargs
    )


def live(n: int = 1, **kwargs: Any) -> list[IdempotencyRecord]:
    return RecordFactory.create_batch(n, **kwargs)


def in_progress(
    *, lock_ran_out_ago: dt.timedelta, expired_ago: dt.timedelta | None = None
) -> IdempotencyRecord:
    """A claim; by default its expiry is 23 hours after its lock's."""
    locked_until = timezone.now() - lock_ran_out_ago
    expires_at = (
        locked_until + dt.timedelta(hours=23)
        if expired_ago is None
        else timezone.now() - expired_ago
    )
    return RecordFactory(
        state=State.IN_PROGRESS,
        created_at=locked_until - dt.timedelta(seconds=60),
        locked_until=locked_until,
        expires_at=expires_at,
        completed_at=None,
        response_status=None,
        response_headers="",
        response_body=None,
    )


def remaining_ids() -> set[int]:
    return set(IdempotencyRecord.objects.values_list("pk", flat=True))


def delete_statements(queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # On PostgreSQL the batch's DELETE sits in a WITH statement.
    return [q for q in queries if "DELETE" in q["sql"].upper()]


@pytest.fixture(params=["returning", "select-then-delete"])
def each_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with one statement per batch, then with MySQL's way (no
    RETURNING: the batch's rows are read first) on the same database."""
    if request.param == "select-then-delete":
        monkeypatch.setattr(purge_module, "_deletes_returning", lambda connection: False)
    return str(request.param)


# --- the purge function ---------------------------------------------------------


def test_deletes_expired_records_and_keeps_live_ones() -> None:
    old = expired(3)
    keep = live(2)

    result = purge()

    assert result.expired == 3
    assert result.abandoned == 0
    assert result.total == 3
    assert remaining_ids() == {r.pk for r in keep}
    assert not IdempotencyRecord.objects.filter(pk__in=[r.pk for r in old]).exists()


def test_abandoned_claims_are_deleted_once_expired_and_counted_apart(each_way: str) -> None:
    # The worker died long ago, nobody retried: gone with the expired records.
    abandoned = in_progress(
        lock_ran_out_ago=dt.timedelta(days=1), expired_ago=dt.timedelta(hours=1)
    )
    # Abandoned but not expired yet: a retry still takes it over, so it stays
    # (it used to go one hour after its lock ran out).
    stuck = in_progress(lock_ran_out_ago=dt.timedelta(hours=2))
    running = in_progress(lock_ran_out_ago=-dt.timedelta(minutes=1))
    # A completed record keeps its old locked_until: it is not abandoned.
    completed = RecordFactory(
        locked_until=timezone.now() - dt.timedelta(days=1),
        created_at=timezone.now() - dt.timedelta(days=1, minutes=1),
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )
    old = expired(2)

    result = purge()

    assert (result.expired, result.abandoned) == (2, 1)
    assert remaining_ids() == {stuck.pk, running.pk, completed.pk}
    assert abandoned.pk not in remaining_ids()
    assert not {r.pk for r in old} & remaining_ids()


def test_older_than_adds_a_margin_to_expiry_of_completed_and_abandoned_records() -> None:
    expired(2, ago=dt.timedelta(days=8))
    recent = expired(1, ago=dt.timedelta(days=2))
    abandoned_long_ago = in_progress(
        lock_ran_out_ago=dt.timedelta(days=4), expired_ago=dt.timedelta(days=3)
    )
    abandoned_lately = in_progress(
        lock_ran_out_ago=dt.timedelta(days=3), expired_ago=dt.timedelta(hours=2)
    )

    result = purge(older_than=dt.timedelta(days=2, hours=12))

    assert (result.expired, result.abandoned) == (2, 1)
    assert remaining_ids() == {recent[0].pk, abandoned_lately.pk}
    assert abandoned_long_ago.pk not in remaining_ids()


def test_deletes_in_batches_of_the_given_size(each_way: str) -> None:
    expired(25)
    in_progress(lock_ran_out_ago=dt.timedelta(hours=3), expired_ago=dt.timedelta(hours=2))
    keep = live(3)

    with CaptureQueriesContext(connection) as ctx:
        result = purge(batch_size=10)

    # 10 + 10 + 6, the abandoned claim with the expired records.
    assert result.batches == 3
    assert (result.expired, result.abandoned) == (25, 1)
    assert remaining_ids() == {r.pk for r in keep}
    if each_way == "returning":
        assert len(delete_statements(ctx.captured_queries)) == 3


def test_records_expiring_at_the_same_instant_across_batches_all_go(each_way: str) -> None:
    # Each batch starts at the latest expiry the previous one deleted: rows
    # sharing it that did not fit into that batch are still found.
    at = timezone.now() - dt.timedelta(hours=1)
    RecordFactory.create_batch(7, created_at=at - dt.timedelta(hours=24), expires_at=at)
    expired(2, ago=dt.timedelta(minutes=1))
    keep = live(1)

    result = purge(batch_size=3)

    assert result.expired == 9
    assert result.batches == 3
    assert remaining_ids() == {keep[0].pk}


@pytest.mark.django_db(transaction=True)
def test_each_batch_is_committed_before_the_next_one_starts() -> None:
    expired(6)
    observer = connections.create_connection("default")
    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    seen_by_others = []

    def look(count: int) -> None:
        with observer.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            seen_by_others.append(cursor.fetchone()[0])

    try:
        purge(batch_size=2, on_batch=look)
    finally:
        observer.close()

    # Another connection sees each batch's deletions as soon as it ran.
    assert seen_by_others == [4, 2, 0]


@pytest.mark.django_db(transaction=True)
def test_a_pause_separates_committed_batches_and_none_follows_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expired(5)
    observer = connections.create_connection("default")
    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    pauses: list[tuple[float, int]] = []

    def pause(seconds: float) -> None:  # the clock moves; nobody sleeps
        with observer.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            pauses.append((seconds, cursor.fetchone()[0]))

    monkeypatch.setattr(purge_module, "_sleep", pause)
    try:
        result = purge(batch_size=2, pause=0.25)
    finally:
        observer.close()

    # Each pause comes after a batch was committed, seen by another connection.
    assert (result.expired, result.batches) == (5, 3)
    assert pauses == [(0.25, 3), (0.25, 1)]


def test_five_milliseconds_between_batches_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    expired(5)
    pauses: list[float] = []
    monkeypatch.setattr(purge_module, "_sleep", pauses.append)
    assert purge(batch_size=2).batches == 3
    assert pauses == [0.005, 0.005]


def test_a_zero_pause_purges_without_pausing(monkeypatch: pytest.MonkeyPatch) -> None:
    expired(5)
    monkeypatch.setattr(purge_module, "_sleep", lambda seconds: pytest.fail("paused"))
    assert purge(batch_size=2, pause=0).batches == 3


def test_a_record_renewed_between_select_and_delete_is_kept(each_way: str) -> None:
    victim, other = expired(2)
    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    renewed_at = timezone.now() + dt.timedelta(hours=24)

    def renew_first(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        # A takeover that renews the record commits just before our DELETE.
        if "DELETE" in sql.upper():
            execute(
                f"UPDATE {table} SET expires_at = %s WHERE id = %s",
                [connection.ops.adapt_datetimefield_value(renewed_at), victim.pk],
                False,
                context,
            )
        return execute(sql, params, many, context)

    with connection.execute_wrapper(renew_first):
        result = purge()

    assert result.expired == 1
    assert remaining_ids() == {victim.pk}
    assert other.pk not in remaining_ids()


def test_dry_run_counts_what_the_purge_then_deletes() -> None:
    expired(4)
    # Abandoned and expired: counted (and deleted) as abandoned.
    in_progress(lock_ran_out_ago=dt.timedelta(days=2), expired_ago=dt.timedelta(hours=1))
    # Abandoned, not expired: neither counted nor deleted.
    in_progress(lock_ran_out_ago=dt.timedelta(hours=2))
    # Expired, but its claim still runs: neither.
    in_progress(lock_ran_out_ago=-dt.timedelta(minutes=1), expired_ago=dt.timedelta(minutes=1))
    live(2)
    before = remaining_ids()

    with CaptureQueriesContext(connection) as ctx:
        result = purge(dry_run=True)

    assert result == PurgeResult(
        expired=4, abandoned=1, batches=0, dry_run=True, seconds=result.seconds
    )
    assert delete_statements(ctx.captured_queries) == []
    assert remaining_ids() == before
    deleted = purge()
    assert (deleted.expired, deleted.abandoned) == (4, 1)


def test_uses_the_records_database_alias_from_the_setting(settings: Settings) -> None:
    expired(1)
    settings.IDEMPOTENCY = {"DATABASE": "elsewhere"}
    with pytest.raises(Exception, match="elsewhere"):
        purge()
    assert purge(database="default").expired == 1


def test_rejects_a_bad_batch_size_negative_age_and_bad_pause() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        purge(batch_size=0)
    for pause in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="pause must be between 0 and 60 seconds"):
            purge(pause=pause)
    with pytest.raises(ValueError, match="older_than"):
        purge(older_than=-dt.timedelta(seconds=1))
    with pytest.raises(ValueError, match="batch_size"):
        delete_in_batches(IdempotencyRecord.objects.all(), batch_size=0)


def test_logs_one_debug_line_and_nothing_louder(caplog: pytest.LogCaptureFixture) -> None:
    expired(2)
    caplog.set_level(logging.DEBUG, logger="django_idempotency")

    purge()

    records = [r for r in caplog.records if r.name == "django_idempotency"]
    assert [r.levelno for r in records] == [logging.DEBUG]
    assert "2 expired, 0 abandoned in 1 batch," in records[0].getMessage()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", dt.timedelta(days=7)),
        ("12h", dt.timedelta(hours=12)),
        ("30m", dt.timedelta(minutes=30)),
        ("45s", dt.timedelta(seconds=45)),
        ("2w", dt.timedelta(weeks=2)),
        ("1d12h", dt.timedelta(days=1, hours=12)),
        (" 0s ", dt.timedelta()),
    ],
)
def test_parse_age(text: str, expected: dt.timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-1d", "7 d", "1.5h", "7days"])
def test_parse_age_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid age"):
        parse_age(text)


@pytest.mark.django_db(transaction=True)
def test_a_record_renewed_while_the_delete_waits_for_it_is_kept(each_way: str) -> None:
    # A takeover renews an expired record and commits while the purge's
    # DELETE waits for that row: the DELETE must judge the renewed row, not
    # the version its batch picked.
    victim, other = expired(2)
    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    renewer = connections.create_connection("default")
    results: list[PurgeResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(purge())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    try:
        renewer.set_autocommit(False)
        with renewer.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET expires_at = %s WHERE id = %s",
                [
                    renewer.ops.adapt_datetimefield_value(timezone.now() + dt.timedelta(hours=24)),
                    victim.pk,
                ],
            )
        purging = threading.Thread(target=run)
        purging.start()
        purging.join(timeout=1)  # the DELETE now waits for the renewer's row lock
        renewer.commit()
        purging.join(timeout=30)
    finally:
        renewer.close()

    assert errors == []
    assert [r.expired for r in results] == [1]
    assert remaining_ids() == {victim.pk}
    assert other.pk not in remaining_ids()


@pytest.mark.django_db(transaction=True)
def test_two_purges_at_once_neither_fails_nor_double_counts(each_way: str) -> None:
    total = 300
    expired(total)
    results: list[PurgeResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            results.append(purge(batch_size=7))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sum(r.expired for r in results) == total
    assert IdempotencyRecord.objects.count() == 0


# --- the command ------------------------------------------------------------------


def run_command(*args: str, **kwargs: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("purge_idempotency_records", *args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def test_command_deletes_and_reports_count_and_duration() -> None:
    expired(3)
    in_progress(lock_ran_out_ago=dt.timedelta(hours=2), expired_ago=dt.timedelta(hours=1))
    in_progress(lock_ran_out_ago=dt.timedelta(hours=2))
    live(1)

    out, err = run_command()

    assert "Deleted 4 idempotency records (3 expired, 1 abandoned in progress) in " in out
    assert "s, 1 batch." in out
    assert err == ""
    assert IdempotencyRecord.objects.count() == 2


def test_command_dry_run_reports_what_the_run_then_deletes() -> None:
    expired(3)
    in_progress(lock_ran_out_ago=dt.timedelta(hours=2), expired_ago=dt.timedelta(hours=1))
    in_progress(lock_ran_out_ago=dt.timedelta(hours=2))

    dry, _ = run_command("--dry-run")
    out, _ = run_command()

    assert "Would delete 4 idempotency records (3 expired, 1 abandoned in progress)" in dry
    assert "Deleted 4 idempotency records (3 expired, 1 abandoned in progress)" in out


def test_command_dry_run() -> None:
    expired(3)

    out, _ = run_command("--dry-run")

    assert "Would delete 3 idempotency records (3 expired, 0 abandoned in progress)" in out
    assert IdempotencyRecord.objects.count() == 3


def test_command_batch_size() -> None:
    expired(7)

    with CaptureQueriesContext(connection) as ctx:
        out, _ = run_command("--batch-size", "3", "-v", "2")

    assert len(delete_statements(ctx.captured_queries)) == 3
    assert out.count("batch: deleted") == 3
    assert "batch: deleted 3" in out and "batch: deleted 1" in out
    assert "3 batches" in out


def test_command_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    expired(7)
    pauses: list[float] = []
    monkeypatch.setattr(purge_module, "_sleep", pauses.append)

    out, _ = run_command("--batch-size", "3", "--pause", "0.05")

    assert "Deleted 7 " in out and "3 batches" in out
    assert pauses == [0.05, 0.05]


def test_command_pauses_five_milliseconds_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expired(7)
    pauses: list[float] = []
    monkeypatch.setattr(purge_module, "_sleep", pauses.append)

    run_command("--batch-size", "3")
    assert pauses == [0.005, 0.005]

    expired(7)
    pauses.clear()
    out, _ = run_command("--batch-size", "3", "--pause", "0")
    assert "Deleted 7 " in out and pauses == []


def test_command_older_than() -> None:
    expired(2, ago=dt.timedelta(hours=13))
    expired(1, ago=dt.timedelta(hours=11))

    out, _ = run_command("--older-than", "12h")

    assert "Deleted 2 " in out
    assert IdempotencyRecord.objects.count() == 1


def test_command_database_option(settings: Settings) -> None:
    expired(2)
    settings.IDEMPOTENCY = {"DATABASE": "elsewhere"}

    out, _ = run_command("--database", "default")

    assert "Deleted 2 " in out
    with pytest.raises(CommandError, match=r"Unknown database alias.*nowhere"):
        run_command("--database", "nowhere")


def test_command_verbosity_zero_is_silent() -> None:
    expired(2)

    out, err = run_command("-v", "0")

    assert (out, err) == ("", "")
    assert IdempotencyRecord.objects.count() == 0


def test_command_keyword_arguments_from_python() -> None:
    expired(2, ago=dt.timedelta(days=3))
    expired(1)

    out, _ = run_command(older_than=dt.timedelta(days=1), batch_size=1)

    assert "Deleted 2 " in out and "2 batches" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be a positive number"),
        (["--older-than", "soon"], "--older-than: invalid age 'soon'"),
        (["--pause", "-1"], "--pause must be between 0 and 60 seconds"),
        (["--pause", "nan"], "--pause must be between 0 and 60 seconds"),
        (["--pause", "61"], "--pause must be between 0 and 60 seconds"),
        (["--pause", "0.1", "--user", "7"], "--pause cannot be combined with --scope or --user"),
        (["--pause", "0", "--scope", "u:7"], "--pause cannot be combined with --scope or --user"),
    ],
)
def test_command_rejects_bad_options(args: list[Any], message: str) -> None:
    expired(1)
    with pytest.raises(CommandError, match=message):
        run_command(*args)
    assert IdempotencyRecord.objects.count() == 1


def _run_manage(tmp_path: Path, settings_body: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "purge_test_settings.py").write_text(settings_body)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "purge_test_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", "purge_idempotency_records", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )


def test_command_exits_non_zero_with_message_on_stderr_when_the_database_fails(
    tmp_path: Path,
) -> None:
    unreachable = (
        "from tests.settings import *\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql',\n"
        "    'HOST': '127.0.0.1', 'PORT': '1', 'NAME': 'none', 'USER': 'postgres',\n"
        "    'OPTIONS': {'connect_timeout': 5}}}\n"
    )

    proc = _run_manage(tmp_path, unreachable)

    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "CommandError: Purge failed:" in proc.stderr


@pytest.mark.django_db(transaction=True)
def test_command_from_the_shell_exits_zero_and_is_silent_with_v0(tmp_path: Path) -> None:
    expired(2)
    live(1)
    current = connection.settings_dict
    same_database = (
        f"from tests.settings import *\nDATABASES['default']['NAME'] = {current['NAME']!r}\n"
    )

    proc = _run_manage(tmp_path, same_database, "-v", "0")

    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert IdempotencyRecord.objects.count() == 1


def test_works_without_use_tz(settings: Settings) -> None:
    # The engine writes the database's UTC clock whatever USE_TZ says.
    old = expired(2)
    keep = live(1)
    settings.USE_TZ = False

    result = purge(older_than=dt.timedelta(minutes=1))

    assert result.expired == 2
    settings.USE_TZ = True
    assert remaining_ids() == {keep[0].pk}
    assert old[0].pk not in remaining_ids()


@pytest.mark.django_db(databases=["default", "records"])
def test_purges_the_records_alias_from_the_setting(settings: Settings) -> None:
    settings.IDEMPOTENCY = {"DATABASE": "records"}
    RecordFactory._meta.database = "records"  # type: ignore[attr-defined]  # see test_admin
    try:
        expired(2)
    finally:
        RecordFactory._meta.database = "default"  # type: ignore[attr-defined]
    on_default = expired(1)

    assert purge().expired == 2
    assert not IdempotencyRecord.objects.using("records").exists()
    assert IdempotencyRecord.objects.using("default").get().pk == on_default[0].pk

    out, _ = run_command("--database", "default")
    assert "Deleted 1 " in out
    assert not IdempotencyRecord.objects.using("default").exists()


def test_an_expired_record_whose_claim_is_still_live_is_kept() -> None:
    # A takeover of an abandoned claim near the end of ttl: expired by
    # expires_at, but a worker runs its view right now.
    now = timezone.now()
    running = RecordFactory(
        state=State.IN_PROGRESS,
        created_at=now - dt.timedelta(hours=24, minutes=1),
        expires_at=now - dt.timedelta(minutes=1),
        locked_until=now + dt.timedelta(seconds=50),
        completed_at=None,
        response_status=None,
        response_headers="",
        response_body=None,
    )
    old = expired(1)

    result = purge()

    assert result.expired == 1
    assert remaining_ids() == {running.pk}
    assert old[0].pk not in remaining_ids()


@pytest.mark.parametrize("age", ["99999999999d", "36501d", "99999999999999w"])
def test_an_age_too_large_is_a_command_error_not_a_traceback(age: str) -> None:
    with pytest.raises(CommandError, match="too large"):
        call_command("purge_idempotency_records", "--older-than", age)


def test_one_batch_is_reported_in_the_singular() -> None:
    expired(1)
    out = StringIO()
    call_command("purge_idempotency_records", stdout=out)
    assert "1 batch." in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_purge_leaves_the_sessions_settings_alone() -> None:
    # On PostgreSQL each batch commits asynchronously, by a setting local to
    # its own transaction: the connection's later transactions stay durable.
    expired(3)
    if connection.vendor != "postgresql":
        assert purge(batch_size=2).expired == 3
        return
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        before = cursor.fetchone()[0]

    assert purge(batch_size=2).expired == 3

    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == before


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
def test_batches_resume_where_the_last_stopped_whatever_the_time_zone(
    settings: Settings, zone: str
) -> None:
    # Each batch starts at the expiry where the previous one stopped. Read in
    # the wrong zone, that bound would jump hours ahead and leave rows behind.
    settings.TIME_ZONE = zone
    now = timezone.now()
    for hours in range(1, 12):
        RecordFactory.create_batch(
            3,
            created_at=now - dt.timedelta(hours=hours, days=1),
            expires_at=now - dt.timedelta(hours=hours),
        )
    keep = live(2)

    result = purge(batch_size=4)

    assert result.expired == 33
    assert remaining_ids() == {r.pk for r in keep}
