"""System checks for the ``IDEMPOTENCY`` setting and the records database
(ids ``django_idempotency.E00x`` and ``W00x``)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections
from django.db.utils import load_backend
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from .conf import parse_setting
from .decorators import MARKER
from .encryption import EncryptionConfigError
from .options import OptionError
from .store import migrate_command, table_exists

_DOCS = "See https://django-idempotency.readthedocs.io/en/latest/settings/"
SUPPORTED_VENDORS = ("postgresql", "mysql", "sqlite")


def _vendor(engine: str) -> str:
    """The vendor, not the engine path: PostGIS and SpatiaLite are PostgreSQL
    and SQLite underneath."""
    try:
        return str(load_backend(engine).DatabaseWrapper.vendor)
    except Exception:  # a backend whose driver is missing: Django reports that itself
        return engine


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        parsed = parse_setting(getattr(settings, "IDEMPOTENCY", None))
    except EncryptionConfigError as exc:
        return [
            Error(
                f"IDEMPOTENCY setting: {exc}.",
                hint="See https://django-idempotency.readthedocs.io/en/latest/recipes/encryption/",
                id="django_idempotency.E008",
            )
        ]
    except OptionError as exc:
        # The message names the option and, for an unknown name, the valid ones.
        return [Error(f"IDEMPOTENCY setting: {exc}.", hint=_DOCS, id="django_idempotency.E001")]

    messages: list[CheckMessage] = []
    databases = getattr(settings, "DATABASES", {})
    for alias in parsed.databases:
        if alias not in databases:
            messages.append(
                Error(
                    f"IDEMPOTENCY['DATABASE'] {'names' if parsed.sharded else 'is'} "
                    f"{alias!r}, which is not in DATABASES.",
                    hint=f"Use one of {sorted(databases)}.",
                    id="django_idempotency.E002",
                )
            )
            continue
        engine = databases[alias].get("ENGINE", "")
        if _vendor(engine) not in SUPPORTED_VENDORS:
            messages.append(
                Error(
                    f"The idempotency records database {alias!r} uses {engine!r}.",
                    hint="Supported: PostgreSQL, MySQL/MariaDB and SQLite.",
                    id="django_idempotency.E003",
                )
            )
    for listen in sorted(set((parsed.listen_databases or {}).values())):
        if listen not in databases and listen not in parsed.databases:
            messages.append(
                Error(
                    f"IDEMPOTENCY['LISTEN_DATABASE'] is {listen!r}, which is not in DATABASES.",
                    hint=f"Use one of {sorted(databases)}, None (DATABASE) or False (no LISTEN).",
                    id="django_idempotency.E002",
                )
            )
    if parsed.lock == "cache":
        caches = getattr(settings, "CACHES", {})
        backend = caches.get(parsed.cache_alias, {}).get("BACKEND", "")
        if parsed.cache_alias not in caches:
            messages.append(
                Error(
                    f"IDEMPOTENCY['CACHE_ALIAS'] is {parsed.cache_alias!r}, "
                    "which is not in CACHES.",
                    hint=f"Use one of {sorted(caches)}.",
                    id="django_idempotency.E004",
                )
            )
        elif "django_redis" not in backend:
            messages.append(
                Error(
                    f"IDEMPOTENCY['LOCK'] = 'cache' needs a django-redis cache; "
                    f"{parsed.cache_alias!r} uses {backend!r}.",
                    hint="Only Redis gives an atomic lock shared by every app server. "
                    "Install django-idempotency[redis] and use django_redis.cache.RedisCache.",
                    id="django_idempotency.E005",
                )
            )
    if "rest_framework" not in getattr(settings, "INSTALLED_APPS", ()):
        messages.append(
            Warning(
                "django_idempotency protects Django REST Framework views, but "
                "'rest_framework' is not in INSTALLED_APPS.",
                id="django_idempotency.W001",
            )
        )
    return messages


@register(Tags.compatibility)
def check_schema_class(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """drf-spectacular wired without the app's schema class: the schema would
    leave every key header and problem response out, silently."""
    if "drf_spectacular" not in getattr(settings, "INSTALLED_APPS", ()):
        return []
    try:
        from drf_spectacular.openapi import AutoSchema
        from rest_framework.settings import api_settings

        # The stubs type the setting as its import string; DRF resolves it to the class.
        schema_class: object = api_settings.DEFAULT_SCHEMA_CLASS
    except ImportError:
        return []  # DRF and drf-spectacular report their own import errors
    from .openapi import IdempotencySchemaMixin

    if (
        isinstance(schema_class, type)
        and issubclass(schema_class, AutoSchema)
        and not issubclass(schema_class, IdempotencySchemaMixin)
    ):
        return [
            Warning(
                f"REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS'] is {schema_class.__module__}."
                f"{schema_class.__qualname__}: the OpenAPI schema will not document the "
                "idempotency key header nor its problem responses.",
                hint="Use 'django_idempotency.openapi.AutoSchema', or put "
                "django_idempotency.openapi.IdempotencySchemaMixin first in your "
                "AutoSchema's bases. See https://django-idempotency.readthedocs.io/en/latest/openapi/",
                id="django_idempotency.W004",
            )
        ]
    return []


# PgBouncer's default port.
_PGBOUNCER_PORT = "6432"


@register(Tags.compatibility)
def check_prepared_statements(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W005: prepared statements on a records database that looks like PgBouncer.

    A guess from the settings, and the message says so: nothing on a
    connection tells PgBouncer from PostgreSQL, nor its pooling mode or version.
    """
    try:
        aliases = parse_setting(getattr(settings, "IDEMPOTENCY", None)).databases
    except OptionError:
        return []  # E001 says what is wrong
    messages: list[CheckMessage] = []
    for alias in aliases:
        messages += _prepared_statements(alias, getattr(settings, "DATABASES", {}).get(alias))
    return messages


