"""OpenAPI schemas with drf-spectacular: every protected operation documents its
key header, the app's problem responses and the headers it adds, read from the
view's own options. No annotation on the views.

Wire it in once (``pip install "django-idempotency[openapi]"``)::

    REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "django_idempotency.openapi.AutoSchema"}

A project with its own ``AutoSchema`` subclass mixes in
``IdempotencySchemaMixin`` before drf-spectacular's class instead.

This module imports without drf-spectacular installed (the system check reads
it); only ``AutoSchema`` needs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .exceptions import (
    PROBLEM_CONTENT_TYPE,
    AnonymousKey,
    IdempotencyError,
    KeyInvalid,
    KeyMissing,
    KeyReused,
    RequestInProgress,
    RequestUnrecordable,
    Unavailable,
)
from .keys import parse_key
from .options import Options

if TYPE_CHECKING:
    from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
    from drf_spectacular.plumbing import ComponentRegistry

    _Base = SpectacularAutoSchema
else:
    _Base = object

__all__ = [
    "CODE_COMPONENT",
    "PROBLEM_COMPONENT",
    "AutoSchema",
    "IdempotencySchemaMixin",
    "problem_codes",
    "problem_schema",
]

#: Names of the component schemas of the problem document and of its ``code``.
#: Prefixed, so that they cannot collide with a project's own ``Problem``.
PROBLEM_COMPONENT = "IdempotencyProblem"
CODE_COMPONENT = "IdempotencyProblemCode"

# ECMA-262 (what OpenAPI tools evaluate, often in Unicode mode) reads some of
# what Python's ``re`` accepts differently or not at all. A pattern is only
# published when every construct in it means the same in both.
_PORTABLE_ESCAPES = frozenset("dDwWsSbBnrtfv") | frozenset("^$\\.*+?()[]{}|/-")
_GROUP_OPENERS = ("(?:", "(?=", "(?!", "(?<=", "(?<!")
_QUANTIFIER = re.compile(r"\{\d+(?:,\d*)?\}")
_HEX = frozenset("0123456789abcdefABCDEF")


def problem_codes() -> list[str]:
    """Every ``code`` a problem document of the app can carry, from its
    exception classes (the base class is never answered itself)."""
    from . import exceptions

    codes: set[str] = set()
    pending: list[type[IdempotencyError]] = list(IdempotencyError.__subclasses__())
    while pending:
        error = pending.pop()
        pending.extend(error.__subclasses__())
        # A project's own subclasses (raised by its scope callables) are its to document.
        if error.__module__ == exceptions.__name__:
            codes.add(error.default_code)
    return sorted(codes)


def _answered_errors(options: Options) -> list[IdempotencyError]:
    """The problems the engine answers on an operation with these options,
    in the order of its checks. ``idempotency_not_migrated`` (500) is left
    out: it is a deployment fault, not something a client handles."""
    errors: list[IdempotencyError] = []
    if options.required:
        errors.append(KeyMissing())
    errors.append(KeyInvalid(_invalid_key_detail(options)))
    errors.extend(
        [
            AnonymousKey(),
            RequestUnrecordable(),
            KeyReused(status=options.mismatch_status),
            RequestInProgress(),
            Unavailable(),
        ]
    )
    return errors


def _invalid_key_detail(options: Options) -> str:
    """A real ``detail`` of a refused key, worded by the code that refuses it."""
    too_short = "a" * (options.key_min_length - 1)
    try:
        parse_key(too_short, options)
    except KeyInvalid as exc:
        return str(exc)
    return ""  # pragma: no cover  (an empty key is always refused)


def key_schema(options: Options) -> dict[str, Any]:
    """The key's bounds as ``keys.parse_key`` applies them to the (unquoted) value."""
    schema: dict[str, Any] = {
        "type": "string",
        "minLength": options.key_min_length,
        "maxLength": options.key_max_length,
    }
    pattern = options.key_pattern
    if _portable(pattern):
        # fullmatch() in Python; an OpenAPI pattern matches anywhere unless anchored.
        # \d and \w mean the same in both dialects here: keys are ASCII-only.
        schema["pattern"] = f"^(?:{pattern.pattern})$"
    return schema


def _extra_flags(pattern: re.Pattern[str]) -> list[str]:
    return [flag.name for flag in re.RegexFlag if flag & pattern.flags & ~re.UNICODE and flag.name]


def _portable(pattern: re.Pattern[str]) -> bool:
    """True if ``pattern`` means the same to an ECMA-262 engine in Unicode mode."""
    return not _extra_flags(pattern) and _portable_source(pattern.pattern)


