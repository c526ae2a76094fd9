"""Records sharded by scope: ``IDEMPOTENCY["DATABASE"]`` lists several aliases
(here "records" and "records_2", two databases on the test server standing in
for two primaries)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import OperationalError, connections
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import include, path, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from django_idempotency import conf, idempotent
from django_idempotency.checks import check_settings
from django_idempotency.erasure import erase
from django_idempotency.models import IdempotencyRecord
from django_idempotency.purge import purge
from django_idempotency.shards import rendezvous
from tests.factories import RecordFactory, api_client
from tests.testapp.models import Payment
from tests.urls import urlpatterns as test_urlpatterns

urlpatterns = [*test_urlpatterns, path("idempotency/", include("django_idempotency.urls"))]

SHARDS = ["records", "records_2"]
SHARDED = {"DATABASE": SHARDS}
ALL = ["default", *SHARDS]

pytestmark = [pytest.mark.django_db(databases=ALL), pytest.mark.urls(__name__)]

CHANGELIST = "admin:django_idempotency_idempotencyrecord_changelist"


def post(client: APIClient, key: str, amount: int = 1) -> Any:
    return client.post("/function/", {"amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def where(key: str) -> list[str]:
    """The aliases that hold a record of ``key``."""
    return [a for a in ALL if IdempotencyRecord.objects.using(a).filter(key=key).exists()]


def clients_on_each_shard() -> dict[str, tuple[str, APIClient]]:
    """One API client (its key, and the client) whose scope lives on each shard,
    found by sending requests: which alias a scope gets is the app's to choose."""
    found: dict[str, tuple[str, APIClient]] = {}
    for n in range(64):
        client = api_client(f"tenant-{n}")
        key = f"probe-{n}"
        assert post(client, key).status_code == 201
        (alias,) = where(key)
        found.setdefault(alias, (f"tenant-{n}", client))
        if len(found) == len(SHARDS):
            return found
    raise AssertionError(f"64 scopes all landed on {list(found)}")


def record_on(alias: str, **kwargs: Any) -> IdempotencyRecord:
    """A record written straight to ``alias``, as if its scope lived there."""
    RecordFactory._meta.database = alias  # type: ignore[attr-defined]
    try:
        return RecordFactory(**kwargs)
    finally:
        RecordFactory._meta.database = "default"  # type: ignore[attr-defined]


def expired(alias: str, count: int, **kwargs: Any) -> None:
    created = timezone.now() - dt.timedelta(days=2)
    for _ in range(count):
        record_on(alias, created_at=created, expires_at=created + dt.timedelta(days=1), **kwargs)


# --- where records go ---------------------------------------------------------------


@override_settings(IDEMPOTENCY=SHARDED)
def test_each_scope_keeps_all_its_records_on_one_shard_and_replays_from_it() -> None:
    homes: dict[str, set[str]] = {}
    for n in range(16):
        client = api_client(f"tenant-{n}")
        for attempt in range(3):
            key = f"t{n}-k{attempt}"
            first = post(client, key, amount=n)
            assert first.status_code == 201
            replay = post(client, key, amount=n)
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert replay.content == first.content
            homes.setdefault(f"tenant-{n}", set()).update(where(key))
    assert all(len(aliases) == 1 for aliases in homes.values()), homes
    assert set().union(*homes.values()) == set(SHARDS)  # both shards serve someone
    assert Payment.objects.count() == 16 * 3  # every operation ran once
    assert not IdempotencyRecord.objects.using("default").exists()


@override_settings(IDEMPOTENCY=SHARDED)
def test_a_request_sends_its_statements_to_its_scope_shard_only() -> None:
    shards = clients_on_each_shard()
    for alias, (_, client) in shards.items():
        other = next(a for a in SHARDS if a != alias)
        with (
            CaptureQueriesContext(connections[alias]) as here,
            CaptureQueriesContext(connections[other]) as there,
        ):
            assert post(client, str(uuid.uuid4())).status_code == 201
        assert len(here.captured_queries) == 2  # claim and completion
        assert there.captured_queries == []


