import datetime as dt
import json
import re

import django
import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_idempotency import admin as record_admin
from django_idempotency.models import IdempotencyRecord, State

from .factories import RecordFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_idempotency_idempotencyrecord_changelist"


def url(name, *args):
    return reverse(f"admin:django_idempotency_idempotencyrecord_{name}", args=args)


def listed_keys(response):
    """Keys of the rows on a changelist page, top to bottom."""
    return [r.key for r in response.context["cl"].result_list]


@pytest.fixture
def admin_client():
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def staff_client(*codenames):
    user = UserFactory(is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="django_idempotency", codename__in=codenames
        )
    )
    client = Client()
    client.force_login(user)
    return client


def expired_record(**kwargs):
    created = timezone.now() - dt.timedelta(days=2)
    return RecordFactory(created_at=created, expires_at=created + dt.timedelta(days=1), **kwargs)


# --- list -------------------------------------------------------------------------


def test_list_shows_records_newest_first_with_derived_state(admin_client):
    done = RecordFactory(key="k-completed", scope="user:7", response_status=201)
    running = RecordFactory(
        key="k-running", state=State.IN_PROGRESS, response_status=None, completed_at=None
    )
    stuck = RecordFactory(
        key="k-stuck",
        state=State.IN_PROGRESS,
        locked_until=timezone.now() - dt.timedelta(minutes=1),
        response_status=None,
    )
    old = expired_record(key="k-expired")

    response = admin_client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert listed_keys(response) == ["k-expired", "k-stuck", "k-running", "k-completed"]
    rows = {
        key: re.search(
            rf"<tr>(?:(?!</tr>).)*>{key}</a>.*?</tr>", response.content.decode(), re.S
        ).group(0)
        for key in listed_keys(response)
    }
    assert "completed" in rows[done.key] and "user:7" in rows[done.key]
    assert "201" in rows[done.key] and "/function/" in rows[done.key]
    assert ">in progress<" in rows[running.key]
    assert ">in progress (lock expired)<" in rows[stuck.key]
    assert ">expired<" in rows[old.key]


def test_long_values_are_shortened_in_the_list(admin_client):
    scope = "user:2/request:" + "ab" * 32
    key = "k" * 200
    RecordFactory(key=key, scope=scope)

    html = admin_client.get(reverse(CHANGELIST)).content.decode()

    assert f">{key[:39]}…</a>" in html
    assert f">{scope[:23]}…</td>" in html


@pytest.mark.skipif(django.VERSION < (5, 0), reason="admin facets came with Django 5.0")
def test_list_offers_no_facet_counts(admin_client):
    RecordFactory()

    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(reverse(CHANGELIST), {"_facets": "True"})

    assert response.status_code == 200
    assert "Show counts" not in response.content.decode()
    assert sum("COUNT(" in q["sql"].upper() for q in ctx.captured_queries) == 1


def test_list_never_loads_bodies_nor_counts_the_whole_table(admin_client):
    RecordFactory.create_batch(3, response_body=b'{"secret": "body"}')

    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    record_queries = [
        q["sql"] for q in ctx.captured_queries if "idempotencyrecord" in q["sql"].lower()
    ]
    assert record_queries
    assert not any("response_body" in sql for sql in record_queries)
    counts = [sql for sql in record_queries if "COUNT(" in sql.upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts)


def test_list_says_when_the_count_was_capped(admin_client, monkeypatch):
    monkeypatch.setattr(record_admin, "COUNT_LIMIT", 4)
    RecordFactory.create_batch(6)

    response = admin_client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert "More than 4 records match" in response.content.decode()
    assert len(listed_keys(response)) == 6

    IdempotencyRecord.objects.filter(
        pk__in=list(IdempotencyRecord.objects.values_list("pk", flat=True)[:3])
    ).delete()
    assert "More than" not in admin_client.get(reverse(CHANGELIST)).content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("order-77", ["pay-order-77"]),
        ("user:42", ["by-user-42"]),
        ("/refunds/", ["refund"]),
        ("nothing-like-this", []),
    ],
)
def test_search_by_key_scope_and_path(admin_client, query, expected):
    RecordFactory(key="pay-order-77")
    RecordFactory(key="by-user-42", scope="user:42")
    RecordFactory(key="refund", path="/refunds/", endpoint="POST refunds/")

    response = admin_client.get(reverse(CHANGELIST), {"q": query})

    assert listed_keys(response) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"state": "in_progress"}, ["running"]),
        ({"state": "completed"}, ["put-404", "created"]),
        ({"state": "expired"}, ["old"]),
        ({"method": "PUT"}, ["put-404"]),
        ({"method": "POST"}, ["old", "running", "created"]),
        ({"status": "2xx"}, ["old", "created"]),
        ({"status": "4xx"}, ["put-404"]),
        ({"status": "5xx"}, []),
        ({"status": "none"}, ["running"]),
        ({"state": "completed", "method": "POST"}, ["created"]),
    ],
)
def test_filters(admin_client, params, expected):
    RecordFactory(key="created")
    RecordFactory(key="put-404", method="PUT", response_status=404)
    RecordFactory(key="running", state=State.IN_PROGRESS, response_status=None)
    expired_record(key="old", response_status=200)

    response = admin_client.get(reverse(CHANGELIST), params)

    assert response.status_code == 200
    assert listed_keys(response) == expected