def _prepared_statements(alias: str, database: Any) -> list[CheckMessage]:
    if not isinstance(database, dict) or _vendor(database.get("ENGINE", "")) != "postgresql":
        return []
    options = database.get("OPTIONS") or {}
    # Django sets psycopg's prepare_threshold to None unless OPTIONS gives one,
    # and its client-side binding cursors never prepare.
    threshold = options.get("prepare_threshold")
    if options.get("server_side_binding") is not True or threshold is None:
        return []
    why = _looks_like_pgbouncer(database)
    if why is None:
        return []
    return [
        Warning(
            f"Database {alias!r} (the idempotency records database) prepares statements "
            f"(OPTIONS server_side_binding=True, prepare_threshold={threshold!r}) and looks "
            f"like PgBouncer: {why}. A guess from the settings.",
            hint="PgBouncer in transaction pooling mode before 1.21, or without "
            "max_prepared_statements, runs a client's prepared statement on whichever server "
            "connection it hands out: claims then fail (503) or execute another client's "
            "statement. Remove prepare_threshold from OPTIONS (Django's default, None, works "
            "behind PgBouncer), or, on PgBouncer 1.21+ with max_prepared_statements set or "
            "without a pooler, add 'django_idempotency.W005' to SILENCED_SYSTEM_CHECKS. "
            "See https://django-idempotency.readthedocs.io/en/latest/installation/"
            "#behind-pgbouncer",
            id="django_idempotency.W005",
        )
    ]


def _looks_like_pgbouncer(database: dict[str, Any]) -> str | None:
    """Why the settings suggest PgBouncer, or None."""
    host = str(database.get("HOST") or "")
    port = str(database.get("PORT") or "")
    if port == _PGBOUNCER_PORT:
        return f"port {port} is PgBouncer's default"
    if "pgbouncer" in host.lower():
        return f"its host is {host!r}"
    return None