def test_the_shard_of_a_scope_never_changes_between_versions() -> None:
    # Frozen values: a new hash would move scopes on upgrade, and a retry
    # arriving after the upgrade would find no record and run again.
    aliases = ["a", "b", "c"]
    assert rendezvous("user:42", aliases) == "b"
    assert rendezvous("user:43", aliases) == "c"
    assert rendezvous("auth:" + "0" * 64, aliases) == "a"
    assert rendezvous("session:é\udcff", aliases) in aliases  # any str, even unpaired surrogates


def test_reordering_the_list_moves_no_scope_and_adding_an_alias_moves_only_to_it() -> None:
    scopes = [f"user:{n}" for n in range(2000)]
    before = {s: rendezvous(s, ["a", "b", "c"]) for s in scopes}
    assert {s: rendezvous(s, ["c", "a", "b"]) for s in scopes} == before
    after = {s: rendezvous(s, ["a", "b", "c", "d"]) for s in scopes}
    moved = [s for s in scopes if after[s] != before[s]]
    assert all(after[s] == "d" for s in moved)
    assert 0.15 < len(moved) / len(scopes) < 0.35  # about a quarter, not most of them


def test_a_route_callable_chooses_the_shard(settings: Any) -> None:
    settings.IDEMPOTENCY = {**SHARDED, "DATABASE_ROUTE": "tests.test_sharding.route_by_tenant"}
    client = api_client("tenant-even")
    assert post(client, "routed-even").status_code == 201
    assert where("routed-even") == ["records_2"]
    assert post(api_client("tenant-odd"), "routed-odd").status_code == 201
    assert where("routed-odd") == ["records"]


def route_by_tenant(scope: str) -> str:
    # The default scope of an API client is auth:<sha256 of its key>.
    even = "auth:" + hashlib.sha256(b"tenant-even").hexdigest()
    return "records_2" if scope == even else "records"


def test_a_route_returning_an_unknown_alias_is_a_configuration_error(settings: Any) -> None:
    settings.IDEMPOTENCY = {**SHARDED, "DATABASE_ROUTE": lambda scope: "default"}
    with pytest.raises(ImproperlyConfigured, match=r"DATABASE_ROUTE.*'default'"):
        post(api_client(), "misrouted")
    assert Payment.objects.count() == 0


# --- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        pytest.param({"DATABASE": []}, "non-empty list", id="empty list"),
        pytest.param({"DATABASE": ["records", "records"]}, "twice", id="duplicate"),
        pytest.param({"DATABASE": ["records", 2]}, "list of aliases", id="not a string"),
        pytest.param({**SHARDED, "DATABASE_ROUTE": 3}, "DATABASE_ROUTE", id="route not callable"),
        pytest.param(
            {**SHARDED, "DATABASE_ROUTE": "tests.nowhere.route"}, "cannot be imported", id="route"
        ),
        pytest.param(
            {**SHARDED, "DATABASE_ROUTE": lambda scope, alias: alias},
            "must take one argument",
            id="route signature",
        ),
        pytest.param(
            {"DATABASE": "records", "DATABASE_ROUTE": lambda scope: "records"},
            "needs 'DATABASE' to list several",
            id="route with one alias",
        ),
        pytest.param({**SHARDED, "LISTEN_DATABASE": "records"}, "LISTEN_DATABASE", id="listen"),
        pytest.param(
            {**SHARDED, "LISTEN_DATABASE": {"default": "records"}}, "does not list", id="listen map"
        ),
        pytest.param({**SHARDED, "ATOMIC": True}, "atomic=True needs", id="atomic"),
    ],
)
def test_unusable_shard_settings_fail_the_system_check(
    setting: dict[str, Any], message: str
) -> None:
    with override_settings(IDEMPOTENCY=setting):
        errors = check_settings()
        assert [e.id for e in errors] == ["django_idempotency.E001"]
        assert message in errors[0].msg
        with pytest.raises(ImproperlyConfigured, match=message):
            conf.get_settings()


def test_an_unknown_shard_alias_is_named_by_the_check() -> None:
    with override_settings(IDEMPOTENCY={"DATABASE": ["records", "nowhere"]}):
        errors = check_settings()
    assert errors == [
        Error(
            "IDEMPOTENCY['DATABASE'] names 'nowhere', which is not in DATABASES.",
            hint=errors[0].hint,
            id="django_idempotency.E002",
        )
    ]


