"""Header names for a CORS configuration, such as django-cors-headers'.

A page on another origin may send only the request headers that the API
allows, and its script may read only the response headers that the API
exposes. None of the idempotency headers is CORS-safelisted: without them in
the configuration the browser refuses to send the key, and the page cannot
tell a replay from a first answer nor read how long to wait after a 409.

Both functions take the ``IDEMPOTENCY`` setting's dict, not Django's
settings, so that ``settings.py`` can call them right below that dict::

    CORS_ALLOW_HEADERS = (*default_headers, *cors.allow_headers(IDEMPOTENCY))
    CORS_EXPOSE_HEADERS = cors.expose_headers(IDEMPOTENCY)

Views that rename a header in their own options need that name added by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .options import SPECS_BY_NAME, OptionError

#: Sent with every 409 and 503 answer of the app.
RETRY_AFTER = "retry-after"


def _header(setting: Mapping[str, Any] | None, name: str) -> str | None:
    spec = SPECS_BY_NAME[name]
    value = (setting or {}).get(spec.setting_name, spec.default)
    try:
        header: str | None = spec.validate(value)
    except OptionError as exc:
        raise ImproperlyConfigured(f"IDEMPOTENCY[{spec.setting_name!r}] {exc}") from None
    return header.lower() if header else None


def allow_headers(setting: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The request header a cross-origin page must be allowed to send: the key."""
    header = _header(setting, "header")
    assert header is not None  # the key header cannot be disabled
    return (header,)


def expose_headers(setting: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The response headers a cross-origin page needs to read.

    The replay marker and the request id (unless the setting disables them),
    ``Retry-After``, and the expiry header if the setting names one.
    """
    names = (
        _header(setting, "replayed_header"),
        RETRY_AFTER,
        _header(setting, "request_id_header"),
        _header(setting, "expiry_header"),
    )
    return tuple(name for name in names if name)
