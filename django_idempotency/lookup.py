"""``GET idempotency/keys/<key>``: what became of a key, for a client that lost
the response and would rather ask than send the request again.

The caller's scope is found as on the protected views (DRF's authentication,
then the ``SCOPE`` setting's callable or the default scope), and only records
of that scope are found: the record is read by its lookup hash, which is a
hash of the scope and the key. A key of another scope is therefore looked up
exactly as an unknown key is, with the same statement and the same 404.

Costs nothing on the protected views: the look-up reads the table through the
unique index on ``lookup_hash`` and needs no index of its own.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from django.db import DatabaseError
from django.http.response import HttpResponseBase
from django.urls import Resolver404, get_script_prefix, resolve
from django.utils.translation import gettext_lazy as _
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from . import conf, engine
from .encryption import Unreadable
from .exceptions import (
    PROBLEM_CONTENT_TYPE,
    AnonymousKey,
    IdempotencyError,
    KeyInvalid,
    KeyUnknown,
    RecordUnreadable,
    Unavailable,
)
from .identity import lookup_hash, scope_of
from .keys import parse_key
from .models import IdempotencyRecord, State
from .option_types import IdempotencyOptions

logger = logging.getLogger("django_idempotency")

__all__ = ["EXPIRED", "OUTCOME_SCHEMA", "OutcomeLookupView", "find_record", "outcome"]

#: The state of a record past ``expires_at``: a request with the key now runs
#: as a new operation (once nobody works on the old one).
EXPIRED = "expired"

#: The longest ``?endpoint=`` read: a method, a space and a path column's worth.
_ENDPOINT_PARAM_MAX = 16 + 1 + 2048

_F = TypeVar("_F", bound=Callable[..., Any])

LOOKUP_UNAVAILABLE = _(
    "What became of this idempotency key cannot be read now. Ask again later; "
    "do not take this answer for an unknown key."
)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # USE_TZ = False: the store writes the database's UTC clock
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def candidate_endpoints(value: str | None) -> list[str]:
    """The endpoints ``?endpoint=`` may name: as the look-up shows them
    (``POST payments/``, the URL route) or as the client sent the request
    (``POST /payments/``, resolved to its route here)."""
    if value is None or len(value) > _ENDPOINT_PARAM_MAX:
        return []
    method, _, target = value.strip().partition(" ")
    target = target.strip()
    if not method or not target:
        return []
    method = method.upper()
    candidates = [f"{method} {target}"]
    path = urlsplit(target).path
    prefix = get_script_prefix()
    if path.startswith(prefix):
        try:
            match = resolve("/" + path[len(prefix) :])
        except Resolver404:
            return candidates
        # As identity.endpoint_of names it: the route, or the path without one.
        route = match.route or path
        if f"{method} {route}" not in candidates:
            candidates.insert(0, f"{method} {route}")
    return candidates


def find_record(
    scope: str, key: str, endpoints: Sequence[str] = (), *, with_body: bool = False
) -> IdempotencyRecord | None:
    """The record of ``key`` in ``scope``, annotated with ``is_expired``.

    Records of views with ``per_endpoint=True`` are found only with their
    endpoint among ``endpoints``; one of those wins over a record of the key
    on all endpoints. One statement, on the unique index."""
    hashes = [lookup_hash(scope, key, endpoint) for endpoint in endpoints]
    hashes.append(lookup_hash(scope, key, None))
    fields = ["lookup_hash", "endpoint", "state", "response_status"]
    fields += ["created_at", "completed_at", "expires_at"]
    if with_body:
        fields += ["response_headers", "response_body"]
    records = (
        IdempotencyRecord.objects.using(conf.get_settings().database_for(scope))
        .filter(lookup_hash__in=hashes)
        .with_expired()
        .only(*fields)
    )
    found = sorted(records, key=lambda record: hashes.index(record.lookup_hash))
    return found[0] if found else None


def _body(record: IdempotencyRecord) -> dict[str, Any]:
    # Decrypted as a replay would be (encryption.Unreadable if it cannot be).
    headers, body = record.opened_response()
    raw = bytes(body or b"")
    content_type = next((value for name, value in headers if name.lower() == "content-type"), None)
    try:
        return {"content_type": content_type, "body": raw.decode(), "body_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {
            "content_type": content_type,
            "body": base64.b64encode(raw).decode("ascii"),
            "body_encoding": "base64",
        }


def outcome(record: IdempotencyRecord, key: str, *, with_body: bool = False) -> dict[str, Any]:
    """The look-up's JSON document for a record read by ``find_record``."""
    expired = bool(record.is_expired)  # type: ignore[attr-defined]  # SQLite: 0 or 1
    response: dict[str, Any] | None = None
    if record.state == State.COMPLETED:
        response = {"status": record.response_status}
        if with_body:
            response.update(_body(record))
    return {
        "key": key,
        "state": EXPIRED if expired else record.state,
        "endpoint": record.endpoint,
        "created_at": _iso(record.created_at),
        "completed_at": _iso(record.completed_at),
        "expires_at": _iso(record.expires_at),
        "response": response,
    }


def _not_cached(response: HttpResponseBase) -> HttpResponseBase:
    # An outcome changes (in progress, completed, expired) and is the caller's own.
    response["Cache-Control"] = "no-store"
    return response


def _problem(error: IdempotencyError) -> HttpResponseBase:
    return _not_cached(error.as_response())


_NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}

