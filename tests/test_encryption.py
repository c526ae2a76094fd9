"""Encrypted records (``IDEMPOTENCY["ENCRYPTION_KEYS"]``, docs/recipes/encryption.md):
what the database and Redis hold, key rotation, records no key opens, the
admin, the system check and the statement budget."""

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, cast

import pytest
import redis
from django.core.checks import CheckMessage, run_checks
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from django_idempotency import conf
from django_idempotency.encryption import generate_key
from django_idempotency.models import IdempotencyRecord, State
from tests.factories import RecordFactory, UserFactory, api_client
from tests.helpers import assert_problem, needs_redis, post
from tests.settings import REDIS_URL
from tests.test_admin import detail_value, staff_client
from tests.test_query_counts import statements
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db

OLD_KEY = generate_key()
NEW_KEY = generate_key()
# Personal data of the kind card-issuing APIs return: it must not be at rest in the clear.
SECRET = "PAN-4111111111111111"
PAYMENT = {"amount": 10, "reference": SECRET}
TABLE = IdempotencyRecord._meta.db_table


def keys(*encryption_keys: str, **more: Any) -> override_settings:
    return override_settings(IDEMPOTENCY={"ENCRYPTION_KEYS": list(encryption_keys), **more})


def pay(client: APIClient, key: str, data: Any = PAYMENT) -> Any:
    return post(client, "/function/", data, key=key)


def raw_row(key: str) -> tuple[Any, Any, Any]:
    """(response_status, response_headers, response_body) as the table holds them."""
    connection = connections[conf.get_settings().database]
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {q('response_status')}, {q('response_headers')}, {q('response_body')} "
            f"FROM {q(TABLE)} WHERE {q('key')} = %s",
            [key],
        )
        row = cursor.fetchone()
        assert row is not None
        status, headers, body = row
    return status, headers, None if body is None else bytes(body)


def raw_update(key: str, column: str, value: Any) -> None:
    connection = connections[conf.get_settings().database]
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {q(TABLE)} SET {q(column)} = %s WHERE {q('key')} = %s", [value, key]
        )


def assert_replay_of(response: Any, first: Any) -> None:
    assert response.status_code == first.status_code
    assert response["Idempotent-Replayed"] == "true"
    assert response.content == first.content
    assert response["Location"] == first["Location"]


def assert_unreadable(response: Any) -> None:
    assert_problem(response, 500, "idempotency_record_unreadable")
    assert "Retry-After" not in response


# At rest -------------------------------------------------------------------------


def test_the_table_holds_no_plaintext_of_body_or_headers(client: APIClient) -> None:
    with keys(NEW_KEY):
        first = pay(client, "enc-1")
        replay = pay(client, "enc-1")

    assert first.status_code == 201 and SECRET in first.content.decode()
    status, headers, body = raw_row("enc-1")
    assert status == 201  # in the clear: the admin filters by it
    assert SECRET.encode() not in body
    assert b"/payments/" not in body and "/payments/" not in headers  # the Location header
    assert b"application/json" not in body and "application/json" not in headers
    assert body[:1] == b"\x01"  # the format's version byte
    assert_replay_of(replay, first)
    assert Payment.objects.count() == 1


def test_records_written_before_encryption_was_turned_on_still_replay(client: APIClient) -> None:
    first = pay(client, "enc-plain")
    assert SECRET.encode() in raw_row("enc-plain")[2]

    with keys(NEW_KEY):
        assert_replay_of(pay(client, "enc-plain"), first)


def test_turning_encryption_off_makes_sealed_records_unreadable_not_re_run(
    client: APIClient,
) -> None:
    with keys(NEW_KEY):
        pay(client, "enc-off")

    assert_unreadable(pay(client, "enc-off"))
    assert Payment.objects.count() == 1


# Rotation ------------------------------------------------------------------------


def test_a_record_written_under_an_old_key_replays_after_rotation(client: APIClient) -> None:
    with keys(OLD_KEY):
        first = pay(client, "enc-rotate")

    with keys(NEW_KEY, OLD_KEY):
        assert_replay_of(pay(client, "enc-rotate"), first)
        second = pay(client, "enc-rotate-new")
    # The new record was sealed with the new key: it replays without the old one.
    with keys(NEW_KEY):
        assert_replay_of(pay(client, "enc-rotate-new"), second)
    assert Payment.objects.count() == 2


