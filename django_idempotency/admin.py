"""A read-only admin for answering "what did we answer to key X, and when?".

Built for tables of millions of rows: no full ``COUNT(*)`` per page, filters
with fixed choices instead of ``SELECT DISTINCT`` over the table, the list
ordered by primary key, and response bodies loaded only on the detail page.
"""

from __future__ import annotations

import codecs
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import conf
from .models import IdempotencyRecord, State
from .purge import database_time_ago, delete_in_batches

#: Bodies longer than this are cut on the detail page (and not parsed as JSON).
BODY_DISPLAY_LIMIT = 64 * 1024
#: The list counts at most this many rows; past that it says "more than".
COUNT_LIMIT = 10_000

EXPIRED = "expired"
_JSON_TYPES = ("application/json", "application/problem+json")
_TEXT_TYPES = ("text/", "application/xml", "application/javascript", "application/x-www-form")


if TYPE_CHECKING:
    _Paginator = Paginator[IdempotencyRecord]
    _ModelAdmin = admin.ModelAdmin[IdempotencyRecord]
else:  # generic for type checkers only (no django-stubs-ext at run time)
    _Paginator = Paginator
    _ModelAdmin = admin.ModelAdmin


class CappedCountPaginator(_Paginator):
    """Counts at most ``COUNT_LIMIT + 1`` rows (``SELECT COUNT(*) FROM (... LIMIT n)``),
    so a page of a huge table costs an index range scan, not a table scan."""

    @cached_property
    def count(self) -> int:
        object_list: Any = self.object_list
        if isinstance(object_list, QuerySet):
            return object_list[: COUNT_LIMIT + 1].count()
        return len(object_list)


class StateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            (State.IN_PROGRESS.value, State.IN_PROGRESS.label),
            (State.COMPLETED.value, State.COMPLETED.label),
            (EXPIRED, _("expired")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        # The database's clock, the one that decides expiry on the request path.
        now = database_time_ago(queryset.db, timedelta())
        if value == EXPIRED:
            return queryset.filter(expires_at__lte=now)
        if value in (State.IN_PROGRESS, State.COMPLETED):
            return queryset.filter(state=value, expires_at__gt=now)
        return queryset


class MethodFilter(admin.SimpleListFilter):
    # Fixed choices: the automatic filter would run SELECT DISTINCT on every page.
    title = _("method")
    parameter_name = "method"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(m, m) for m in ("POST", "PUT", "PATCH", "DELETE", "GET")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(method=value) if value else queryset


class StatusFilter(admin.SimpleListFilter):
    title = _("response status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("2xx", _("2xx success")),
            ("3xx", _("3xx redirect")),
            ("4xx", _("4xx client error")),
            ("5xx", _("5xx server error")),
            ("none", _("none yet")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "none":
            return queryset.filter(response_status__isnull=True)
        if value and value[0] in "2345":
            low = int(value[0]) * 100
            return queryset.filter(response_status__gte=low, response_status__lt=low + 100)
        return queryset


def _shorten(text: str, length: int) -> str:
    # The full value is on the detail page; long ones would push columns away.
    return text if len(text) <= length else f"{text[: length - 1]}…"


def state_label(record: IdempotencyRecord, now: datetime | None = None) -> str:
    now = now or timezone.now()
    if record.expires_at <= now:
        return str(_("expired"))
    if record.state == State.IN_PROGRESS and record.locked_until <= now:
        # Its worker died or overran: the next retry takes the key over.
        return str(_("in progress (lock expired)"))
    return str(record.get_state_display())


def _content_type(record: IdempotencyRecord) -> str:
    for name, value in record.headers:
        if name.lower() == "content-type":
            return value
    return ""


def render_body(body: bytes | None, content_type: str) -> SafeString:
    """The stored body as escaped HTML: JSON pretty-printed, text as text,
    anything else as its size and type only."""
    if body is None:
        return format_html("<em>{}</em>", _("none stored"))
    size = len(body)
    media_type = content_type.split(";")[0].strip().lower()
    if not size:
        return format_html("<em>{}</em>", _("empty"))
    head = body[:BODY_DISPLAY_LIMIT]
    text: str | None = None
    if size <= BODY_DISPLAY_LIMIT and (media_type in _JSON_TYPES or media_type.endswith("+json")):
        try:
            text = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            text = None
    if text is None and (
        media_type.startswith(_TEXT_TYPES) or media_type.endswith(("json", "xml"))
    ):
        # Incremental, so a cut through the last multi-byte character is still
        # text, while invalid bytes anywhere else mean binary.
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            text = decoder.decode(head, final=size <= BODY_DISPLAY_LIMIT)
        except UnicodeDecodeError:
            text = None
    if text is None:
        return format_html(
            "<em>{}</em>",
            _("Binary body: {size} ({bytes} bytes), {type}, not shown.").format(
                size=filesizeformat(size), bytes=size, type=media_type or _("no content type")
            ),
        )
    if size > BODY_DISPLAY_LIMIT:
        note = _("Truncated: showing the first {shown} of {size} bytes.").format(
            shown=BODY_DISPLAY_LIMIT, size=size
        )
        return format_html('<p class="help">{}</p><pre>{}</pre>', note, text)
    return format_html("<pre>{}</pre>", text)


def render_headers(raw: str) -> SafeString:
    if not raw:
        return format_html("<em>{}</em>", _("none stored"))
    try:
        pairs = json.loads(raw)
        text = "\n".join(f"{name}: {value}" for name, value in pairs)
    except (ValueError, TypeError):
        text = raw
    return format_html("<pre>{}</pre>", text)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(_ModelAdmin):
    list_display = (
        "short_key",
        "short_scope",
        "method",
        "short_path",
        "state_display",
        "status",
        "created_at",
        "expires_at",
    )
    list_display_links = ("short_key",)
    list_filter = (StateFilter, MethodFilter, StatusFilter)
    search_fields = ("key", "scope", "path")
    search_help_text = _("Part of a key, a scope (e.g. user:42) or a path.")
    # The primary key follows insertion: newest first without a sort.
    ordering = ("-pk",)
    date_hierarchy = "created_at"
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    if hasattr(admin, "ShowFacets"):  # Django 5.0+
        # Facets cost one COUNT per filter choice over the whole table.
        show_facets = admin.ShowFacets.NEVER
    actions = ("delete_expired",)
    fieldsets = (
        (
            _("Request"),
            {
                "fields": (
                    "key",
                    "scope",
                    "method",
                    "path",
                    "endpoint",
                    "fingerprint",
                    "request_id",
                )
            },
        ),
        (
            _("Life cycle"),
            {
                "fields": (
                    "state_display",
                    "created_at",
                    "locked_until",
                    "completed_at",
                    "expires_at",
                )
            },
        ),
        (
            _("Stored response"),
            {"fields": ("response_status", "headers_display", "body_display")},
        ),
    )
    readonly_fields = ("state_display", "headers_display", "body_display")

    def get_queryset(self, request: HttpRequest) -> QuerySet[IdempotencyRecord]:
        # The records' alias from the setting, as the engine and the purge use.
        queryset = super().get_queryset(request).using(conf.get_settings().database)
        match = request.resolver_match
        if match is not None and match.url_name and match.url_name.endswith("_changelist"):
            # The list never shows stored responses: don't fetch them.
            queryset = queryset.defer("response_body", "response_headers", "token")
        return queryset

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", None) or {}
        if "cl" in changelist and changelist["cl"].result_count > COUNT_LIMIT:
            # The count stopped at the cap; say so rather than show a wrong total.
            self.message_user(
                request,
                _(
                    "More than {limit} records match: only the newest can be paged "
                    "through. Narrow the list with a search, a filter or a date."
                ).format(limit=f"{COUNT_LIMIT:,}"),
                messages.INFO,
            )
        return response

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: IdempotencyRecord | None = None
    ) -> bool:
        return False

    @admin.display(description=_("key"), ordering="key")
    def short_key(self, record: IdempotencyRecord) -> str:
        return _shorten(record.key, 40)

    @admin.display(description=_("scope"), ordering="scope")
    def short_scope(self, record: IdempotencyRecord) -> str:
        return _shorten(record.scope, 24)

    @admin.display(description=_("path"), ordering="path")
    def short_path(self, record: IdempotencyRecord) -> str:
        return _shorten(record.path, 48)

    @admin.display(description=_("status"), ordering="response_status")
    def status(self, record: IdempotencyRecord) -> int | None:
        return record.response_status

    @admin.display(description=_("state"))
    def state_display(self, record: IdempotencyRecord) -> str:
        return state_label(record)

    @admin.display(description=_("response headers"))
    def headers_display(self, record: IdempotencyRecord) -> SafeString:
        return render_headers(record.response_headers)

    @admin.display(description=_("response body"))
    def body_display(self, record: IdempotencyRecord) -> SafeString:
        body = record.response_body
        return render_body(None if body is None else bytes(body), _content_type(record))

    @admin.action(
        description=_("Delete expired records among the selected"), permissions=["delete"]
    )
    def delete_expired(self, request: HttpRequest, queryset: QuerySet[IdempotencyRecord]) -> None:
        now = database_time_ago(queryset.db, timedelta())
        deleted, _batches = delete_in_batches(queryset.filter(expires_at__lte=now))
        self.message_user(
            request,
            ngettext(
                "Deleted %(count)d expired idempotency record.",
                "Deleted %(count)d expired idempotency records.",
                deleted,
            )
            % {"count": deleted},
            messages.SUCCESS,
        )