def _portable_source(source: str) -> bool:
    i, in_class = 0, False
    while i < len(source):
        char = source[i]
        if char == "\\":
            nxt = source[i + 1 : i + 2]
            if nxt == "x" and len(source) >= i + 4 and set(source[i + 2 : i + 4]) <= _HEX:
                i += 4
                continue
            if nxt == "u" and len(source) >= i + 6 and set(source[i + 2 : i + 6]) <= _HEX:
                i += 6
                continue
            # Not: \A \Z \N{...}, octal and back references, identity escapes
            # of letters or quotes (errors in Unicode mode).
            if nxt not in _PORTABLE_ESCAPES or (in_class and nxt == "b"):
                return False
            i += 2
            continue
        if in_class:
            in_class = char != "]"
            i += 1
            continue
        if char == "[":
            in_class = True
            i += 1
            if source[i : i + 1] == "^":
                i += 1
            if source[i : i + 1] == "]":  # a literal "]" first: an error in Unicode mode
                return False
            continue
        if char == "(" and source[i + 1 : i + 2] == "?":
            opener = next((o for o in _GROUP_OPENERS if source.startswith(o, i)), None)
            if opener is None:  # inline flags, named or atomic groups, comments
                return False
            i += len(opener)
            continue
        if char == "{":
            quantifier = _QUANTIFIER.match(source, i)
            if quantifier is None:  # "{,3}" or a literal brace
                return False
            i = quantifier.end()
        elif char in "}]":
            return False  # literal in Python, an error in Unicode mode
        elif char in "*+?":
            i += 1
        else:
            i += 1
            continue
        if source[i : i + 1] == "+":  # possessive quantifier
            return False
        if source[i : i + 1] == "?":  # lazy: the same in both
            i += 1
    return not in_class


