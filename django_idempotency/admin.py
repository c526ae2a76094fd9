"""A read-only admin for answering "what did we answer to key X, and when?".

Built for tables of millions of rows: no full ``COUNT(*)`` per page, filters
with fixed choices instead of ``SELECT DISTINCT`` over the table, the list
ordered by primary key and sortable only on indexed columns, the users behind
``user:<pk>`` scopes fetched in one query per page, and response bodies loaded
only on the detail page.
"""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import DatabaseError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import dateformat, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import conf
from .encryption import SEALED_HEADERS, Unreadable
from .models import IdempotencyRecord, RecordQuerySet, State
from .purge import delete_in_batches

#: Bodies longer than this are cut on the detail page (and not parsed as JSON).
BODY_DISPLAY_LIMIT = 64 * 1024
#: The list counts at most this many rows; past that it says "more than".
COUNT_LIMIT = 10_000

EXPIRED = "expired"
#: What ``methods`` accepts (options.py): safe methods are refused there, so
#: no record can carry one and the filter does not offer them.
RECORDABLE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
#: The scope ``default_scope`` gives an authenticated user: ``user:<pk>``.
USER_SCOPE_PREFIX = "user:"
#: Lines up with log lines: to the second, in the project's time zone.
TIME_FORMAT = "Y-m-d H:i:s"
_JSON_TYPES = ("application/json", "application/problem+json")
_TEXT_TYPES = ("text/", "application/xml", "application/javascript", "application/x-www-form")


if TYPE_CHECKING:
    from django.contrib.admin.filters import _ListFilterChoices

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


class RecordChangeList(ChangeList):
    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[Any]:
        ordering = super().get_ordering(request, queryset)
        first, *rest = ordering
        if isinstance(first, str) and not first.startswith("-") and rest == ["-pk"] * len(rest):
            # Django breaks ties newest first whatever the sort; in the sort's
            # own direction instead, (created_at, pk) is the order of the index
            # on InnoDB (no filesort), and an ascending list reads oldest first.
            return [first, "pk"]
        return ordering


#: The query parameter of the shard selector (DATABASE lists several aliases).
logger = logging.getLogger("django_idempotency")

DATABASE_PARAMETER = "database"


def _carried_filters(request: HttpRequest) -> QueryDict:
    return QueryDict(_only_value(request.GET, "_changelist_filters") or "")


def _only_value(query: QueryDict, name: str) -> str | None:
    values = query.getlist(name)
    if len(values) > 1:
        # Django would take the last; a page must not guess which record it is about.
        raise Http404(_("This page names “{name}” more than once.").format(name=name))
    return values[0] if values else None


def carry_database(request: HttpRequest) -> HttpResponseRedirect | None:
    """A record's page reached with a bare ``?database=`` (a hand-made link):
    the redirect to it with the alias inside ``_changelist_filters``, where
    Django's links to the record's delete and history pages carry it. Without
    it those links would name no database and act on the first one's record
    with the same primary key."""
    if request.method not in ("GET", "HEAD") or DATABASE_PARAMETER not in request.GET:
        return None
    alias = selected_database(request)  # refuses two different or unknown aliases
    if _only_value(_carried_filters(request), DATABASE_PARAMETER) is not None:
        return None  # already carried, and the same alias
    query = request.GET.copy()
    del query[DATABASE_PARAMETER]
    filters = _carried_filters(request).copy()
    filters[DATABASE_PARAMETER] = alias
    query["_changelist_filters"] = filters.urlencode()
    return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")


def selected_database(request: HttpRequest) -> str:
    """The records alias this admin page shows: the shard selector's choice,
    on the list or carried to a record's page in ``_changelist_filters``;
    the first alias of ``IDEMPOTENCY["DATABASE"]`` otherwise.

    Primary keys are per database, so a record's page must look on the same
    alias as the list that linked to it, and so must its delete and history
    pages, which carry only ``_changelist_filters``: a page naming two
    different aliases, or one that is not a records database, is a 404
    rather than a page about one record that acts on another.
    """
    aliases = conf.get_settings().databases
    given = _only_value(request.GET, DATABASE_PARAMETER)
    carried = _only_value(_carried_filters(request), DATABASE_PARAMETER)
    if given is not None and carried is not None and given != carried:
        raise Http404(_("This page names two records databases."))
    chosen = given if given is not None else carried
    if chosen is None:
        return aliases[0]
    if chosen not in aliases:
        raise Http404(_("No records database is called “{alias}”.").format(alias=chosen))
    return chosen


