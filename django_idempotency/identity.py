"""What identifies an operation: its scope, endpoint, lookup hash, fingerprint
and request id. Request bodies are hashed here and never stored."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.core.files.uploadedfile import UploadedFile
from django.http.request import HttpRequest, RawPostDataException
from rest_framework.request import Request

from .exceptions import AnonymousKey
from .options import Options

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")


def user_scope(pk: Any) -> str:
    """The default scope of the user whose primary key is ``pk`` (erasure
    finds a user's records by it)."""
    return f"user:{pk}"


def default_scope(request: Request) -> str:
    """The authenticated user (as resolved by DRF); else the credential itself
    (API-key and client-credential schemes authenticate without a user).

    A request with neither is refused (:class:`AnonymousKey`): anonymous
    clients cannot be told apart, and one shared key space would hand one
    client's stored response to another and let anyone squat keys."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user_scope(user.pk)
    auth = getattr(request, "auth", None)
    if auth is None:
        raise AnonymousKey()
    pk = getattr(auth, "pk", None)
    if pk is not None:
        return f"auth:{type(auth).__name__}:{pk}"
    if isinstance(auth, str | bytes):
        raw = auth.encode() if isinstance(auth, str) else auth
        return f"auth:{hashlib.sha256(raw).hexdigest()}"
    # Guessing here could put two clients in one key space: fail closed.
    raise ImproperlyConfigured(
        f"django_idempotency cannot tell whose key this is: request.user is anonymous and "
        f"request.auth is a {type(auth).__name__}. Set the 'scope' option to a callable "
        "that returns the client's identity."
    )


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


def _parsed_digest(request: Request) -> bytes:
    """Hash what DRF parsed: fields canonically, uploaded files by content.

    Used where the raw bytes are no proof of sameness (multipart: every send
    has a new random boundary), cannot be read any more (the stream was
    consumed before the view, e.g. by a CSRF check or a permission reading
    ``request.data``), or must not be buffered (larger than
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``; DRF streams those to files).
    """
    digest = hashlib.sha256()
    data = request.data
    fields: Any = sorted(data.lists()) if hasattr(data, "lists") else data
    digest.update(json.dumps(fields, sort_keys=True, default=_file_label).encode())
    uploads = request.FILES  # a MultiValueDict, or a dict from FileUploadParser
    lists = uploads.lists() if hasattr(uploads, "lists") else ((k, [v]) for k, v in uploads.items())
    for name, files in sorted(lists):
        for upload in files:
            # The part's media type too: the same bytes as text/csv and as
            # image/png are two requests to a view that stores either.
            digest.update(repr((name, upload.name, upload.size, upload.content_type)).encode())
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
    return digest.digest()


def _file_label(value: Any) -> str:
    if isinstance(value, UploadedFile):
        return f"file:{value.name}:{value.size}"  # contents are hashed separately
    return str(value)


def _body_digest(request: Request) -> bytes:
    django_request = request._request
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    length = int(django_request.META.get("CONTENT_LENGTH") or 0)
    if limit is not None and length > limit:
        unread = not django_request._read_started  # type: ignore[attr-defined]
        digest = _parsed_digest(request)
        if unread and not hasattr(django_request, "_body"):
            _refuse_body_as_too_big(django_request)
        return digest
    if (django_request.content_type or "").startswith("multipart/"):
        if length and not django_request._read_started:  # type: ignore[attr-defined]
            # Parsing the form would use up the stream, and a view that then
            # reads request.body (a webhook's signature check) would get a 500.
            # Buffered first, both the parser and the view read the copy. Only
            # with a Content-Length under the limit: a body of unknown length
            # could be any size, and the parser streams files to disk.
            django_request.body  # noqa: B018
        return _parsed_digest(request)
    try:
        return hashlib.sha256(django_request.body).digest()
    except RawPostDataException:
        return _parsed_digest(request)


#: Per request class, its subclass whose ``body`` is refused as too big.
_TOO_BIG_FOR_BODY: dict[type[HttpRequest], type[HttpRequest]] = {}


def _too_big(request: HttpRequest) -> bytes:
    raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")


def _refuse_body_as_too_big(django_request: HttpRequest) -> None:
    """Without the app, ``request.body`` on a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE raises RequestDataTooBig (a 400). The parts
    were streamed here to be fingerprinted, after which Django would raise
    RawPostDataException (a 500) instead: keep Django's answer."""
    base = type(django_request)
    refusing = _TOO_BIG_FOR_BODY.get(base)
    if refusing is None:
        refusing = _TOO_BIG_FOR_BODY[base] = type(
            base.__name__, (base,), {"body": property(_too_big), "__module__": base.__module__}
        )
    django_request.__class__ = refusing


def _content_type(request: Request) -> bytes:
    """The media type and its parameters, without multipart's boundary (new
    on every send): the same bytes as JSON and as a form are two requests."""
    django_request = request._request
    media = (django_request.content_type or "").lower()
    params = sorted(
        f"{name.lower()}={value.lower()}"
        for name, value in (django_request.content_params or {}).items()
        if name.lower() != "boundary"
    )
    return ";".join([media, *params]).encode("latin-1", "replace")


def default_fingerprint(request: Request) -> bytes:
    """An unkeyed digest of what must be identical for a retry: method, path,
    query string, content type, the representation asked for (``Accept``) and
    the body. Never stored as it is: see ``keyed_fingerprints``."""
    django_request = request._request
    digest = hashlib.sha256()
    accept = " ".join(django_request.META.get("HTTP_ACCEPT", "").lower().split())
    for part in (
        (request.method or "").encode(),
        django_request.path.encode(),
        django_request.META.get("QUERY_STRING", "").encode("latin-1"),
        _content_type(request),
        accept.encode("latin-1", "replace"),
        _body_digest(request),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


_KEY_SALT = b"django_idempotency.fingerprint"
_derived: tuple[tuple[Any, ...], tuple[bytes, ...]] | None = None


def _fingerprint_keys() -> tuple[bytes, ...]:
    """HMAC keys from ``SECRET_KEY`` then each of ``SECRET_KEY_FALLBACKS``,
    derived once per value of the two settings."""
    global _derived
    secrets_ = (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ()))
    if _derived is None or _derived[0] != secrets_:
        keys = tuple(
            hashlib.sha256(_KEY_SALT + (s.encode() if isinstance(s, str) else s)).digest()
            for s in secrets_
        )
        _derived = (secrets_, keys)
    return _derived[1]


def keyed_fingerprints(material: bytes) -> tuple[str, ...]:
    """The stored form of a fingerprint: an HMAC, so a short body cannot be
    recovered from a row by brute force. The first is written; all are
    accepted, so rotating ``SECRET_KEY`` (old one in ``SECRET_KEY_FALLBACKS``)
    keeps live keys replaying."""
    return tuple(hmac.new(key, material, hashlib.sha256).hexdigest() for key in _fingerprint_keys())


def request_digest(request: Request) -> str:
    """The request's keyed fingerprint under the current ``SECRET_KEY``, for
    scope callables that make "another body" mean "another operation"."""
    return keyed_fingerprints(default_fingerprint(request))[0]


def fingerprints_of(request: Request, endpoint: str, options: Options) -> tuple[str, ...]:
    if options.fingerprint is None:
        return keyed_fingerprints(default_fingerprint(request))
    value = options.fingerprint(request)
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise TypeError(
            f"the idempotency fingerprint callable {options.fingerprint!r} must return str or bytes"
        )
    # The endpoint stays part of it: with per_endpoint=False the same key on
    # another endpoint must be a reuse, never a replay of the other's answer.
    digest = hashlib.sha256(endpoint.encode())
    digest.update(b"\0")
    digest.update(value)
    return keyed_fingerprints(digest.digest())


def request_id_of(request: Request, options: Options) -> str:
    """A well-formed incoming id is kept (it ties our records to the caller's logs)."""
    if options.request_id_header:
        incoming = request.headers.get(options.request_id_header, "")
        if _REQUEST_ID.fullmatch(incoming):
            return incoming
    return uuid.uuid4().hex