#: The 200 answer's JSON Schema (OpenAPI 3.0), as the view documents it.
OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "state": {
            "type": "string",
            "enum": [State.IN_PROGRESS.value, State.COMPLETED.value, EXPIRED],
            "description": "`in_progress`: the first request is running, or its worker died "
            "(a retry takes over after lock_timeout). `completed`: its response is stored; "
            "a retry gets it back. `expired`: the key is no longer remembered; a request "
            "with it runs as a new operation.",
        },
        "endpoint": {
            "type": "string",
            "description": "Method and URL route of the first request, e.g. `POST payments/`.",
        },
        "created_at": {"type": "string", "format": "date-time"},
        "completed_at": _NULLABLE_TIME,
        "expires_at": {"type": "string", "format": "date-time"},
        "response": {
            "type": "object",
            "nullable": True,
            "description": "The stored response; null while in progress. `content_type`, "
            "`body` and `body_encoding` only where the server's `LOOKUP_BODY` setting is on.",
            "properties": {
                "status": {"type": "integer"},
                "content_type": {"type": "string", "nullable": True},
                "body": {"type": "string"},
                "body_encoding": {"type": "string", "enum": ["utf-8", "base64"]},
            },
            "required": ["status"],
        },
    },
    "required": ["key", "state", "endpoint", "created_at", "completed_at", "expires_at"],
}


def _documented(handler: _F) -> _F:
    """drf-spectacular's ``extend_schema`` where it is installed."""
    try:
        from drf_spectacular.types import OpenApiTypes
        from drf_spectacular.utils import (
            OpenApiExample,
            OpenApiParameter,
            OpenApiResponse,
            extend_schema,
        )
    except ImportError:
        return handler
    from .openapi import problem_codes, problem_schema

    problem = problem_schema({"type": "string", "enum": problem_codes()})

    def example(status: int, error: IdempotencyError) -> Any:
        return OpenApiExample(
            error.default_code,
            summary=str(error.title),
            value=json.loads(error.as_response().content),
            status_codes=[str(status)],
            media_type=PROBLEM_CONTENT_TYPE,
            response_only=True,
        )

    decorate = extend_schema(
        operation_id="idempotency_key_outcome",
        summary="What became of an idempotency key",
        description="The state of the caller's own request with this key, and its stored "
        "response status, without sending the request again. A key of another client "
        "answers 404, exactly as a key that was never sent.",
        tags=["idempotency"],
        parameters=[
            OpenApiParameter(
                "endpoint",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="Where the request was sent, as `METHOD /path/` (or the "
                "`endpoint` the look-up shows). Needed for keys of endpoints that keep "
                "their keys apart (`per_endpoint`).",
            )
        ],
        responses={
            200: OpenApiResponse(OUTCOME_SCHEMA, description="The key's outcome."),
            (400, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                problem,
                description="`idempotency_key_invalid`, `idempotency_key_anonymous`.",
            ),
            (404, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                problem, description="`idempotency_key_unknown`."
            ),
            (503, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                problem,
                description="`idempotency_unavailable`: the records database cannot be "
                "read now; ask again after `Retry-After`.",
            ),
        },
        examples=[
            example(400, KeyInvalid("the key contains characters that are not allowed")),
            example(400, AnonymousKey()),
            example(404, KeyUnknown()),
            example(503, Unavailable(LOOKUP_UNAVAILABLE)),
        ],
    )
    return decorate(handler)


class OutcomeLookupView(APIView):
    """What became of the caller's request with an idempotency key."""

    #: Read for the key rules (header-independent ones) and ``scope``: set them
    #: as on the protected views whose keys this looks up. The rest is ignored.
    idempotency_options: ClassVar[IdempotencyOptions] = {}
    #: The ``ScopedRateThrottle`` scope, used once ``DEFAULT_THROTTLE_RATES``
    #: has a rate for it (DRF refuses a scope without a rate).
    lookup_throttle_scope: ClassVar[str] = "idempotency_lookup"
    _view_options: ClassVar[engine.ViewOptions]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._view_options = engine.ViewOptions(cls.idempotency_options)

    @property
    def throttle_scope(self) -> str | None:
        scope = self.lookup_throttle_scope
        for throttle in self.throttle_classes:
            if issubclass(throttle, ScopedRateThrottle) and scope in throttle.THROTTLE_RATES:
                return scope
        return None

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        """``as_view(idempotency_options={...})`` is a subclass with those
        options, validated here, once, like a subclass's."""
        options = initkwargs.pop("idempotency_options", None)
        view_class = cls
        if options is not None:
            view_class = type(cls.__name__, (cls,), {"idempotency_options": options})
        return super(OutcomeLookupView, view_class).as_view(**initkwargs)

    @_documented
    def get(self, request: Request, key: str) -> HttpResponseBase:
        options = self._view_options.get()
        try:
            parsed = parse_key(key, options)
            scope = scope_of(request, options)
        except IdempotencyError as exc:
            return _problem(exc)
        with_body = conf.get_settings().lookup_body
        endpoints = candidate_endpoints(request.query_params.get("endpoint"))
        try:
            record = find_record(scope, parsed, endpoints, with_body=with_body)
        except DatabaseError:
            # The scope's records database is down (with shards: that one
            # shard): the outcome is unknown, not absent, so no 404.
            logger.exception("Could not read idempotency key for a look-up; answering 503")
            return _problem(Unavailable(LOOKUP_UNAVAILABLE))
        if record is None:
            return _problem(KeyUnknown())
        try:
            document = outcome(record, parsed, with_body=with_body)
        except Unreadable as exc:
            logger.error(
                "Idempotency record %s cannot be decrypted for a look-up: %s", record.pk, exc
            )
            return _problem(RecordUnreadable())
        return _not_cached(Response(document))


OutcomeLookupView._view_options = engine.ViewOptions(OutcomeLookupView.idempotency_options)
