"""The per-view options: one table of specs, used by the decorator, the mixin,
the ``IDEMPOTENCY`` setting, the system checks and the generated docs alike.

Every option has one lower-case name (decorator keyword, key of
``idempotency_options``) and the same name upper-case in ``IDEMPOTENCY``.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils.module_loading import import_string

#: Visible ASCII except space (excluded by the range), ``"`` and ``,``: the
#: quote would clash with the Structured Field form of the header and a comma
#: is what a proxy puts between two copies of the same header.
DEFAULT_KEY_PATTERN = r"[!#-+\--~]+"

#: The longest key the record table can hold (``IdempotencyRecord.key``).
KEY_MAX_LENGTH_LIMIT = 1024

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class OptionError(ValueError):
    """An option value that cannot be used; the message names the rule."""


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionError(f"must be True or False, not {value!r}")
    return value


def _header(value: Any) -> str:
    if not isinstance(value, str) or not _HEADER_NAME.fullmatch(value):
        raise OptionError(f"must be an HTTP header name such as 'Idempotency-Key', not {value!r}")
    return value


def _optional_header(value: Any) -> str | None:
    return None if value is None else _header(value)


def _methods(value: Any) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise OptionError(f"must be a list of HTTP methods such as ['POST'], not {value!r}")
    methods = []
    for method in value:
        if not isinstance(method, str) or not method.isalpha():
            raise OptionError(f"must contain HTTP method names, not {method!r}")
        methods.append(method.upper())
    safe = {"GET", "HEAD", "OPTIONS", "TRACE"} & set(methods)
    if safe:
        raise OptionError(
            f"{sorted(safe)} are safe methods: they are idempotent by definition and "
            "must not be recorded"
        )
    unknown = set(methods) - {"POST", "PUT", "PATCH", "DELETE"}
    if unknown:
        raise OptionError(f"{sorted(unknown)} are not methods a DRF view handles")
    if not methods:
        # Every key would be ignored while clients count on it.
        raise OptionError("must name at least one method, such as ['POST']")
    return frozenset(methods)


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"must be a positive integer, not {value!r}")
    return value


def _key_max_length(value: Any) -> int:
    length = _positive_int(value)
    if length > KEY_MAX_LENGTH_LIMIT:
        raise OptionError(f"must be at most {KEY_MAX_LENGTH_LIMIT}, the longest key stored")
    return length


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OptionError(f"must be an integer >= 0, not {value!r}")
    return value


def _pattern(value: Any) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise OptionError(f"must be a regular expression string, not {value!r}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise OptionError(f"is not a valid regular expression: {exc}") from None


#: A century: longer than any retention, and "now + it" stays inside every
#: database's date range (SQLite and MySQL stop at year 9999).
MAX_DURATION = timedelta(days=36500)


def _duration(value: Any) -> timedelta:
    if isinstance(value, bool):
        raise OptionError(f"must be a timedelta or a number of seconds, not {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > MAX_DURATION.total_seconds():
            raise OptionError(f"must be at most {MAX_DURATION.days} days, not {value!r}")
        value = timedelta(seconds=value)
    if not isinstance(value, timedelta):
        raise OptionError(f"must be a timedelta or a number of seconds, not {value!r}")
    if value <= timedelta(0):
        raise OptionError(f"must be longer than zero, not {value!r}")
    if value > MAX_DURATION:
        raise OptionError(f"must be at most {MAX_DURATION.days} days, not {value!r}")
    return value


def _wait(value: Any) -> timedelta:
    """Like ``_duration``, but zero (the default: never wait) is allowed."""
    if not isinstance(value, bool) and (value == 0 or value == timedelta(0)):
        return timedelta(0)
    negative = (isinstance(value, timedelta) and value < timedelta(0)) or (
        isinstance(value, int | float) and not isinstance(value, bool) and value < 0
    )
    if negative:
        raise OptionError(f"must be 0 (do not wait) or longer than zero, not {value!r}")
    return _duration(value)


def _optional_callable(value: Any) -> Callable[..., Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise OptionError(f"cannot import {value!r}: {exc}") from None
    if not callable(value):
        raise OptionError(f"must be a callable or a dotted path to one, not {value!r}")
    return value  # type: ignore[no-any-return]


def _request_callable(value: Any) -> Callable[..., Any] | None:
    """A callable of the request, checked now: a wrong signature would
    otherwise answer every keyed request 500."""
    function = _optional_callable(value)
    if function is None:
        return None
    try:
        inspect.signature(function).bind("request")
    except TypeError:
        raise OptionError(f"must take one argument, the request: {function!r} cannot") from None
    except ValueError:  # no signature to read (some builtins): called as given
        pass
    return function


def _status(low: int, high: int) -> Callable[[Any], int]:
    def validate(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise OptionError(f"must be an HTTP status code from {low} to {high}, not {value!r}")
        return value

    return validate


def _optional_status(value: Any) -> int | None:
    return None if value is None else _status(200, 599)(value)


@dataclass(frozen=True)
class OptionSpec:
    name: str
    default: Any
    validate: Callable[[Any], Any]
    help: str

    @property
    def setting_name(self) -> str:
        return self.name.upper()


SPECS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "header",
        "Idempotency-Key",
        _header,
        "Request header that carries the key (matched case-insensitively).",
    ),
    OptionSpec(
        "required",
        False,
        _bool,
        "A request without a key is refused with 400 instead of running unprotected.",
    ),
    OptionSpec(
        "methods",
        ("POST", "PATCH"),
        _methods,
        "Methods that honour the key; other methods run exactly as without the app.",
    ),
    OptionSpec("key_min_length", 1, _positive_int, "Shortest accepted key."),
    OptionSpec(
        "key_max_length",
        255,
        _key_max_length,
        f"Longest accepted key (at most {KEY_MAX_LENGTH_LIMIT}).",
    ),
    OptionSpec(
        "key_pattern",
        DEFAULT_KEY_PATTERN,
        _pattern,
        "Regular expression the whole key must match. The default accepts visible "
        "ASCII without spaces, commas or double quotes.",
    ),
    OptionSpec(
        "ttl",
        timedelta(hours=24),
        _duration,
        "How long, from the first request, a key is remembered and replayed. "
        "A timedelta or seconds.",
    ),
    OptionSpec(
        "scope",
        None,
        _request_callable,
        "Callable ``request -> str`` (or dotted path) naming whose key space a key "
        "lives in. Default: the authenticated user, else the credential in "
        "``request.auth`` (API keys, client credentials); a key from an unauthenticated "
        "request is refused (400) unless this callable names the client.",
    ),
    OptionSpec(
        "per_endpoint",
        False,
        _bool,
        "True: the same key on two endpoints (method + route) is two operations. "
        "False: it is a reuse and answered with ``mismatch_status``.",
    ),
    OptionSpec(
        "fingerprint",
        None,
        _request_callable,
        "Callable ``request -> str | bytes`` (or dotted path) whose value must be "
        "identical for a retry. Default: method, path, query string and raw body "
        "(multipart forms and bodies read before the view: the parsed fields and files).",
    ),
    OptionSpec(
        "replay_status",
        None,
        _optional_status,
        "None replays the original status; a status code replaces it on replays.",
    ),
    OptionSpec(
        "replayed_header",
        "Idempotent-Replayed",
        _optional_header,
        "Header set to ``true`` on replayed responses; None disables it.",
    ),
    OptionSpec(
        "request_id_header",
        "X-Request-Id",
        _optional_header,
        "Header carrying the id of the request that produced the response; a replay "
        "carries the original request's id. None disables it.",
    ),
    OptionSpec(
        "expiry_header",
        None,
        _optional_header,
        "Header carrying the key's expiry as an HTTP date (for example "
        "``Idempotency-Key-Expires``) on the first and replayed responses to a keyed "
        "request: until then a retry is answered from the record. None disables it.",
    ),
    OptionSpec(
        "mismatch_status",
        422,
        _status(400, 499),
        "Status when a key is reused with a different request.",
    ),
    OptionSpec(
        "store_server_errors",
        False,
        _bool,
        "True stores and replays 5xx answers; False releases the key so a retry runs "
        "the operation again.",
    ),
    OptionSpec(
        "max_response_bytes",
        1024 * 1024,
        _non_negative_int,
        "Larger responses (and streaming ones) are passed through unstored and the key released.",
    ),
    OptionSpec(
        "lock_timeout",
        timedelta(seconds=60),
        _duration,
        "How long an unfinished request blocks its key before it is considered "
        "abandoned and may be taken over. Must exceed your slowest view.",
    ),
    OptionSpec(
        "wait",
        timedelta(0),
        _wait,
        "How long a duplicate that arrives while the first request runs waits for "
        "it to finish, to get the answer a retry after it would get, before it is "
        "answered 409. A timedelta or seconds, shorter than ``lock_timeout``; 0 "
        "answers 409 at once.",
    ),
    OptionSpec(
        "atomic",
        False,
        _bool,
        "True: the view's writes on the records database and the stored response "
        "commit in one transaction.",
    ),
)

SPECS_BY_NAME: Mapping[str, OptionSpec] = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True)
class Options:
    """Validated, fully resolved options for one view."""

    header: str
    required: bool
    methods: frozenset[str]
    key_min_length: int
    key_max_length: int
    key_pattern: re.Pattern[str]
    ttl: timedelta
    scope: Callable[..., str] | None
    per_endpoint: bool
    fingerprint: Callable[..., str | bytes] | None
    replay_status: int | None
    replayed_header: str | None
    request_id_header: str | None
    expiry_header: str | None
    mismatch_status: int
    store_server_errors: bool
    max_response_bytes: int
    lock_timeout: timedelta
    wait: timedelta
    atomic: bool


def validate_options(
    raw: Mapping[str, Any], *, upper: bool = False, also_valid: Iterable[str] = ()
) -> dict[str, Any]:
    """Validate option values by name; raise ``OptionError`` naming the option.

    ``upper`` reads setting-style names (``TTL``) instead of keyword names;
    ``also_valid`` are names the caller handles itself (the setting's global
    names), listed with the others when a name is unknown.
    """
    known = {(spec.setting_name if upper else spec.name): spec for spec in SPECS}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise OptionError(
            f"unknown option(s) {', '.join(map(repr, unknown))}; "
            f"valid names are {', '.join(sorted([*known, *also_valid]))}"
        )
    validated: dict[str, Any] = {}
    for name, value in raw.items():
        spec = known[name]
        try:
            validated[spec.name] = spec.validate(value)
        except OptionError as exc:
            raise OptionError(f"{name!r} {exc}") from None
    return validated


def combine(*layers: Mapping[str, Any]) -> Options:
    """Merge validated layers over the defaults and check the combination."""
    values = {spec.name: spec.validate(spec.default) for spec in SPECS}
    for layer in layers:
        values.update(layer)
    options = Options(**values)
    if options.key_min_length > options.key_max_length:
        raise OptionError(
            f"'key_min_length' ({options.key_min_length}) is greater than "
            f"'key_max_length' ({options.key_max_length})"
        )
    if options.lock_timeout > options.ttl:
        raise OptionError(
            f"'lock_timeout' ({options.lock_timeout}) is longer than 'ttl' ({options.ttl}): "
            "a key would be forgotten while its request may still be running"
        )
    if options.wait >= options.lock_timeout:
        raise OptionError(
            f"'wait' ({options.wait}) is not shorter than 'lock_timeout' "
            f"({options.lock_timeout}): a duplicate would still be waiting when the "
            "request it waits for counts as abandoned"
        )
    for name in ("replayed_header", "request_id_header"):
        other = getattr(options, name)
        if other and other.lower() == options.header.lower():
            raise OptionError(f"'{name}' must differ from 'header'")
    if options.expiry_header:
        for name in ("header", "replayed_header", "request_id_header"):
            other = getattr(options, name)
            if other and other.lower() == options.expiry_header.lower():
                raise OptionError(f"'expiry_header' must differ from '{name}'")
    return options