def test_date_hierarchy_narrows_to_a_day(admin_client):
    now = timezone.localtime()
    RecordFactory(key="today")
    long_ago = now - dt.timedelta(days=40)
    RecordFactory(key="last-month", created_at=long_ago)

    response = admin_client.get(
        reverse(CHANGELIST),
        {"created_at__year": now.year, "created_at__month": now.month, "created_at__day": now.day},
    )

    assert listed_keys(response) == ["today"]
    assert 'class="toplinks"' in response.content.decode()


# --- detail -----------------------------------------------------------------------


def test_detail_of_a_real_json_response(admin_client, client):
    response = client.post(
        "/function/",
        {"amount": 1250, "reference": "order-1"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="order-1",
    )
    assert response.status_code == 201
    record = IdempotencyRecord.objects.get(key="order-1")

    page = admin_client.get(url("change", record.pk))

    assert page.status_code == 200
    html = page.content.decode()
    assert record.fingerprint in html
    assert record.request_id and record.request_id in html
    # Pretty-printed JSON (indented, one key per line) inside <pre>.
    assert re.search(r"<pre>\{\n  &quot;id&quot;: \d+,\n  &quot;amount&quot;: 1250,\n", html)
    assert "Location: /payments/" in html
    # Credentials never reach the record, so never the page.
    assert "Set-Cookie" not in html and "session-ish" not in html
    # Read-only: no form to save.
    assert 'name="_save"' not in html and 'name="_continue"' not in html


def test_detail_of_a_real_binary_response(admin_client, client):
    assert client.post("/binary/", HTTP_IDEMPOTENCY_KEY="pdf-1").status_code == 200
    record = IdempotencyRecord.objects.get(key="pdf-1")

    html = admin_client.get(url("change", record.pk)).content.decode()

    assert "Binary body: 1.0\xa0KB (1024 bytes), application/pdf, not shown." in html


def test_detail_escapes_and_truncates(admin_client):
    hostile = RecordFactory(
        response_headers=json.dumps([["Content-Type", "application/json"], ["X-Note", "<b>"]]),
        response_body=json.dumps({"comment": "<script>alert(1)</script>"}).encode(),
    )
    huge_body = ("x" * 200_000).encode()
    huge = RecordFactory(
        response_headers=json.dumps([["Content-Type", "text/plain; charset=utf-8"]]),
        response_body=huge_body,
    )

    hostile_html = admin_client.get(url("change", hostile.pk)).content.decode()
    huge_html = admin_client.get(url("change", huge.pk)).content.decode()

    assert "<script>alert(1)" not in hostile_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile_html
    assert "X-Note: &lt;b&gt;" in hostile_html
    assert (
        f"Truncated: showing the first {record_admin.BODY_DISPLAY_LIMIT} of 200000 bytes"
        in huge_html
    )
    assert "x" * record_admin.BODY_DISPLAY_LIMIT in huge_html
    assert "x" * (record_admin.BODY_DISPLAY_LIMIT + 1) not in huge_html


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (None, "application/json", "none stored"),
        (b"", "application/json", "empty"),
        (b"not json {", "application/json", "<pre>not json {</pre>"),
        (b"plain words", "text/plain", "<pre>plain words</pre>"),
        (b"\xff\xfe\x00", "text/plain", "Binary body: 3\xa0bytes (3 bytes), text/plain"),
        (b"\x00\x01", "", "Binary body: 2\xa0bytes (2 bytes), no content type"),
        (b"\xc3\xa9t\xc3", "text/plain", "Binary body: 4\xa0bytes (4 bytes), text/plain"),
        (("a" + "é" * 40_000).encode(), "text/plain", "the first 65536 of 80001"),
        (b"\xff" * 70_000, "text/plain", "Binary body: 68.4\xa0KB (70000 bytes), text/plain"),
        (b'{"a": [1, 2]}', "application/problem+json; charset=utf-8", "&quot;a&quot;: [\n    1,"),
    ],
)
def test_body_rendering(body, content_type, expected):
    assert expected in record_admin.render_body(body, content_type)