@register(Tags.compatibility)
def check_listen_through_pooler(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W006: waiting duplicates would LISTEN on a database that looks like PgBouncer.

    In transaction pooling the LISTEN stays on whichever server connection
    ran it, which PgBouncer then hands to other clients: nothing is heard,
    and notifications pile up in PostgreSQL's queue for a session nobody
    reads. Only views with ``wait`` listen, which the settings cannot tell.
    """
    try:
        app_settings = parse_setting(getattr(settings, "IDEMPOTENCY", None))
    except OptionError:
        return []  # E001 says what is wrong
    databases = getattr(settings, "DATABASES", {})
    messages: list[CheckMessage] = []
    for alias in app_settings.databases:
        listen = app_settings.listen_database(alias)
        database = databases.get(listen) if listen is not None else None
        if not isinstance(database, dict) or _vendor(database.get("ENGINE", "")) != "postgresql":
            continue
        why = _looks_like_pgbouncer(database)
        if why is None:
            continue
        messages.append(
            Warning(
                f"Duplicates that wait (option wait) for requests on {alias!r} would LISTEN "
                f"on database {listen!r}, which looks like PgBouncer: {why}. A guess from "
                "the settings.",
                hint="Behind PgBouncer in transaction pooling a LISTEN is never heard and "
                "stays on a pooled server connection. Point IDEMPOTENCY['LISTEN_DATABASE'] "
                "at a DATABASES entry that reaches PostgreSQL directly, or set it to False "
                "(waiters back off instead). Silence 'django_idempotency.W006' where no "
                "view waits or where the guess is wrong. See https://django-idempotency."
                "readthedocs.io/en/latest/recipes/wait/#pgbouncer-and-other-poolers",
                id="django_idempotency.W006",
            )
        )
    return messages


@register(Tags.database)
def check_table(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """``manage.py check --database ALIAS``: is the records table there?

    A warning, not an error: ``migrate`` runs the database checks too, and
    must not be stopped from creating the table it reports.
    """
    try:
        aliases = parse_setting(getattr(settings, "IDEMPOTENCY", None)).databases
    except OptionError:
        return []  # E001 says what is wrong
    messages: list[CheckMessage] = []
    for alias in aliases:
        if databases and alias in databases and alias in connections:
            messages += _table(alias)
    return messages


def _table(alias: str) -> list[CheckMessage]:
    try:
        present = table_exists(connections[alias])
    except DatabaseError as exc:
        return [
            Warning(
                f"Could not look for the idempotency records table on {alias!r}: {exc}",
                id="django_idempotency.W003",
            )
        ]
    if present:
        return []
    return [
        Warning(
            # Also printed by `migrate` just before it creates the table: worded
            # so that it reads true there too.
            f"The idempotency records table does not exist on database {alias!r} (yet): "
            "until it is created, every request with a key is answered 500.",
            hint=f"'{migrate_command(alias)}' creates it.",
            id="django_idempotency.W002",
        )
    ]


_PLAIN_VIEW_HINT = (
    "@idempotent works on Django REST Framework views only: put @api_view above it, "
    "or use an APIView/ViewSet. It needs DRF's Request, authentication and renderers."
)


@register(Tags.urls)
def check_protected_views(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Refuse ``@idempotent`` on plain Django views before the first request.

    The decorator cannot tell at definition time: below ``@api_view`` it gets
    the same bare function a plain Django view is. The URLconf tells.
    """
    if not getattr(settings, "ROOT_URLCONF", None):
        return []
    try:
        patterns = get_resolver().url_patterns
    except Exception:  # Django's own URL checks report a broken URLconf
        return []
    messages: list[CheckMessage] = [
        Error(
            f"{where} uses @idempotent on a view that is not a DRF view.",
            hint=_PLAIN_VIEW_HINT,
            id="django_idempotency.E006",
        )
        for where in _plain_protected_views(patterns)
    ]
    messages += [
        Error(
            f"{where} has an async handler under @idempotent, but DRF's own view cannot await it.",
            hint="Use adrf's @api_view, APIView or ViewSet (django-idempotency[async]).",
            id="django_idempotency.E007",
        )
        for where in _async_under_sync_views(patterns)
    ]
    return messages


def _views(patterns: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(route, callback) of every URL pattern, through includes and partials."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            try:
                inner = pattern.url_patterns
            except Exception:
                continue
            yield from _views(inner, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            callback = pattern.callback
            while isinstance(callback, functools.partial):  # path("x/", partial(view, ...))
                callback = callback.func
            yield prefix + str(pattern.pattern), callback


def _async_under_sync_views(patterns: Iterable[Any]) -> Iterator[str]:
    for route, callback in _views(patterns):
        view_class = getattr(callback, "view_class", None)
        if not (isinstance(view_class, type) and issubclass(view_class, APIView)):
            continue
        try:
            is_async = bool(getattr(view_class, "view_is_async", False))
        except Exception:  # mixed sync and async handlers: Django reports it
            continue
        if is_async:
            continue  # adrf's views await their handlers
        for name in getattr(view_class, "http_method_names", ()):
            handler = getattr(view_class, name, None)
            marked = _marked_function(handler)
            if marked is not None and inspect.iscoroutinefunction(marked):
                yield f"The URL pattern '{route}' ({view_class.__name__})"
                break


def _marked_function(handler: Any) -> Any:
    """The @idempotent function behind a handler: itself, or in the closure of
    the method DRF's @api_view builds around it."""
    if handler is None:
        return None
    if hasattr(handler, MARKER):
        return handler
    function = getattr(handler, "__func__", handler)
    for cell in getattr(function, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:
            continue
        if hasattr(contents, MARKER):
            return contents
    return None


def _plain_protected_views(patterns: Iterable[Any]) -> Iterator[str]:
    for route, callback in _views(patterns):
        view_class = getattr(callback, "view_class", None)
        if view_class is None:
            marked = hasattr(callback, MARKER)
        elif isinstance(view_class, type) and issubclass(view_class, APIView):
            marked = False
        else:  # a Django class-based view with a decorated handler method
            marked = any(
                hasattr(getattr(view_class, name, None), MARKER)
                for name in getattr(view_class, "http_method_names", ())
            )
        if marked:
            name = getattr(view_class or callback, "__qualname__", repr(callback))
            yield f"The URL pattern '{route}' ({name})"
