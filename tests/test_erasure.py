"""Erasure: every record of one caller deleted, in the database and in Redis,
for data-protection requests; by ``erase()`` and by the purge command."""

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

import django_idempotency
from django_idempotency.erasure import ErasureIncomplete, erase
from django_idempotency.models import IdempotencyRecord, State
from tests.factories import CLIENT_SCOPE, RecordFactory, UserFactory, api_client
from tests.helpers import fingerprint_for, needs_redis
from tests.settings import REDIS_URL
from tests.testapp.models import Payment

REPO = Path(__file__).resolve().parent.parent
OTHER_SCOPE = "user:other"
pytestmark = pytest.mark.django_db


def post(client: APIClient, key: str, amount: int = 1) -> Any:
    return client.post("/function/", {"amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def client_for(user: User) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def running(scope: str = CLIENT_SCOPE, **kwargs: Any) -> IdempotencyRecord:
    """An in-progress record whose request is still running (its lock is live)."""
    now = timezone.now()
    return RecordFactory(
        scope=scope,
        state=State.IN_PROGRESS,
        created_at=now,
        locked_until=now + dt.timedelta(seconds=60),
        completed_at=None,
        response_status=None,
        response_headers="",
        response_body=None,
        **kwargs,
    )


def abandoned(scope: str = CLIENT_SCOPE) -> IdempotencyRecord:
    record = running(scope)
    record.locked_until = timezone.now() - dt.timedelta(seconds=1)
    record.save()
    return record


def expired(scope: str = CLIENT_SCOPE) -> IdempotencyRecord:
    created = timezone.now() - dt.timedelta(days=2)
    return RecordFactory(scope=scope, created_at=created, expires_at=created + dt.timedelta(days=1))


def scopes_left() -> list[str]:
    return sorted(IdempotencyRecord.objects.values_list("scope", flat=True))


def delete_statements(queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [q for q in queries if q["sql"].lstrip().upper().startswith("DELETE")]


# --- erase() ----------------------------------------------------------------------


def test_deletes_every_record_of_the_scope_and_nothing_else() -> None:
    RecordFactory.create_batch(3)
    expired()
    abandoned()
    others = [*RecordFactory.create_batch(2, scope=OTHER_SCOPE), expired(OTHER_SCOPE)]

    result = erase(scope=CLIENT_SCOPE)

    assert (result.deleted, result.kept_in_progress, result.dry_run) == (5, 0, False)
    assert set(IdempotencyRecord.objects.values_list("pk", flat=True)) == {r.pk for r in others}


def test_a_request_still_running_keeps_its_record_unless_asked() -> None:
    RecordFactory()
    busy = running()

    result = erase(scope=CLIENT_SCOPE)

    assert (result.deleted, result.kept_in_progress) == (1, 1)
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [busy.pk]

    forced = erase(scope=CLIENT_SCOPE, include_in_progress=True)

    assert (forced.deleted, forced.kept_in_progress) == (1, 0)
    assert not IdempotencyRecord.objects.exists()


def test_a_running_request_keeps_its_key_locked_after_an_erasure() -> None:
    # What keeping it is for: a retry of that request still gets 409; it does
    # not run the payment a second time while the first may still run.
    running(key="still-running", fingerprint=fingerprint_for("/function/", {"amount": 1}))

    erase(scope=CLIENT_SCOPE)
    retry = post(api_client(), "still-running")

    assert retry.status_code == 409
    assert retry.json()["code"] == "idempotency_request_in_progress"
    assert Payment.objects.count() == 0


def test_after_erasure_the_key_is_unknown_and_a_retry_runs_again() -> None:
    client = api_client()
    assert post(client, "pay-1").status_code == 201

    erase(scope=CLIENT_SCOPE)
    again = post(client, "pay-1")

    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert Payment.objects.count() == 2


def test_erases_a_users_records_by_the_default_scope() -> None:
    alice, bob = UserFactory(), UserFactory()
    for key in ("a-1", "a-2"):
        assert post(client_for(alice), key).status_code == 201
    assert post(client_for(bob), "b-1").status_code == 201
    assert post(api_client(), "k-1").status_code == 201

    result = erase(user=alice)

    assert result.deleted == 2
    assert result.scope == f"user:{alice.pk}"
    assert scopes_left() == sorted([CLIENT_SCOPE, f"user:{bob.pk}"])


def test_a_deleted_user_is_named_by_primary_key() -> None:
    user = UserFactory()
    assert post(client_for(user), "gone-1").status_code == 201
    pk = user.pk
    Token.objects.filter(user=user).delete()
    user.delete()

    assert erase(user=str(pk)).deleted == 1
    assert not IdempotencyRecord.objects.exists()


def test_deletes_in_batches_of_the_given_size() -> None:
    RecordFactory.create_batch(5)
    RecordFactory(scope=OTHER_SCOPE)

    with CaptureQueriesContext(connection) as ctx:
        result = erase(scope=CLIENT_SCOPE, batch_size=2)

    assert (result.deleted, result.batches) == (5, 3)
    assert len(delete_statements(ctx.captured_queries)) == 3
    assert scopes_left() == [OTHER_SCOPE]


def test_a_record_taken_over_between_select_and_delete_stays() -> None:
    victim = abandoned()
    other = RecordFactory()
    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    relocked = timezone.now() + dt.timedelta(seconds=60)

    def take_over_first(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        # A retry takes the abandoned claim over just before our DELETE.
        if sql.lstrip().upper().startswith("DELETE"):
            execute(
                f"UPDATE {table} SET locked_until = %s WHERE id = %s",
                [connection.ops.adapt_datetimefield_value(relocked), victim.pk],
                False,
                context,
            )
        return execute(sql, params, many, context)

    with connection.execute_wrapper(take_over_first):
        result = erase(scope=CLIENT_SCOPE)

    assert (result.deleted, result.kept_in_progress) == (1, 1)
    assert not IdempotencyRecord.objects.filter(pk=other.pk).exists()
    assert IdempotencyRecord.objects.filter(pk=victim.pk).exists()


def test_dry_run_counts_and_deletes_nothing() -> None:
    RecordFactory.create_batch(2)
    running()
    before = IdempotencyRecord.objects.count()

    with CaptureQueriesContext(connection) as ctx:
        result = erase(scope=CLIENT_SCOPE, dry_run=True)

    assert (result.deleted, result.kept_in_progress, result.dry_run) == (2, 1, True)
    assert delete_statements(ctx.captured_queries) == []
    assert IdempotencyRecord.objects.count() == before


def test_a_scope_longer_than_its_column_is_found_as_stored() -> None:
    long_scope = "tenant:" + "x" * 400
    assert post(api_client(), "long", 1).status_code == 201  # an unrelated record
    RecordFactory(scope=long_scope[:255])

    assert erase(scope=long_scope).deleted == 1
    assert scopes_left() == [CLIENT_SCOPE]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of scope= or user="),
        ({"scope": "user:1", "user": 1}, "exactly one of scope= or user="),
        ({"scope": ""}, "non-empty"),
        ({"user": "not-a-number"}, "not a user primary key"),
        ({"scope": "user:1", "batch_size": 0}, "batch_size"),
    ],
)
def test_rejects_what_names_no_caller(kwargs: dict[str, Any], message: str) -> None:
    RecordFactory()
    with pytest.raises(ValueError, match=message):
        erase(**kwargs)
    assert IdempotencyRecord.objects.count() == 1


def test_is_exported_from_the_package() -> None:
    assert django_idempotency.erase is erase
    assert "erase" in django_idempotency.__all__


# --- Redis --------------------------------------------------------------------------


@pytest.fixture
def redis_front() -> Iterator[tuple[redis.Redis, str]]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    with _redis_settings(REDIS_URL, prefix):
        yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def _redis_settings(location: str, prefix: str) -> override_settings:
    return override_settings(
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": location,
                "KEY_PREFIX": prefix,
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
            },
        },
        IDEMPOTENCY={"LOCK": "cache", "CACHE_ALIAS": "redis"},
    )


