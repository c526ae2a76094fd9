"""What identifies an operation: its scope, endpoint, lookup hash, fingerprint
and request id. Request bodies are hashed here and never stored."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest
from django.http.request import RawPostDataException
from rest_framework.request import Request

from .options import Options

ANONYMOUS_SCOPE = "anonymous"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")


def default_scope(request: Request) -> str:
    """The authenticated user (as resolved by DRF), else one anonymous scope."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return ANONYMOUS_SCOPE


def scope_of(request: Request, options: Options) -> str:
    func: Callable[[Request], str] = options.scope or default_scope
    scope = func(request)
    if not isinstance(scope, str) or not scope:
        raise TypeError(f"the idempotency scope callable {func!r} must return a non-empty str")
    return scope


def endpoint_of(request: Request) -> str:
    """Method plus the URL pattern that matched (not the path, which has ids in it)."""
    match = request._request.resolver_match
    route = match.route if match is not None and match.route else request.path
    return f"{request.method} {route}"


def lookup_hash(scope: str, key: str, endpoint: str | None) -> str:
    parts = [scope, key] if endpoint is None else [scope, key, endpoint]
    # NUL cannot occur in a header value or a route, so the join is unambiguous.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _form_digest(django_request: HttpRequest) -> bytes:
    """Hash parsed form fields and uploaded files by content.

    Multipart bodies are hashed this way, never as raw bytes: every client
    picks a new random boundary for each send, so a retry's bytes differ.
    """
    digest = hashlib.sha256()
    for name, values in sorted(django_request.POST.lists()):
        digest.update(repr((name, values)).encode())
    for name, files in sorted(django_request.FILES.lists()):
        for upload in files:
            digest.update(repr((name, upload.name, upload.size)).encode())
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
    return digest.digest()


def _body_digest(request: Request) -> bytes:
    django_request = request._request
    if django_request.content_type == "multipart/form-data":
        # DRF reuses request.POST/FILES once Django has parsed them.
        return _form_digest(django_request)
    try:
        return hashlib.sha256(django_request.body).digest()
    except RawPostDataException:
        # The body stream was consumed before we saw it (a CSRF check reads
        # request.POST): what was parsed is all there is to compare.
        return _form_digest(django_request)


def default_fingerprint(request: Request) -> bytes:
    django_request = request._request
    digest = hashlib.sha256()
    for part in (
        (request.method or "").encode(),
        django_request.path.encode(),
        django_request.META.get("QUERY_STRING", "").encode("latin-1"),
        _body_digest(request),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def fingerprint_of(request: Request, options: Options) -> str:
    if options.fingerprint is None:
        return default_fingerprint(request).hex()
    value = options.fingerprint(request)
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise TypeError(
            f"the idempotency fingerprint callable {options.fingerprint!r} must return str or bytes"
        )
    return hashlib.sha256(value).hexdigest()


def request_id_of(request: Request, options: Options) -> str:
    """A well-formed incoming id is kept (it ties our records to the caller's logs)."""
    if options.request_id_header:
        incoming = request.headers.get(options.request_id_header, "")
        if _REQUEST_ID.fullmatch(incoming):
            return incoming
    return uuid.uuid4().hex