def test_in_progress_detail_has_no_response(admin_client):
    record = RecordFactory(
        state=State.IN_PROGRESS, response_status=None, response_headers="", response_body=None
    )

    html = admin_client.get(url("change", record.pk)).content.decode()

    assert html.count("none stored") == 2
    assert "in progress" in html


# --- permissions ------------------------------------------------------------------


def test_no_add_and_no_change_even_for_superusers(admin_client):
    record = RecordFactory(key="untouchable", scope="user:1")

    assert admin_client.get(url("add")).status_code == 403
    assert f'href="{url("add")}"' not in admin_client.get(reverse(CHANGELIST)).content.decode()
    response = admin_client.post(url("change", record.pk), {"key": "changed", "scope": "x"})
    assert response.status_code == 403
    record.refresh_from_db()
    assert (record.key, record.scope) == ("untouchable", "user:1")


def test_staff_without_permission_cannot_see_records():
    record = RecordFactory()
    client = staff_client()

    assert client.get(reverse(CHANGELIST)).status_code == 403
    assert client.get(url("change", record.pk)).status_code == 403
    assert client.post(url("delete", record.pk), {"post": "yes"}).status_code == 403
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()


def test_view_permission_allows_reading_but_not_deleting():
    record = expired_record(key="seen")
    client = staff_client("view_idempotencyrecord")

    listing = client.get(reverse(CHANGELIST))
    assert listing.status_code == 200
    assert listed_keys(listing) == ["seen"]
    assert (
        "delete_expired" not in listing.content.decode()
        and "delete_selected" not in listing.content.decode()
    )
    assert client.get(url("change", record.pk)).status_code == 200
    assert client.post(url("delete", record.pk), {"post": "yes"}).status_code == 403
    client.post(reverse(CHANGELIST), {"action": "delete_expired", "_selected_action": [record.pk]})
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()


def test_delete_permission_allows_deleting_one_record():
    record = RecordFactory()
    client = staff_client("view_idempotencyrecord", "delete_idempotencyrecord")

    assert client.get(url("delete", record.pk)).status_code == 200
    response = client.post(url("delete", record.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not IdempotencyRecord.objects.filter(pk=record.pk).exists()


def test_delete_expired_action_deletes_only_expired_selected_records():
    old = expired_record(key="old")
    older = expired_record(key="older")
    alive = RecordFactory(key="alive")
    expired_record(key="not-selected")
    client = staff_client("view_idempotencyrecord", "delete_idempotencyrecord")

    listing = client.get(reverse(CHANGELIST))
    assert "Delete expired records among the selected" in listing.content.decode()
    response = client.post(
        reverse(CHANGELIST),
        {"action": "delete_expired", "_selected_action": [old.pk, older.pk, alive.pk]},
        follow=True,
    )

    assert "Deleted 2 expired idempotency records." in response.content.decode()
    remaining = set(IdempotencyRecord.objects.values_list("key", flat=True))
    assert remaining == {"alive", "not-selected"}


def test_delete_selected_action_follows_the_delete_permission(admin_client):
    records = RecordFactory.create_batch(2)

    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [r.pk for r in records], "post": "yes"},
    )

    assert response.status_code == 302
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db(databases=["default", "records"])
def test_admin_reads_and_deletes_on_the_records_alias(admin_client, settings):
    settings.IDEMPOTENCY = {"DATABASE": "records"}
    RecordFactory._meta.database = "records"
    try:
        there = RecordFactory(key="on-records")
        gone = expired_record(key="expired-on-records")
    finally:
        RecordFactory._meta.database = "default"
    RecordFactory(key="on-default")

    listing = admin_client.get(reverse(CHANGELIST))
    assert listed_keys(listing) == ["expired-on-records", "on-records"]
    assert admin_client.get(url("change", there.pk)).status_code == 200
    admin_client.post(
        reverse(CHANGELIST),
        {"action": "delete_expired", "_selected_action": [there.pk, gone.pk]},
    )
    assert list(IdempotencyRecord.objects.using("records").values_list("key", flat=True)) == [
        "on-records"
    ]
    admin_client.post(url("delete", there.pk), {"post": "yes"})
    assert not IdempotencyRecord.objects.using("records").exists()
    assert IdempotencyRecord.objects.using("default").filter(key="on-default").exists()