def cached_responses(client: redis.Redis, prefix: str, lookup_hashes: set[str]) -> set[str]:
    return {h for h in lookup_hashes if client.exists(f"{prefix}:1:idempotency:response:{h}")}


@needs_redis
def test_cached_responses_of_the_scope_leave_redis_too(
    redis_front: tuple[redis.Redis, str],
) -> None:
    raw, prefix = redis_front
    user = UserFactory()
    for key in ("r-1", "r-2"):
        assert post(client_for(user), key).status_code == 201
    assert post(api_client(), "r-3").status_code == 201
    mine = set(
        IdempotencyRecord.objects.filter(scope=f"user:{user.pk}").values_list(
            "lookup_hash", flat=True
        )
    )
    theirs = set(
        IdempotencyRecord.objects.filter(scope=CLIENT_SCOPE).values_list("lookup_hash", flat=True)
    )
    assert cached_responses(raw, prefix, mine | theirs) == mine | theirs

    result = erase(user=user, batch_size=1)

    assert result.deleted == 2
    assert cached_responses(raw, prefix, mine | theirs) == theirs
    # Not replayed from Redis either: the retry runs as a new request.
    again = post(client_for(user), "r-1")
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert post(api_client(), "r-3").headers["Idempotent-Replayed"] == "true"