class DatabaseFilter(admin.SimpleListFilter):
    """The shard selector: one database at a time (a page cannot be merged
    from several without sorting all of them). Hidden with one database."""

    title = _("database")
    parameter_name = DATABASE_PARAMETER

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        aliases = conf.get_settings().databases
        return [(alias, alias) for alias in aliases] if len(aliases) > 1 else []

    def choices(self, changelist: Any) -> Iterator[_ListFilterChoices]:
        # No "All": the list shows one database, the first one by default.
        current = self.value() or self.lookup_choices[0][0]
        for value, label in self.lookup_choices:
            yield {
                "selected": value == current,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset  # get_queryset already reads the alias from the request


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
        records = cast(RecordQuerySet, queryset)  # the model's manager makes them
        if value == EXPIRED:
            return records.expired()
        if value in (State.IN_PROGRESS, State.COMPLETED):
            return records.live().filter(state=value)
        return queryset


class MethodFilter(admin.SimpleListFilter):
    # Fixed choices: the automatic filter would run SELECT DISTINCT on every page.
    title = _("method")
    parameter_name = "method"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(m, m) for m in RECORDABLE_METHODS]

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


def _cut(text: str, length: int, shown: str | None = None) -> SafeString:
    # The change list's stylesheet cuts the cell again to its column's width;
    # the tooltip has the whole value.
    return format_html('<span title="{}">{}</span>', text, _shorten(shown or text, length))


def _local(value: datetime) -> datetime:
    # The project's TIME_ZONE (unless a middleware activated another), which
    # Django also makes the process's zone: log lines' asctime reads the same.
    return timezone.localtime(value) if timezone.is_aware(value) else value


def format_time(value: datetime) -> str:
    """``2026-12-02 19:27:05 CST``: to the second, with the zone it is in."""
    local = _local(value)
    zone = dateformat.format(local, "T") if timezone.is_aware(value) else ""
    return f"{dateformat.format(local, TIME_FORMAT)} {zone}".strip()


def time_cell(value: datetime) -> SafeString:
    # Date and time each keep together; a narrow window may put the time
    # under the date, never cut either. The zone is in the tooltip.
    local = _local(value)
    return format_html(
        '<time datetime="{}" title="{}"><span>{}</span> <span>{}</span></time>',
        value.isoformat(),
        format_time(value),
        dateformat.format(local, "Y-m-d"),
        dateformat.format(local, "H:i:s"),
    )


@dataclass(frozen=True)
class ScopeOwner:
    """The user behind a ``user:<pk>`` scope, as this viewer may see it."""

    username: str
    url: str | None


_OWNER_ATTR = "_idempotency_scope_owner"


def _scope_user_pk(scope: str) -> Any | None:
    if not scope.startswith(USER_SCOPE_PREFIX):
        return None
    pk_field = get_user_model()._meta.pk
    assert pk_field is not None
    try:
        pk = pk_field.to_python(scope[len(USER_SCOPE_PREFIX) :])
        # Range validators too: an out-of-range integer fails the query on
        # some databases instead of matching nothing.
        pk_field.run_validators(pk)
    except ValidationError:
        return None
    return pk


def _is_expired(record: IdempotencyRecord, now: datetime) -> bool:
    return record.expires_at <= now


def state_label(record: IdempotencyRecord, now: datetime | None = None) -> str:
    now = now or timezone.now()
    if _is_expired(record, now):
        return str(_("expired"))
    if record.state == State.IN_PROGRESS and record.locked_until <= now:
        # Its worker died or overran: the next retry takes the key over.
        return str(_("in progress (lock expired)"))
    return str(record.get_state_display())


_OPENED_ATTR = "_idempotency_opened"