def test_a_record_whose_key_was_removed_is_answered_500_and_never_re_run(
    client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    with keys(OLD_KEY):
        pay(client, "enc-removed")

    with keys(NEW_KEY), caplog.at_level(logging.ERROR, logger="django_idempotency"):
        response = pay(client, "enc-removed", data={**PAYMENT})
        retry = pay(client, "enc-removed")

    assert_unreadable(response)
    assert_unreadable(retry)
    assert Payment.objects.count() == 1  # the operation ran once, and only once
    record = IdempotencyRecord.objects.get(key="enc-removed")
    assert record.state == State.COMPLETED  # kept for the key's return, not released
    assert f"Idempotency record {record.pk} cannot be decrypted" in caplog.text
    assert "not in ENCRYPTION_KEYS" in caplog.text
    with keys(NEW_KEY, OLD_KEY):  # the operator puts the key back
        assert pay(client, "enc-removed")["Idempotent-Replayed"] == "true"


def test_another_request_with_the_key_of_an_unreadable_record_is_still_a_mismatch(
    client: APIClient,
) -> None:
    with keys(OLD_KEY):
        pay(client, "enc-mismatch")

    with keys(NEW_KEY):
        response = pay(client, "enc-mismatch", data={"amount": 99})

    assert_problem(response, 422, "idempotency_key_reused")


# Tampering -----------------------------------------------------------------------


def test_altered_ciphertext_is_unreadable(client: APIClient) -> None:
    with keys(NEW_KEY):
        pay(client, "enc-tamper")
        body = bytearray(raw_row("enc-tamper")[2])
        body[-20] ^= 0x01
        raw_update("enc-tamper", "response_body", bytes(body))

        assert_unreadable(pay(client, "enc-tamper"))
    assert Payment.objects.count() == 1


def test_a_ciphertext_moved_to_another_record_is_unreadable(client: APIClient) -> None:
    with keys(NEW_KEY):
        pay(client, "enc-victim", data={"amount": 1})
        pay(client, "enc-donor")
        raw_update("enc-victim", "response_body", raw_row("enc-donor")[2])

        assert_unreadable(pay(client, "enc-victim", data={"amount": 1}))


def test_an_edited_status_code_is_unreadable(client: APIClient) -> None:
    with keys(NEW_KEY):
        pay(client, "enc-status")
        raw_update("enc-status", "response_status", 200)

        assert_unreadable(pay(client, "enc-status"))


# Admin ---------------------------------------------------------------------------


def change_page(client: Client, record: IdempotencyRecord) -> Any:
    return client.get(
        reverse("admin:django_idempotency_idempotencyrecord_change", args=(record.pk,))
    )


def test_the_admin_shows_decrypted_bodies_and_headers_to_viewers(client: APIClient) -> None:
    with keys(NEW_KEY):
        pay(client, "enc-admin")
        record = IdempotencyRecord.objects.get(key="enc-admin")
        page = change_page(staff_client("view_idempotencyrecord"), record)

    assert page.status_code == 200
    assert SECRET in detail_value(page, "body_display")
    headers = detail_value(page, "headers_display")
    assert "Location: /payments/" in headers and "sealed" not in headers


def test_the_admin_says_when_a_record_cannot_be_decrypted(client: APIClient) -> None:
    with keys(OLD_KEY):
        pay(client, "enc-admin-gone")
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True))

    with keys(NEW_KEY):
        page = change_page(admin, IdempotencyRecord.objects.get(key="enc-admin-gone"))

    assert page.status_code == 200
    for field in ("headers_display", "body_display"):
        assert "not in ENCRYPTION_KEYS" in detail_value(page, field)
    assert SECRET not in page.content.decode()


def test_the_admin_shows_plain_records_as_before() -> None:
    record = RecordFactory(response_body=json.dumps({"reference": SECRET}).encode())
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True))

    with keys(NEW_KEY):
        page = change_page(admin, record)

    assert SECRET in detail_value(page, "body_display")


# The system check ----------------------------------------------------------------


def e007(value: Any) -> list[CheckMessage]:
    with override_settings(IDEMPOTENCY={"ENCRYPTION_KEYS": value}):
        return [m for m in run_checks() if (m.id or "").startswith("django_idempotency.E")]


def test_good_keys_pass_the_check() -> None:
    assert e007([NEW_KEY, OLD_KEY]) == []
    assert e007([]) == []


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (NEW_KEY, "must be a list of keys, not str"),
        ([b"0" * 32], "ENCRYPTION_KEYS[0] must be a string"),
        ([NEW_KEY, "not base64!"], "ENCRYPTION_KEYS[1] is not URL-safe base64"),
        ([NEW_KEY.rstrip("=")], "is not URL-safe base64 (with its '=' padding)"),
        (["c2hvcnQ="], "ENCRYPTION_KEYS[0] decodes to 5 bytes; a key is 32 random bytes"),
        ([NEW_KEY, NEW_KEY], "ENCRYPTION_KEYS[1] repeats an earlier key"),
    ],
)
def test_unusable_keys_fail_the_check_with_e007(value: Any, words: str) -> None:
    (message,) = e007(value)
    assert message.id == "django_idempotency.E008"
    assert words in message.msg
    assert "recipes/encryption" in (message.hint or "")


