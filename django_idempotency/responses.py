"""Turning a view's response into what is stored, and a record into a replay."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.http import http_date

from .options import Options
from .store import StoredResponse

# Headers that belong to the original exchange, not to the operation's result:
# credentials, hop-by-hop and framing headers, and per-request rate limits.
_NEVER_STORED = frozenset(
    {
        "set-cookie",
        "cookie",
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "proxy-authenticate",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "date",
        "server",
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
    }
)
_NEVER_STORED_PREFIXES = ("x-ratelimit-", "ratelimit-", "x-rate-limit-")


def storable_headers(response: HttpResponseBase, options: Options) -> list[tuple[str, str]]:
    skip = set(_NEVER_STORED)
    for header in (options.replayed_header, options.request_id_header, options.expiry_header):
        if header:
            skip.add(header.lower())
    return [
        (name, value)
        for name, value in response.items()
        if name.lower() not in skip and not name.lower().startswith(_NEVER_STORED_PREFIXES)
    ]


def unstorable_reason(response: HttpResponseBase, options: Options) -> str | None:
    """Why this response must not be stored (and its key released), or None."""
    if response.streaming or isinstance(response, StreamingHttpResponse):
        return "streaming response"
    if response.status_code >= 500 and not options.store_server_errors:
        return "server error"
    if len(response.content) > options.max_response_bytes:  # type: ignore[attr-defined]
        return "response larger than max_response_bytes"
    return None


def replay(stored: StoredResponse, options: Options) -> HttpResponse:
    response = HttpResponse(stored.body, status=options.replay_status or stored.status)
    for name, value in stored.headers:
        response[name] = value
    if options.replayed_header:
        response[options.replayed_header] = "true"
    advertise_expiry(response, options, stored.expires_at)
    return response


def advertise_expiry(
    response: HttpResponseBase, options: Options, expires_at: datetime | None
) -> None:
    """Set ``expiry_header`` to ``expires_at`` as an HTTP date. The date has
    whole seconds and is rounded down, so a client is never told it may
    retry later than the record lives."""
    if options.expiry_header and expires_at is not None:
        response[options.expiry_header] = http_date(int(expires_at.timestamp()))


def advertise_first_expiry(
    response: HttpResponseBase, options: Options, expires_at: datetime | None
) -> None:
    """The first response: its expiry only when it is stored (an unstored
    answer released its key, so a retry runs again)."""
    if options.expiry_header and unstorable_reason(response, options) is None:
        advertise_expiry(response, options, expires_at)