def _opened(record: IdempotencyRecord) -> tuple[list[tuple[str, str]], bytes | None] | None:
    """The record's headers and body, decrypted once per record shown; None
    when they are sealed under a key that is not in ENCRYPTION_KEYS."""
    if not hasattr(record, _OPENED_ATTR):
        try:
            opened: Any = record.opened_response()
        except Unreadable:
            opened = None
        except ValueError:  # headers that are not JSON: shown as stored
            opened = ([], None if record.response_body is None else bytes(record.response_body))
        setattr(record, _OPENED_ATTR, opened)
    return cast("tuple[list[tuple[str, str]], bytes | None] | None", getattr(record, _OPENED_ATTR))


_UNREADABLE = _(
    "Encrypted with a key that is not in ENCRYPTION_KEYS (or altered): cannot be shown, "
    "and a retry is answered 500 idempotency_record_unreadable."
)


def _content_type(headers: list[tuple[str, str]]) -> str:
    for name, value in headers:
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
        "request_method",
        "short_path",
        "state_display",
        "status",
        "created",
        "expires",
    )
    list_display_links = ("short_key",)
    # Only what an index can serve (migrations 0001 and 0002): sorting on key,
    # scope, path or status would sort the whole table for every page.
    sortable_by = ("created", "expires")
    list_filter = (DatabaseFilter, StateFilter, MethodFilter, StatusFilter)
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
                    "scope_display",
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
                    "created_display",
                    "locked_display",
                    "completed_display",
                    "expires_display",
                )
            },
        ),
        (
            _("Stored response"),
            {"fields": ("response_status", "headers_display", "body_display")},
        ),
    )
    readonly_fields = (
        "scope_display",
        "state_display",
        "created_display",
        "locked_display",
        "completed_display",
        "expires_display",
        "headers_display",
        "body_display",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[IdempotencyRecord]:
        # The records' alias from the setting (the selected one when sharded),
        # as the engine and the purge use.
        queryset = super().get_queryset(request).using(selected_database(request))
        match = request.resolver_match
        if match is not None and match.url_name and match.url_name.endswith("_changelist"):
            # The list never shows stored responses: don't fetch them.
            queryset = queryset.defer("response_body", "response_headers", "token")
        return queryset

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            response = super().changelist_view(request, extra_context)
        except DatabaseError:
            return self._unavailable(request)
        changelist = getattr(response, "context_data", None) or {}
        if "cl" in changelist:
            # Before the (lazy) rendering: one query for the whole page.
            self.attach_scope_owners(request, changelist["cl"].result_list)
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

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return carry_database(request) or super().change_view(
            request, object_id, form_url, extra_context
        )

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return carry_database(request) or super().delete_view(request, object_id, extra_context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return carry_database(request) or super().history_view(request, object_id, extra_context)

    def _unavailable(self, request: HttpRequest) -> HttpResponse:
        """The list of a records database that fails: a page saying so, with
        the other shards' lists, rather than a 500 (a shard may be down for
        maintenance while the others serve)."""
        alias = selected_database(request)
        logger.exception("The admin could not read the idempotency records on %r", alias)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Records database unavailable"),
            "opts": self.model._meta,
            "alias": alias,
            "others": [other for other in conf.get_settings().databases if other != alias],
        }
        return TemplateResponse(
            request,
            "admin/django_idempotency/idempotencyrecord/unavailable.html",
            context,
            status=503,
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: IdempotencyRecord | None = None,
    ) -> HttpResponse:
        if obj is not None:
            self.attach_scope_owners(request, [obj])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def attach_scope_owners(
        self, request: HttpRequest, records: Iterable[IdempotencyRecord]
    ) -> None:
        """Look up the users of ``user:<pk>`` scopes, all in one query, and
        remember on each record how this viewer may see its user."""
        records = list(records)
        wanted = {r.pk: pk for r in records if (pk := _scope_user_pk(r.scope)) is not None}
        if not wanted:
            return
        user_model = get_user_model()
        # The user's own alias (routers), not the records' one.
        users = user_model._default_manager.only(user_model.USERNAME_FIELD).in_bulk(
            set(wanted.values())
        )
        can_link = self._may_view_users(request, user_model)
        for record in records:
            user = users.get(wanted.get(record.pk))
            if user is not None:
                url = self._user_url(user) if can_link else None
                setattr(record, _OWNER_ATTR, ScopeOwner(str(user.get_username()), url))

    def _may_view_users(self, request: HttpRequest, user_model: type[Model]) -> bool:
        if not self.admin_site.is_registered(user_model):
            return False
        user_admin = self.admin_site._registry[user_model]
        return user_admin.has_view_permission(request)

    def _user_url(self, user: Model) -> str | None:
        opts = user._meta
        try:
            return reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                args=(quote(user.pk),),
                current_app=self.admin_site.name,
            )
        except NoReverseMatch:  # a user admin without a change view
            return None

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return RecordChangeList

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: IdempotencyRecord | None = None
    ) -> bool:
        return False

    @admin.display(description=_("key"))
    def short_key(self, record: IdempotencyRecord) -> SafeString:
        return _cut(record.key, 40)

    @admin.display(description=_("scope"))
    def short_scope(self, record: IdempotencyRecord) -> SafeString:
        owner: ScopeOwner | None = getattr(record, _OWNER_ATTR, None)
        if owner is None:
            # Not a user, a user that is gone, or a custom scope: as stored.
            return _cut(record.scope, 24)
        if owner.url is None:
            return _cut(record.scope, 24, shown=owner.username)
        return format_html(
            '<a href="{}" title="{}">{}</a>',
            owner.url,
            record.scope,
            _shorten(owner.username, 24),
        )

    @admin.display(description=_("scope"))
    def scope_display(self, record: IdempotencyRecord) -> SafeString:
        owner: ScopeOwner | None = getattr(record, _OWNER_ATTR, None)
        if owner is None:
            return format_html("{}", record.scope)
        if owner.url is None:
            return format_html("{} ({})", record.scope, owner.username)
        return format_html('{} (<a href="{}">{}</a>)', record.scope, owner.url, owner.username)

    @admin.display(description=_("method"))
    def request_method(self, record: IdempotencyRecord) -> str:
        return record.method

    @admin.display(description=_("path"))
    def short_path(self, record: IdempotencyRecord) -> SafeString:
        return _cut(record.path, 48)

    @admin.display(description=_("status"))
    def status(self, record: IdempotencyRecord) -> int | None:
        return record.response_status

    @admin.display(description=_("state"))
    def state_display(self, record: IdempotencyRecord) -> str:
        return state_label(record)

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, record: IdempotencyRecord) -> SafeString:
        return time_cell(record.created_at)

    @admin.display(description=_("expires"), ordering="expires_at")
    def expires(self, record: IdempotencyRecord) -> SafeString:
        return time_cell(record.expires_at)

    @admin.display(description=_("created"))
    def created_display(self, record: IdempotencyRecord) -> str:
        return format_time(record.created_at)

    @admin.display(description=_("locked until"))
    def locked_display(self, record: IdempotencyRecord) -> str:
        in_progress = record.state == State.IN_PROGRESS and not _is_expired(record, timezone.now())
        # A completed or expired record holds no lock: its old deadline
        # would only suggest one.
        return format_time(record.locked_until) if in_progress else self.get_empty_value_display()

    @admin.display(description=_("completed"))
    def completed_display(self, record: IdempotencyRecord) -> str:
        completed = record.completed_at
        return self.get_empty_value_display() if completed is None else format_time(completed)

    @admin.display(description=_("expires"))
    def expires_display(self, record: IdempotencyRecord) -> str:
        return format_time(record.expires_at)

    @admin.display(description=_("response headers"))
    def headers_display(self, record: IdempotencyRecord) -> SafeString:
        if record.response_headers != SEALED_HEADERS:
            return render_headers(record.response_headers)
        opened = _opened(record)
        if opened is None:
            return format_html("<em>{}</em>", _UNREADABLE)
        return render_headers(json.dumps(opened[0]))

    @admin.display(description=_("response body"))
    def body_display(self, record: IdempotencyRecord) -> SafeString:
        opened = _opened(record)
        if opened is None:
            return format_html("<em>{}</em>", _UNREADABLE)
        headers, body = opened
        return render_body(body, _content_type(headers))

    @admin.action(
        description=_("Delete expired records among the selected"), permissions=["delete"]
    )
    def delete_expired(self, request: HttpRequest, queryset: RecordQuerySet) -> None:
        deleted, _batches = delete_in_batches(queryset.expired())
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