def test_unusable_keys_refuse_requests_before_the_view_runs(client: APIClient) -> None:
    from django.core.exceptions import ImproperlyConfigured

    with keys("too-short"), pytest.raises(ImproperlyConfigured, match="ENCRYPTION_KEYS"):
        pay(client, "enc-bad-setting")
    assert Payment.objects.count() == 0


def test_keys_without_the_cryptography_package_fail_the_check_naming_the_extra() -> None:
    # A real interpreter where ``import cryptography`` fails, as without the extra.
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "import django; django.setup()\n"
        "from django.core.checks import run_checks\n"
        "from django.test.utils import override_settings\n"
        "ids = lambda: [m.id for m in run_checks() if m.id.startswith('django_idempotency')]\n"
        "assert ids() == [], ids()  # without keys the app needs no cryptography\n"
        f"with override_settings(IDEMPOTENCY={{'ENCRYPTION_KEYS': [{NEW_KEY!r}]}}):\n"
        "    (m,) = [m for m in run_checks() if m.id == 'django_idempotency.E008']\n"
        "    print(m.msg)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'django-idempotency[encryption]'" in result.stdout


# The statement budget --------------------------------------------------------------


def test_encryption_adds_no_statement_to_any_request(client: APIClient) -> None:
    def costs(prefix: str) -> list[int]:
        first, first_sql = statements(client, "/function/", PAYMENT, key=f"{prefix}-k")
        replay, replay_sql = statements(client, "/function/", PAYMENT, key=f"{prefix}-k")
        mismatch, mismatch_sql = statements(client, "/function/", {"amount": 1}, key=f"{prefix}-k")
        assert (first.status_code, replay["Idempotent-Replayed"]) == (201, "true")
        assert mismatch.status_code == 422
        return [len(first_sql), len(replay_sql), len(mismatch_sql)]

    plain = costs("plain")
    with keys(NEW_KEY):
        encrypted = costs("sealed")

    assert encrypted == plain


# Redis -----------------------------------------------------------------------------


class RedisKeys(Protocol):
    """``redis_keys(*keys)`` sets the keys; ``redis_keys.values()``: the cached responses."""

    values: Callable[[], list[Any]]

    def __call__(self, *encryption_keys: str) -> override_settings: ...