def test_an_unreachable_redis_fails_the_erasure_and_keeps_it_repeatable() -> None:
    RecordFactory.create_batch(2)
    with _redis_settings("redis://127.0.0.1:1/15", "unreachable"):
        with pytest.raises(ErasureIncomplete, match="could not be reached"):
            erase(scope=CLIENT_SCOPE)
        with pytest.raises(CommandError, match="Erasure incomplete, run it again"):
            call_command("purge_idempotency_records", "--scope", CLIENT_SCOPE, stdout=StringIO())

    # Nothing was deleted that Redis might still replay; the next run succeeds.
    assert IdempotencyRecord.objects.count() == 2
    assert erase(scope=CLIENT_SCOPE).deleted == 2


# --- the command --------------------------------------------------------------------


def run_command(*args: str, **kwargs: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("purge_idempotency_records", *args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def test_command_scope_erases_live_records_of_that_scope_only() -> None:
    RecordFactory.create_batch(3)
    RecordFactory(scope=OTHER_SCOPE)
    expired(OTHER_SCOPE)  # the purge would take it; an erasure of another scope does not

    out, err = run_command("--scope", CLIENT_SCOPE)

    assert f"Deleted 3 idempotency records of scope '{CLIENT_SCOPE}' in " in out
    assert out.rstrip().endswith("s, 1 batch.")
    assert err == ""
    assert scopes_left() == [OTHER_SCOPE, OTHER_SCOPE]


def test_command_user() -> None:
    user = UserFactory()
    RecordFactory.create_batch(2, scope=f"user:{user.pk}")
    RecordFactory()

    out, _ = run_command("--user", str(user.pk), "--batch-size", "1")

    assert f"Deleted 2 idempotency records of scope 'user:{user.pk}' in " in out
    assert "2 batches." in out
    assert scopes_left() == [CLIENT_SCOPE]


def test_command_dry_run_with_scope() -> None:
    RecordFactory.create_batch(2)

    out, _ = run_command("--scope", CLIENT_SCOPE, "--dry-run")

    assert f"Would delete 2 idempotency records of scope '{CLIENT_SCOPE}'; counted in " in out
    assert IdempotencyRecord.objects.count() == 2


def test_command_says_on_stderr_what_it_kept_and_how_to_finish() -> None:
    RecordFactory()
    running()

    out, err = run_command("--scope", CLIENT_SCOPE)

    assert "Deleted 1 idempotency records" in out
    assert "Kept 1 in-progress idempotency records" in err
    assert "--include-in-progress" in err

    out, err = run_command("--scope", CLIENT_SCOPE, "--include-in-progress")

    assert "Deleted 1 idempotency records" in out
    assert err == ""
    assert not IdempotencyRecord.objects.exists()


def test_command_verbosity_zero_is_silent() -> None:
    RecordFactory()

    assert run_command("--scope", CLIENT_SCOPE, "-v", "0") == ("", "")
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "user:1", "--user", "1"], "give --scope or --user, not both"),
        (["--scope", ""], "--scope: must not be empty"),
        (["--user", "abc"], "--user: 'abc' is not a user primary key"),
        (["--scope", "user:1", "--older-than", "7d"], "--older-than cannot be combined"),
        (["--include-in-progress"], "--include-in-progress needs --scope or --user"),
        (["--scope", "user:1", "--batch-size", "0"], "--batch-size must be a positive number"),
        (["--scope", "user:1", "--database", "nowhere"], "Unknown database alias"),
    ],
)
def test_command_rejects_bad_options(args: list[Any], message: str) -> None:
    RecordFactory(scope="user:1")
    with pytest.raises(CommandError, match=message):
        run_command(*args)
    assert IdempotencyRecord.objects.count() == 1


def _run_manage(tmp_path: Path, settings_body: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "erasure_test_settings.py").write_text(settings_body)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "erasure_test_settings",
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


@pytest.mark.django_db(transaction=True)
def test_command_from_the_shell_exit_status(tmp_path: Path) -> None:
    RecordFactory.create_batch(2)
    RecordFactory(scope=OTHER_SCOPE)
    current = connection.settings_dict
    same_database = (
        f"from tests.settings import *\nDATABASES['default']['NAME'] = {current['NAME']!r}\n"
    )

    bad = _run_manage(tmp_path, same_database, "--user", "abc")
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert "CommandError: --user: 'abc' is not a user primary key" in bad.stderr

    done = _run_manage(tmp_path, same_database, "--scope", CLIENT_SCOPE)
    assert (done.returncode, done.stderr) == (0, "")
    assert "Deleted 2 idempotency records of scope" in done.stdout
    assert scopes_left() == [OTHER_SCOPE]
