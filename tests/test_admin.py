import datetime as dt
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django import Settings
from rest_framework.test import APIClient

from django_idempotency import admin as record_admin
from django_idempotency.models import IdempotencyRecord, State
from django_idempotency.options import OptionError, validate_options

from .factories import CLIENT_SCOPE, RecordFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_idempotency_idempotencyrecord_changelist"


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:django_idempotency_idempotencyrecord_{name}", args=args)


def listed_keys(response: Any) -> list[str]:
    """Keys of the rows on a changelist page, top to bottom."""
    return [r.key for r in response.context["cl"].result_list]


@dataclass
class Cell:
    text: str = ""
    links: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)


class _ResultTable(HTMLParser):
    """The change list's table as the browser shows it: the header cells'
    classes by column, and per row a Cell for each column."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: dict[str, list[str]] = {}
        self.rows: list[dict[str, Cell]] = []
        self._in_table = self._in_body = False
        self._cell: Cell | None = None

    def handle_starttag(self, tag: str, attr_list: list[tuple[str, str | None]]) -> None:
        attrs = dict(attr_list)
        classes = (attrs.get("class") or "").split()
        if tag == "table" and attrs.get("id") == "result_list":
            self._in_table = True
        if not self._in_table:
            return
        if tag == "tbody":
            self._in_body = True
        elif tag == "th" and not self._in_body:
            names = [c.removeprefix("column-") for c in classes if c.startswith("column-")]
            if names:
                self.headers[names[0]] = classes
        elif tag == "tr" and self._in_body:
            self.rows.append({})
        elif tag in ("td", "th") and self._in_body:
            names = [c.removeprefix("field-") for c in classes if c.startswith("field-")]
            if names:
                self._cell = self.rows[-1][names[0]] = Cell()
        if self._cell is not None:
            if tag == "a":
                self._cell.links.append(attrs.get("href") or "")
            if "title" in attrs:
                self._cell.titles.append(attrs["title"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = self._in_body = False
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.text += data


def result_table(response: Any) -> _ResultTable:
    parser = _ResultTable()
    parser.feed(response.content.decode())
    return parser


def listed_rows(response: Any) -> list[dict[str, Cell]]:
    return result_table(response).rows


def detail_value(response: Any, name: str) -> str:
    """The text shown for one read-only field of a detail page."""
    html = response.content.decode()
    match = re.search(
        rf'<div class="form-row field-{name}">.*?<div class="readonly">(.*?)</div>', html, re.S
    )
    assert match, f"no {name} on the page"
    return match.group(1).strip()


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def staff_client(*codenames: str) -> Client:
    user = UserFactory(is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="django_idempotency", codename__in=codenames
        )
    )
    client = Client()
    client.force_login(user)
    return client


def expired_record(**kwargs: Any) -> IdempotencyRecord:
    created = timezone.now() - dt.timedelta(days=2)
    return RecordFactory(created_at=created, expires_at=created + dt.timedelta(days=1), **kwargs)


# --- list -------------------------------------------------------------------------


def test_list_shows_records_newest_first_with_derived_state(admin_client: Client) -> None:
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
    rows = {row["short_key"].text: row for row in listed_rows(response)}
    assert rows[done.key]["state_display"].text == "completed"
    assert rows[done.key]["short_scope"].text == "user:7"
    assert rows[done.key]["status"].text == "201"
    assert rows[done.key]["short_path"].text == "/function/"
    assert rows[running.key]["state_display"].text == "in progress"
    assert rows[stuck.key]["state_display"].text == "in progress (lock expired)"
    assert rows[old.key]["state_display"].text == "expired"


def test_long_values_are_shortened_in_the_list_and_whole_in_the_tooltip(
    admin_client: Client,
) -> None:
    scope = "user:2/request:" + "ab" * 32
    key = "k" * 200
    path = "/api/v1/customers/1234567/payment-methods/987654321/refunds/"
    RecordFactory(key=key, scope=scope, path=path)

    (row,) = listed_rows(admin_client.get(reverse(CHANGELIST)))

    assert (row["short_key"].text, row["short_key"].titles) == (f"{key[:39]}…", [key])
    assert (row["short_scope"].text, row["short_scope"].titles) == (f"{scope[:23]}…", [scope])
    assert (row["short_path"].text, row["short_path"].titles) == (f"{path[:47]}…", [path])


def test_list_styles_keep_status_and_times_readable_beside_the_sidebar(
    admin_client: Client,
) -> None:
    # What tests/test_admin_layout.py checks in a browser, for runs without one:
    # long cells are cut by the stylesheet, times only wrap between date and time.
    RecordFactory(created_at=dt.datetime(2026, 12, 2, 18, 27, 5, tzinfo=dt.UTC))

    response = admin_client.get(reverse(CHANGELIST))

    html = response.content.decode()
    style_match = re.search(r"<style[^>]*>(.*?)</style>", html, re.S)
    assert style_match
    style = style_match.group(1)
    cut_match = re.search(r"([^{}]*)\{[^}]*text-overflow: ellipsis;[^}]*\}", style)
    assert cut_match
    cut = cut_match.group(1)
    assert {"field-short_key", "field-short_scope", "field-short_path"} <= set(
        re.findall(r"\.(field-\w+)", cut)
    )
    assert re.search(r"time > span[^{]*\{[^}]*white-space: nowrap", style)
    assert "<span>2026-12-02</span> <span>12:27:05</span>" in html


def test_list_offers_no_facet_counts(admin_client: Client) -> None:
    RecordFactory()

    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(reverse(CHANGELIST), {"_facets": "True"})

    assert response.status_code == 200
    assert "Show counts" not in response.content.decode()
    assert sum("COUNT(" in q["sql"].upper() for q in ctx.captured_queries) == 1


def test_list_never_loads_bodies_nor_counts_the_whole_table(admin_client: Client) -> None:
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


def test_list_says_when_the_count_was_capped(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
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
def test_search_by_key_scope_and_path(
    admin_client: Client, query: str, expected: list[Any]
) -> None:
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
def test_filters(admin_client: Client, params: dict[str, Any], expected: list[Any]) -> None:
    RecordFactory(key="created")
    RecordFactory(key="put-404", method="PUT", response_status=404)
    RecordFactory(key="running", state=State.IN_PROGRESS, response_status=None)
    expired_record(key="old", response_status=200)

    response = admin_client.get(reverse(CHANGELIST), params)

    assert response.status_code == 200
    assert listed_keys(response) == expected


def test_date_hierarchy_narrows_to_a_day(admin_client: Client) -> None:
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


def test_method_filter_offers_exactly_the_methods_that_can_be_recorded(
    admin_client: Client,
) -> None:
    every_method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
    recordable = []
    for method in every_method:
        try:
            validate_options({"methods": [method]})
        except OptionError:
            continue
        recordable.append(method)

    response = admin_client.get(reverse(CHANGELIST))

    cl = response.context["cl"]
    (method_filter,) = [f for f in cl.filter_specs if f.parameter_name == "method"]
    offered = [choice["display"] for choice in method_filter.choices(cl)][1:]  # after "All"
    assert offered == recordable == ["POST", "PUT", "PATCH", "DELETE"]


# --- times ------------------------------------------------------------------------


def test_times_are_shown_to_the_second_in_the_project_time_zone(
    admin_client: Client, settings: Any
) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    created = dt.datetime(2026, 12, 2, 18, 27, 5, tzinfo=dt.UTC)
    record = RecordFactory(
        created_at=created,
        completed_at=created + dt.timedelta(seconds=2),
        expires_at=created + dt.timedelta(days=200),
    )

    (row,) = listed_rows(admin_client.get(reverse(CHANGELIST)))
    detail = admin_client.get(url("change", record.pk))

    assert row["created"].text == "2026-12-02 19:27:05"
    assert row["created"].titles == ["2026-12-02 19:27:05 CET"]
    # In summer time: the offset is the one of that day.
    assert row["expires"].text == "2027-06-20 20:27:05"
    assert detail_value(detail, "created_display") == "2026-12-02 19:27:05 CET"
    assert detail_value(detail, "completed_display") == "2026-12-02 19:27:07 CET"
    assert detail_value(detail, "expires_display") == "2027-06-20 20:27:05 CEST"
    assert "p.m." not in detail.content.decode()


def test_locked_until_is_shown_only_while_in_progress(admin_client: Client) -> None:
    lock = timezone.now() + dt.timedelta(seconds=30)
    running = RecordFactory(
        state=State.IN_PROGRESS, locked_until=lock, response_status=None, completed_at=None
    )
    done = RecordFactory(locked_until=lock)
    expired_claim = expired_record(state=State.IN_PROGRESS, response_status=None)

    shown = {
        r.key: detail_value(admin_client.get(url("change", r.pk)), "locked_display")
        for r in (running, done, expired_claim)
    }

    assert shown == {
        running.key: record_admin.format_time(lock),
        done.key: "-",
        expired_claim.key: "-",
    }


# --- sorting ----------------------------------------------------------------------


def test_only_indexed_columns_can_be_sorted(admin_client: Client) -> None:
    RecordFactory()
    table = result_table(admin_client.get(reverse(CHANGELIST)))

    sortable = {name for name, classes in table.headers.items() if "sortable" in classes}
    assert sortable == {"created", "expires"}
    model_admin = admin.site._registry[IdempotencyRecord]
    leading_index_fields = {index.fields[0] for index in IdempotencyRecord._meta.indexes}
    for name in sortable:
        assert getattr(model_admin, name).admin_order_field in leading_index_fields


def test_sorting_by_created_and_ignoring_other_columns(admin_client: Client) -> None:
    now = timezone.now()
    RecordFactory(key="b-middle", created_at=now - dt.timedelta(hours=1), path="/a/")
    RecordFactory(key="a-oldest", created_at=now - dt.timedelta(hours=2), path="/c/")
    RecordFactory(key="c-newest", created_at=now, path="/b/")
    newest_first = ["c-newest", "a-oldest", "b-middle"]
    columns = ["action_checkbox", *record_admin.IdempotencyRecordAdmin.list_display]

    by_created = admin_client.get(reverse(CHANGELIST), {"o": columns.index("created")})
    assert listed_keys(by_created) == ["a-oldest", "b-middle", "c-newest"]
    by_expiry = admin_client.get(reverse(CHANGELIST), {"o": f"-{columns.index('expires')}"})
    assert listed_keys(by_expiry) == ["c-newest", "b-middle", "a-oldest"]
    for name in ("short_key", "short_scope", "request_method", "short_path", "status"):
        # A hand-made ?o= for a column without an index is ignored, not run.
        with CaptureQueriesContext(connection) as ctx:
            response = admin_client.get(reverse(CHANGELIST), {"o": columns.index(name)})
        assert listed_keys(response) == newest_first, name
        order_by = [
            q["sql"].split("ORDER BY")[-1] for q in ctx.captured_queries if "ORDER BY" in q["sql"]
        ]
        assert order_by
        for column in ("key", "scope", "method", "path", "response_status"):
            assert not any(f'"{column}"' in sql or f"`{column}`" in sql for sql in order_by)


def test_records_of_the_same_second_keep_their_order_either_way(admin_client: Client) -> None:
    # Batch jobs claim many keys at once; an ascending list reads them in the
    # order they arrived, a descending one in reverse.
    same = timezone.now().replace(microsecond=0)
    for key in ("first", "second", "third"):
        RecordFactory(key=key, created_at=same)
    created = ["action_checkbox", *record_admin.IdempotencyRecordAdmin.list_display].index(
        "created"
    )

    ascending = admin_client.get(reverse(CHANGELIST), {"o": str(created)})
    descending = admin_client.get(reverse(CHANGELIST), {"o": f"-{created}"})

    assert listed_keys(ascending) == ["first", "second", "third"]
    assert listed_keys(descending) == ["third", "second", "first"]


# --- the user behind a scope ------------------------------------------------------


def user_change_url(user: Any) -> str:
    return reverse("admin:auth_user_change", args=[user.pk])


def test_user_scope_shows_the_username_linked_to_the_user(admin_client: Client) -> None:
    alice = UserFactory(username="alice")
    record = RecordFactory(scope=f"user:{alice.pk}")

    (row,) = listed_rows(admin_client.get(reverse(CHANGELIST)))
    detail = admin_client.get(url("change", record.pk))

    assert row["short_scope"].text == "alice"
    assert row["short_scope"].links == [user_change_url(alice)]
    assert row["short_scope"].titles == [f"user:{alice.pk}"]
    assert detail_value(detail, "scope_display") == (
        f'user:{alice.pk} (<a href="{user_change_url(alice)}">alice</a>)'
    )


def test_user_scope_is_text_for_a_viewer_who_cannot_see_users() -> None:
    alice = UserFactory(username="alice")
    record = RecordFactory(scope=f"user:{alice.pk}")
    client = staff_client("view_idempotencyrecord")

    (row,) = listed_rows(client.get(reverse(CHANGELIST)))
    detail = client.get(url("change", record.pk))

    assert (row["short_scope"].text, row["short_scope"].links) == ("alice", [])
    assert detail_value(detail, "scope_display") == f"user:{alice.pk} (alice)"


def test_user_scope_is_text_when_users_are_not_in_the_admin(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = UserFactory(username="alice")
    RecordFactory(scope=f"user:{alice.pk}")
    monkeypatch.delitem(admin.site._registry, get_user_model())

    (row,) = listed_rows(admin_client.get(reverse(CHANGELIST)))

    assert (row["short_scope"].text, row["short_scope"].links) == ("alice", [])


@pytest.mark.parametrize(
    "scope",
    [
        "user:987654",  # deleted since
        "user:not-a-number",
        "user:99999999999999999999999",  # beyond any integer column
        "users:1",
        CLIENT_SCOPE,
        "tenant:acme",
    ],
)
def test_other_scopes_and_users_that_are_gone_show_the_scope_as_stored(
    admin_client: Client, scope: str
) -> None:
    UserFactory(username="someone")
    record = RecordFactory(scope=scope)

    (row,) = listed_rows(admin_client.get(reverse(CHANGELIST)))
    detail = admin_client.get(url("change", record.pk))

    assert row["short_scope"].links == []
    assert row["short_scope"].titles == [scope]
    assert "someone" not in row["short_scope"].text
    assert detail_value(detail, "scope_display") == scope


def test_users_of_a_page_are_found_in_one_query(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    def add_user_records(count: int) -> None:
        for user in UserFactory.create_batch(count):
            RecordFactory(scope=f"user:{user.pk}")

    add_user_records(1)
    RecordFactory(scope="user:987654")  # gone: no query of its own either
    with CaptureQueriesContext(connection) as ctx:
        admin_client.get(reverse(CHANGELIST))
    few_rows = len(ctx.captured_queries)
    add_user_records(20)

    with django_assert_max_num_queries(few_rows):
        response = admin_client.get(reverse(CHANGELIST))

    scopes = [row["short_scope"] for row in listed_rows(response)]
    assert len(scopes) == 22
    assert sum(1 for cell in scopes if cell.links) == 21


# --- detail -----------------------------------------------------------------------


def test_detail_of_a_real_json_response(admin_client: Client, client: APIClient) -> None:
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


def test_detail_of_a_real_binary_response(admin_client: Client, client: APIClient) -> None:
    assert client.post("/binary/", HTTP_IDEMPOTENCY_KEY="pdf-1").status_code == 200
    record = IdempotencyRecord.objects.get(key="pdf-1")

    html = admin_client.get(url("change", record.pk)).content.decode()

    assert "Binary body: 1.0\xa0KB (1024 bytes), application/pdf, not shown." in html


def test_detail_escapes_and_truncates(admin_client: Client) -> None:
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
def test_body_rendering(body: bytes, content_type: str, expected: str) -> None:
    assert expected in record_admin.render_body(body, content_type)


def test_in_progress_detail_has_no_response(admin_client: Client) -> None:
    record = RecordFactory(
        state=State.IN_PROGRESS, response_status=None, response_headers="", response_body=None
    )

    html = admin_client.get(url("change", record.pk)).content.decode()

    assert html.count("none stored") == 2
    assert "in progress" in html


# --- permissions ------------------------------------------------------------------


def test_no_add_and_no_change_even_for_superusers(admin_client: Client) -> None:
    record = RecordFactory(key="untouchable", scope="user:1")

    assert admin_client.get(url("add")).status_code == 403
    assert f'href="{url("add")}"' not in admin_client.get(reverse(CHANGELIST)).content.decode()
    response = admin_client.post(url("change", record.pk), {"key": "changed", "scope": "x"})
    assert response.status_code == 403
    record.refresh_from_db()
    assert (record.key, record.scope) == ("untouchable", "user:1")


def test_staff_without_permission_cannot_see_records() -> None:
    record = RecordFactory()
    client = staff_client()

    assert client.get(reverse(CHANGELIST)).status_code == 403
    assert client.get(url("change", record.pk)).status_code == 403
    assert client.post(url("delete", record.pk), {"post": "yes"}).status_code == 403
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()


def test_view_permission_allows_reading_but_not_deleting() -> None:
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


def test_delete_permission_allows_deleting_one_record() -> None:
    record = RecordFactory()
    client = staff_client("view_idempotencyrecord", "delete_idempotencyrecord")

    assert client.get(url("delete", record.pk)).status_code == 200
    response = client.post(url("delete", record.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not IdempotencyRecord.objects.filter(pk=record.pk).exists()


def test_delete_expired_action_deletes_only_expired_selected_records() -> None:
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


def test_delete_selected_action_follows_the_delete_permission(admin_client: Client) -> None:
    records = RecordFactory.create_batch(2)

    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [r.pk for r in records], "post": "yes"},
    )

    assert response.status_code == 302
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db(databases=["default", "records"])
def test_admin_reads_and_deletes_on_the_records_alias(
    admin_client: Client, settings: Settings
) -> None:
    settings.IDEMPOTENCY = {"DATABASE": "records"}
    # factory_boy's DjangoOptions has ``database``; its base FactoryOptions does not.
    RecordFactory._meta.database = "records"  # type: ignore[attr-defined]
    try:
        there = RecordFactory(key="on-records")
        gone = expired_record(key="expired-on-records")
    finally:
        RecordFactory._meta.database = "default"  # type: ignore[attr-defined]
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