def test_an_atomic_view_is_refused_where_it_is_defined_with_hashed_shards() -> None:
    with (
        override_settings(IDEMPOTENCY=SHARDED),
        pytest.raises(ImproperlyConfigured, match="atomic=True needs"),
    ):
        idempotent(atomic=True)
    with override_settings(
        IDEMPOTENCY={**SHARDED, "DATABASE_ROUTE": "tests.test_sharding.route_by_tenant"}
    ):
        idempotent(atomic=True)  # the route is the project's promise to co-locate


def test_an_atomic_view_defined_before_sharding_is_refused_on_its_first_request(
    settings: Any,
) -> None:
    settings.IDEMPOTENCY = SHARDED
    with pytest.raises(ImproperlyConfigured, match="atomic=True needs"):
        api_client().post("/atomic/", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="a-1")
    assert Payment.objects.count() == 0


# --- purge, erasure, look-up, admin ----------------------------------------------------------


@override_settings(IDEMPOTENCY=SHARDED)
def test_purge_deletes_expired_records_on_every_shard() -> None:
    expired("records", 3)
    expired("records_2", 2)
    record_on("records_2", key="live")

    out = io.StringIO()
    call_command("purge_idempotency_records", stdout=out)

    assert [IdempotencyRecord.objects.using(a).count() for a in SHARDS] == [0, 1]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  records: Deleted 3 idempotency records")
    assert lines[1].startswith("  records_2: Deleted 2 idempotency records")
    assert lines[2].startswith("Deleted 5 idempotency records (5 expired")
    assert purge().total == 0


@override_settings(IDEMPOTENCY=SHARDED)
def test_purge_of_one_alias_leaves_the_other_shards_alone() -> None:
    expired("records", 1)
    expired("records_2", 1)
    assert purge(database="records_2").expired == 1
    assert [IdempotencyRecord.objects.using(a).count() for a in SHARDS] == [1, 0]


@pytest.mark.django_db(databases=ALL, transaction=True)
@override_settings(IDEMPOTENCY=SHARDED)
def test_one_shard_failing_does_not_keep_the_others_from_being_purged() -> None:
    expired("records", 1)
    expired("records_2", 1)
    table = IdempotencyRecord._meta.db_table
    broken = connections["records"]
    with broken.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        with pytest.raises(CommandError, match="Purge failed on records: "):
            call_command("purge_idempotency_records", stdout=io.StringIO())
    finally:
        with broken.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
    assert [IdempotencyRecord.objects.using(a).count() for a in SHARDS] == [1, 0]