@pytest.fixture
def redis_keys() -> Iterator[RedisKeys]:
    """Redis in front (db 15, a prefix of our own); ``use(*keys)`` sets the keys."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        },
    }

    def use(*encryption_keys: str) -> override_settings:
        return override_settings(
            CACHES=caches,
            IDEMPOTENCY={
                "LOCK": "cache",
                "CACHE_ALIAS": "redis",
                "ENCRYPTION_KEYS": list(encryption_keys),
            },
        )

    def values() -> list[Any]:
        return [
            client.get(k) for k in client.scan_iter(f"{prefix}:*") if b"idempotency:response:" in k
        ]

    redis_keys = cast(RedisKeys, use)
    redis_keys.values = values
    yield redis_keys
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def from_redis(client: APIClient, key: str) -> tuple[Any, int]:
    """The answer, and the number of statements it sent to the database."""
    with CaptureQueriesContext(connections[conf.get_settings().database]) as queries:
        response = pay(client, key)
    sent = [q for q in queries.captured_queries if not q["sql"].startswith(("SAVE", "RELEASE"))]
    return response, len(sent)


@needs_redis
def test_redis_holds_no_plaintext_and_replays_without_the_database(redis_keys: RedisKeys) -> None:
    client = api_client()
    with redis_keys(NEW_KEY):
        first = pay(client, "enc-redis")
        replay, sent = from_redis(client, "enc-redis")

    (value,) = redis_keys.values()
    assert value[:1] == b"\x01"
    assert SECRET.encode() not in value and b"/payments/" not in value
    assert_replay_of(replay, first)
    assert sent == 0


@needs_redis
def test_redis_entries_under_an_old_key_replay_after_rotation(redis_keys: RedisKeys) -> None:
    client = api_client()
    with redis_keys(OLD_KEY):
        first = pay(client, "enc-redis-rotate")
    with redis_keys(NEW_KEY, OLD_KEY):
        replay, sent = from_redis(client, "enc-redis-rotate")

    assert_replay_of(replay, first)
    assert sent == 0


@needs_redis
def test_a_redis_entry_whose_key_was_removed_is_unreadable_like_its_record(
    redis_keys: RedisKeys,
) -> None:
    client = api_client()
    with redis_keys(OLD_KEY):
        pay(client, "enc-redis-gone")
    with redis_keys(NEW_KEY):
        assert_unreadable(pay(client, "enc-redis-gone"))
    assert Payment.objects.count() == 1


def redis_response_key(key: str) -> str:
    from django.core.cache import caches

    from django_idempotency.identity import lookup_hash
    from tests.factories import CLIENT_SCOPE

    return caches["redis"].make_key(f"idempotency:response:{lookup_hash(CLIENT_SCOPE, key, None)}")


@needs_redis
def test_a_redis_entry_moved_to_another_key_is_not_replayed(redis_keys: RedisKeys) -> None:
    client = api_client()
    raw = redis.Redis.from_url(REDIS_URL)
    with redis_keys(NEW_KEY):
        victim = pay(client, "enc-redis-victim", data={"amount": 1})
        pay(client, "enc-redis-donor")
        donor = raw.get(redis_response_key("enc-redis-donor"))
        assert donor is not None
        raw.set(redis_response_key("enc-redis-victim"), donor)
        replay = pay(client, "enc-redis-victim", data={"amount": 1})

    # Redis' copy is refused; the database's record answers, with the victim's own response.
    assert_replay_of(replay, victim)


@needs_redis
def test_a_plain_redis_entry_is_not_trusted_once_encryption_is_on(redis_keys: RedisKeys) -> None:
    client = api_client()
    with redis_keys():
        first = pay(client, "enc-redis-plain")
    assert SECRET.encode() in redis_keys.values()[0]
    with redis_keys(NEW_KEY):
        replay, sent = from_redis(client, "enc-redis-plain")

    assert_replay_of(replay, first)  # from the database's record
    assert sent > 0


# The sample project ----------------------------------------------------------------


def sample_manage(
    tmp_path: Path, encryption_keys: str, *args: str
) -> subprocess.CompletedProcess[str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(
        [sys.executable, os.path.join(root, "sample_project", "manage.py"), *args],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "sample_project.settings",
            "DEMO_ENCRYPTION_KEYS": encryption_keys,
            "DEMO_SQLITE_PATH": str(tmp_path / "demo.sqlite3"),
        },
        capture_output=True,
        text=True,
        cwd=root,
    )


def test_the_sample_project_encrypts_with_the_keys_of_its_environment(tmp_path: Path) -> None:
    show = "from django_idempotency import conf; print(conf.get_settings().keyring is not None)"
    on = sample_manage(tmp_path, f"{NEW_KEY}, {OLD_KEY}", "shell", "-c", show)
    off = sample_manage(tmp_path, "", "shell", "-c", show)

    assert (on.stdout.split()[-1], off.stdout.split()[-1]) == ("True", "False"), (
        on.stderr + off.stderr
    )


def test_the_sample_project_refuses_a_bad_key_in_its_environment(tmp_path: Path) -> None:
    result = sample_manage(tmp_path, "not-a-key", "check")

    assert result.returncode != 0
    assert "django_idempotency.E008" in result.stderr


# The outcome look-up and altered header columns -----------------------------------


def _look_up(client: APIClient, key: str) -> Any:
    return client.get(f"/idempotency/keys/{key}")


@pytest.mark.urls("tests.test_outcome_lookup")
def test_the_look_up_shows_the_decrypted_body(client: APIClient) -> None:
    with keys(NEW_KEY, LOOKUP_BODY=True):
        first = pay(client, "k-lookup")
        found = _look_up(client, "k-lookup")
    assert found.status_code == 200
    response = found.json()["response"]
    assert response["body_encoding"] == "utf-8"
    assert response["body"].encode() == first.content
    assert response["content_type"] == first["Content-Type"]


@pytest.mark.urls("tests.test_outcome_lookup")
def test_the_look_up_of_a_record_no_key_opens_is_the_unreadable_problem(client: APIClient) -> None:
    with keys(OLD_KEY):
        pay(client, "k-lookup-lost")
    with keys(NEW_KEY, LOOKUP_BODY=True):
        found = _look_up(client, "k-lookup-lost")
    assert_problem(found, 500, "idempotency_record_unreadable")


@pytest.mark.parametrize("value", ["garbage", '{"X": "1"}', '[["X", 1]]'])
@pytest.mark.parametrize("encrypted", [True, False], ids=["sealed", "plain"])
def test_an_altered_headers_column_is_unreadable_not_a_500_traceback(
    client: APIClient, value: str, encrypted: bool
) -> None:
    settings = keys(NEW_KEY) if encrypted else override_settings()
    with settings:
        pay(client, "k-headers")
        raw_update("k-headers", "response_headers", value)
        retry = pay(client, "k-headers")
    assert_unreadable(retry)
    assert Payment.objects.count() == 1