def _key_parameter(options: Options) -> dict[str, Any]:
    seconds = int(options.ttl.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            remembered = f"{count} {unit}" + ("" if count == 1 else "s")
            break
    lines = [
        "Idempotency key: a value the client generates for this operation (a UUID v4 "
        "is ideal) and sends again, unchanged, on every retry. A retry gets the first "
        "response back and the operation runs once.",
        "Required: a request without it is refused with 400."
        if options.required
        else "Optional: without it the request runs unprotected.",
        f"Remembered for {remembered} from the first request"
        + (", separately on each endpoint." if options.per_endpoint else "."),
        'The IETF draft\'s quoted form ("key") is accepted too; the bounds apply to '
        "the unquoted value, which must be ASCII without control characters. A comma "
        "outside the quoted form is refused: it reads as two values of the header.",
    ]
    if not _portable(options.key_pattern):
        flags = _extra_flags(options.key_pattern)
        lines.append(
            f"It must match the Python regular expression `{options.key_pattern.pattern}`"
            + (f" with the flags {', '.join(flags)}." if flags else ".")
        )
    return {
        "in": "header",
        "name": options.header,
        "required": options.required,
        "schema": key_schema(options),
        "description": "\n\n".join(lines),
    }


def _request_id_header(options: Options) -> dict[str, dict[str, Any]]:
    if not options.request_id_header:
        return {}
    return {
        options.request_id_header: {
            "description": "Id of the request that produced this response (a replay "
            "carries the original request's). Sent when the request carries a key.",
            "schema": {"type": "string"},
        }
    }


def _replayed_header(options: Options) -> dict[str, dict[str, Any]]:
    if not options.replayed_header:
        return {}
    return {
        options.replayed_header: {
            "description": "`true` on a replayed response: the stored response of the "
            "first request with this key; the operation did not run again.",
            "schema": {"type": "string", "enum": ["true"]},
        }
    }


def _expiry_header(options: Options) -> dict[str, dict[str, Any]]:
    if not options.expiry_header:
        return {}
    return {
        options.expiry_header: {
            "description": "When the key expires (an HTTP date): until then a retry with "
            "it is answered from the stored response. On stored responses and replays.",
            "schema": {"type": "string"},
        }
    }


def _retry_after_header(codes: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {
        "Retry-After": {
            "description": "Seconds to wait before retrying with the same key; sent with "
            + ", ".join(f"`{code}`" for code in codes)
            + ".",
            "schema": {"type": "integer", "minimum": 0},
        }
    }


def problem_schema(code_ref: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A problem document (RFC 9457) answered by django-idempotency. "
        "Branch on `code` (or `type`), which never change; `title` and `detail` are "
        "for people and may be translated.",
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": code_ref,
        },
        "required": ["type", "title", "status", "detail", "code"],
    }


def _problem_ref(registry: ComponentRegistry) -> dict[str, str]:
    from drf_spectacular.plumbing import ResolvedComponent

    def component(name: str, schema: dict[str, Any]) -> dict[str, str]:
        resolved = ResolvedComponent(  # type: ignore[no-untyped-call]
            name=name,
            type=ResolvedComponent.SCHEMA,
            # The identity drf-spectacular compares when a name is registered twice.
            object=name,
            schema=schema,
        )
        registry.register_on_missing(resolved)
        return resolved.ref

    # A component of its own: drf-spectacular would otherwise name an inline
    # enum after its field ("CodeEnum"), a name a project's models may use too.
    code = component(
        CODE_COMPONENT,
        {
            "type": "string",
            "enum": problem_codes(),
            "description": "Stable code of the problem: see "
            "https://django-idempotency.readthedocs.io/en/latest/errors/",
        },
    )
    return component(PROBLEM_COMPONENT, problem_schema(code))


def _add_headers(response: dict[str, Any], headers: dict[str, dict[str, Any]]) -> None:
    if headers:
        existing = response.setdefault("headers", {})
        for name, header in headers.items():
            existing.setdefault(name, header)


def _append_description(response: dict[str, Any], text: str) -> None:
    current = response.get("description", "")
    response["description"] = f"{current}\n\n{text}" if current else text


def document(operation: dict[str, Any], options: Options, registry: ComponentRegistry) -> None:
    """Add what the app does on this operation to drf-spectacular's operation object."""
    parameters = operation.setdefault("parameters", [])
    # A parameter the view declares itself (@extend_schema) is its to describe.
    if not any(
        parameter.get("in") == "header"
        and parameter.get("name", "").lower() == options.header.lower()
        for parameter in parameters
    ):
        parameters.append(_key_parameter(options))

    responses: dict[str, Any] = operation.setdefault("responses", {})
    view_statuses = list(responses)
    view_headers = {
        **_replayed_header(options),
        **_request_id_header(options),
        **_expiry_header(options),
    }
    for status in view_statuses:
        _add_headers(responses[status], view_headers)

    if options.replay_status is not None:
        # The stored body comes back under another status: the view's success
        # representations, documented under that status too.
        replay = responses.setdefault(str(options.replay_status), {"description": ""})
        content = replay.setdefault("content", {})
        for status in view_statuses:
            if status.startswith("2"):
                for media_type, body in responses[status].get("content", {}).items():
                    content.setdefault(media_type, body)
        if not content:
            del replay["content"]
        _append_description(
            replay,
            f"A replay: the stored response of the first request with this key, "
            f"with status {options.replay_status}.",
        )
        _add_headers(replay, view_headers)

    by_status: dict[int, list[IdempotencyError]] = {}
    for error in _answered_errors(options):
        by_status.setdefault(error.status_code, []).append(error)
    ref = _problem_ref(registry)
    for status_code, errors in sorted(by_status.items()):
        codes = [error.default_code for error in errors]
        response = responses.setdefault(str(status_code), {"description": ""})
        _append_description(
            response,
            "Answered by django-idempotency, the operation did not run: "
            + ", ".join(f"`{code}`" for code in codes)
            + ".",
        )
        response.setdefault("content", {}).setdefault(
            PROBLEM_CONTENT_TYPE,
            {
                "schema": ref,
                "examples": {
                    error.default_code: {
                        "summary": str(error.title),
                        "value": json.loads(error.as_response().content),
                    }
                    for error in errors
                },
            },
        )
        headers = dict(_request_id_header(options))
        waits = [error.default_code for error in errors if error.retry_after is not None]
        if waits:
            headers.update(_retry_after_header(waits))
        _add_headers(response, headers)
    operation["responses"] = dict(sorted(responses.items()))


def _is_lookup(view: Any) -> bool:
    from .lookup import OutcomeLookupView

    return isinstance(view, OutcomeLookupView)


def link_problems(operation: dict[str, Any], registry: ComponentRegistry) -> None:
    """Point the problem responses that a view documents inline (the outcome
    look-up, for schema classes without this mixin) at the shared component."""
    for response in operation.get("responses", {}).values():
        content = response.get("content", {}).get(PROBLEM_CONTENT_TYPE)
        if content is not None:
            content["schema"] = _problem_ref(registry)


def _view_doc_without_mixin(view_class: type) -> str:
    """The docstring drf-spectacular would use if the mixin had none: the
    mixin documents itself for Python users, not the view's operations."""
    from drf_spectacular.plumbing import get_doc
    from drf_spectacular.settings import spectacular_settings

    from .mixins import IdempotencyMixin

    barrier = set(spectacular_settings.GET_LIB_DOC_EXCLUDES())
    for cls in view_class.__mro__:
        if cls in barrier:
            break
        if cls is not IdempotencyMixin and vars(cls).get("__doc__"):
            return get_doc(cls)
    return ""


class IdempotencySchemaMixin(_Base):
    """Documents ``@idempotent`` and ``IdempotencyMixin`` views in a
    drf-spectacular ``AutoSchema``: put it first in your own subclass's bases."""

    def get_description(self) -> str:  # type: ignore[override]  # drf-spectacular's signature
        from drf_spectacular.plumbing import get_doc

        from .mixins import IdempotencyMixin

        description = super().get_description()
        if isinstance(self.view, IdempotencyMixin) and description == get_doc(IdempotencyMixin):
            return _view_doc_without_mixin(type(self.view))
        return description

    def get_operation(
        self,
        path: str,
        path_regex: str,
        path_prefix: str,
        method: str,
        registry: ComponentRegistry,
    ) -> dict[str, Any] | None:
        from .mixins import view_options

        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        options = view_options(self.view, method)
        if options is not None:
            document(operation, options, registry)
        elif _is_lookup(self.view):
            link_problems(operation, registry)
        return operation


try:
    from drf_spectacular.openapi import AutoSchema as _SpectacularAutoSchema
except ImportError:  # the optional `openapi` extra is not installed
    pass
else:

    class AutoSchema(IdempotencySchemaMixin, _SpectacularAutoSchema):
        """drf-spectacular's ``AutoSchema``, documenting the idempotency keys."""