@pytest.mark.django_db(databases=ALL, transaction=True)
@override_settings(IDEMPOTENCY=SHARDED)
def test_a_shard_failing_halfway_reports_what_its_committed_batches_deleted() -> None:
    expired("records", 5)
    expired("records_2", 1)
    deletes = 0

    def lost_after_the_first_batch(
        execute: Any, sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        nonlocal deletes
        if "DELETE" in sql.upper():
            deletes += 1
            if deletes == 2:
                raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with (
        connections["records"].execute_wrapper(lost_after_the_first_batch),
        pytest.raises(CommandError) as failure,
    ):
        call_command("purge_idempotency_records", "--batch-size", "2", stdout=io.StringIO())

    assert str(failure.value) == (
        "Purge failed on records: server closed the connection unexpectedly "
        "(after deleting 2 records)"
    )
    assert [IdempotencyRecord.objects.using(a).count() for a in SHARDS] == [3, 0]


def test_erasure_finds_a_users_records_on_every_shard(settings: Any) -> None:
    user = get_user_model().objects.create(username="moving")
    client = APIClient()
    client.force_authenticate(user)
    # Records written while there was one records database, then a second
    # one was added: the user's scope may now live on the new one.
    settings.IDEMPOTENCY = {"DATABASE": ["records"]}
    assert post(client, "before-the-move").status_code == 201
    settings.IDEMPOTENCY = {"DATABASE": ["records", "records_2"]}
    assert post(client, "after-the-move").status_code == 201

    result = erase(user=user)

    assert result.deleted == 2
    assert where("before-the-move") == where("after-the-move") == []


@override_settings(IDEMPOTENCY=SHARDED)
def test_the_outcome_look_up_reads_the_callers_shard() -> None:
    for alias, (_, client) in clients_on_each_shard().items():
        key = f"looked-up-on-{alias}"
        assert post(client, key).status_code == 201
        with CaptureQueriesContext(connections[alias]) as here:
            found = client.get(f"/idempotency/keys/{key}")
        assert found.status_code == 200, found.content
        assert json.loads(found.content)["response"] == {"status": 201}
        assert len(here.captured_queries) == 1


@override_settings(IDEMPOTENCY=SHARDED)
def test_admin_selects_one_shard_and_shows_its_records(admin_client: Client) -> None:
    for alias in SHARDS:
        record_on(alias, key=f"kept-on-{alias}")

    first = admin_client.get(reverse(CHANGELIST))
    assert b"kept-on-records<" in first.content
    assert b"kept-on-records_2" not in first.content
    assert b'?database=records_2"' in first.content  # the selector offers the other shard

    second = admin_client.get(reverse(CHANGELIST), {"database": "records_2"})
    assert b"kept-on-records_2" in second.content
    assert b"kept-on-records<" not in second.content

    # Primary keys repeat across shards: the record page must read the shard
    # of the list that linked to it.
    record = IdempotencyRecord.objects.using("records_2").get()
    change = reverse("admin:django_idempotency_idempotencyrecord_change", args=[record.pk])
    page = admin_client.get(change, {"_changelist_filters": "database=records_2"})
    assert page.status_code == 200
    assert b"kept-on-records_2" in page.content


def test_admin_shows_no_shard_selector_with_one_database(admin_client: Client) -> None:
    listing = admin_client.get(reverse(CHANGELIST))
    assert listing.status_code == 200
    assert b"?database=" not in listing.content


def test_admin_refuses_a_page_that_names_two_shards(admin_client: Client) -> None:
    """A record's delete and history pages carry only ``_changelist_filters``:
    a page that shows one shard's record and would delete another's is a 404."""
    with override_settings(IDEMPOTENCY=SHARDED):
        for alias in SHARDS:
            record_on(alias, key=f"kept-on-{alias}")
        record = IdempotencyRecord.objects.using("records").get()
        change = reverse("admin:django_idempotency_idempotencyrecord_change", args=[record.pk])
        delete = reverse("admin:django_idempotency_idempotencyrecord_delete", args=[record.pk])

        mixed = {"database": "records", "_changelist_filters": "database=records_2"}
        assert admin_client.get(change, mixed).status_code == 404
        assert (
            admin_client.post(
                delete + "?database=records&_changelist_filters=database%3Drecords_2",
                {"post": "yes"},
            ).status_code
            == 404
        )
        assert [IdempotencyRecord.objects.using(a).count() for a in SHARDS] == [1, 1]

        other = IdempotencyRecord.objects.using("records_2").get()
        other_change = reverse("admin:django_idempotency_idempotencyrecord_change", args=[other.pk])
        agreed = {"database": "records_2", "_changelist_filters": "database=records_2"}
        assert b"kept-on-records_2" in admin_client.get(other_change, agreed).content


@override_settings(IDEMPOTENCY=SHARDED)
def test_a_record_page_named_by_its_database_links_delete_and_history_to_that_database(
    admin_client: Client,
) -> None:
    for alias in SHARDS:  # primary keys repeat across shards
        other = record_on(alias, pk=4242, key=f"kept-on-{alias}")
    change = reverse("admin:django_idempotency_idempotencyrecord_change", args=[other.pk])
    delete = reverse("admin:django_idempotency_idempotencyrecord_delete", args=[other.pk])
    history = reverse("admin:django_idempotency_idempotencyrecord_history", args=[other.pk])

    # A hand-made link names the shard as the list does: the page moves it to
    # where Django's own links carry the list's filters.
    page = admin_client.get(change, {"database": "records_2"}, follow=True)
    assert page.status_code == 200
    assert b"kept-on-records_2" in page.content
    carried = "_changelist_filters=database%3Drecords_2"
    assert f'{delete}?{carried}"'.encode() in page.content
    assert f'{history}?{carried}"'.encode() in page.content

    confirm = admin_client.get(delete, {"database": "records_2"}, follow=True)
    assert b"kept-on-records_2" in confirm.content
    assert admin_client.post(f"{delete}?{carried}", {"post": "yes"}).status_code == 302
    assert [IdempotencyRecord.objects.using(a).count() for a in SHARDS] == [1, 0]


@override_settings(IDEMPOTENCY=SHARDED)
def test_admin_refuses_a_page_that_names_its_database_twice(admin_client: Client) -> None:
    record = record_on("records_2", key="kept-on-records_2")
    change = reverse("admin:django_idempotency_idempotencyrecord_change", args=[record.pk])
    twice = "database=records&database=records_2"
    assert admin_client.get(f"{reverse(CHANGELIST)}?{twice}").status_code == 404
    assert admin_client.get(change, {"_changelist_filters": twice}).status_code == 404
    assert admin_client.get(f"{change}?database=records_2&database=records_2").status_code == 404


@override_settings(IDEMPOTENCY=SHARDED)
def test_admin_answers_404_for_a_database_that_holds_no_records(admin_client: Client) -> None:
    for database in ("default", "nowhere"):
        listing = admin_client.get(reverse(CHANGELIST), {"database": database})
        assert listing.status_code == 404, database


def _table_away(alias: str) -> Any:
    """The records table of ``alias`` gone for a while: the shard fails every statement."""
    table = IdempotencyRecord._meta.db_table

    class Away:
        def __enter__(self) -> None:
            with connections[alias].cursor() as cursor:
                cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")

        def __exit__(self, *exc: object) -> None:
            with connections[alias].cursor() as cursor:
                cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")

    return Away()


@pytest.mark.django_db(databases=ALL, transaction=True)
@override_settings(IDEMPOTENCY=SHARDED)
def test_admin_list_of_a_failing_shard_says_so_and_links_the_others(
    admin_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    for alias in SHARDS:
        record_on(alias, key=f"kept-on-{alias}")
    with _table_away("records"):
        down = admin_client.get(reverse(CHANGELIST))
        healthy = admin_client.get(reverse(CHANGELIST), {"database": "records_2"})
    assert down.status_code == 503
    assert "The records database “records” cannot be read right now" in down.content.decode()
    assert f'href="{reverse(CHANGELIST)}?database=records_2"'.encode() in down.content
    assert "could not read the idempotency records on 'records'" in caplog.text
    assert healthy.status_code == 200
    assert b"kept-on-records_2" in healthy.content
    assert admin_client.get(reverse(CHANGELIST)).status_code == 200  # back


@pytest.mark.django_db(databases=ALL, transaction=True)
@override_settings(IDEMPOTENCY=SHARDED)
def test_the_look_up_answers_503_while_the_callers_shard_fails() -> None:
    shards = clients_on_each_shard()
    failing, (_, client) = sorted(shards.items())[0]
    assert post(client, "asked-about").status_code == 201
    with _table_away(failing):
        found = client.get("/idempotency/keys/asked-about")
        other = sorted(shards.items())[1][1][1]
        assert post(other, "on-the-healthy-shard").status_code == 201
        assert other.get("/idempotency/keys/on-the-healthy-shard").status_code == 200
    assert found.status_code == 503
    assert found["Content-Type"] == "application/problem+json"
    assert found["Retry-After"] == "1"
    assert json.loads(found.content)["code"] == "idempotency_unavailable"
    assert client.get("/idempotency/keys/asked-about").status_code == 200


@pytest.mark.django_db(databases=ALL, transaction=True)
def test_erasure_goes_on_past_a_failing_shard_and_names_it(settings: Any) -> None:
    from django_idempotency.erasure import ErasureIncomplete

    user = get_user_model().objects.create(username="leaving")
    client = APIClient()
    client.force_authenticate(user)
    for n, shards in enumerate((["records"], ["records_2"])):
        settings.IDEMPOTENCY = {"DATABASE": shards}
        assert post(client, f"kept-on-{shards[0]}-{n}").status_code == 201
    settings.IDEMPOTENCY = SHARDED

    with _table_away("records"), pytest.raises(ErasureIncomplete, match="failed on records: "):
        erase(user=user)
    assert where("kept-on-records-0") == ["records"]
    assert where("kept-on-records_2-1") == []

    assert erase(user=user).deleted == 1
    assert where("kept-on-records-0") == []
