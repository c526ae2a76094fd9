"""httpx transports that key unsafe requests and retry them with the same key."""

from __future__ import annotations

from typing import Any

import httpx

from .policy import Attempts, RetryPolicy

try:  # httpx re-renders a multipart body from the start, seeking its files back.
    from httpx._multipart import MultipartStream

    _REPEATABLE_STREAMS: tuple[type, ...] = (httpx.ByteStream, MultipartStream)
except ImportError:  # pragma: no cover - a future httpx that moved it
    _REPEATABLE_STREAMS = (httpx.ByteStream,)

# Failures after which the request may or may not have reached the server, or
# did not get there at all: exactly what the key makes safe to repeat. An
# UnsupportedProtocol or LocalProtocolError would fail the same way again.
RETRIED_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

EXTENSION = "idempotency"


def _repeatable(stream: object) -> bool:
    """Can this body be sent again, whole? A multipart body is re-rendered
    from its files, which httpx seeks back to the start: a file that cannot
    seek (a pipe, a socket, a generator's reader) would send nothing."""
    if not isinstance(stream, _REPEATABLE_STREAMS):
        return False
    for field in getattr(stream, "fields", ()):
        file = getattr(field, "file", None)
        if file is None or isinstance(file, (str, bytes)):
            continue
        seekable = getattr(file, "seekable", None)
        if seekable is None or not seekable():
            return False
    return True


def _start(policy: RetryPolicy, request: httpx.Request) -> Attempts:
    attempts = policy.start(request.method, policy.header in request.headers)
    if attempts.key_needed:
        request.headers[policy.header] = attempts.new_key()
    attempts.report.key = request.headers.get(policy.header)
    if not _repeatable(request.stream):
        # A generator or a file handed over as content: the first attempt
        # consumes it, and a retry would send a truncated body under the same key.
        attempts.refuse("the request body is a stream that cannot be sent twice")
    return attempts


def _buffered(response: httpx.Response, raw: bytes) -> httpx.Response:
    # Raw bytes, still encoded as the server sent them: the client decodes them.
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=httpx.ByteStream(raw),
        extensions=response.extensions,
    )


def _transport_options(transport: Any, options: dict[str, Any], default: type[Any]) -> Any:
    if transport is not None and options:
        raise TypeError("pass either a transport or options for the default transport")
    return transport if transport is not None else default(**options)


class IdempotentTransport(httpx.BaseTransport):
    """Wraps ``httpx.HTTPTransport`` (or ``transport``): ``httpx.Client(transport=...)``.

    The responses of keyed requests are read inside the transport, so that a
    connection lost in the middle of the body is retried too.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        policy: RetryPolicy | None = None,
        **options: Any,
    ) -> None:
        self.transport: httpx.BaseTransport = _transport_options(
            transport, options, httpx.HTTPTransport
        )
        self.policy = policy if policy is not None else RetryPolicy()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempts = _start(self.policy, request)
        while True:
            attempts.begin()
            try:
                response = self.transport.handle_request(request)
                if attempts.report.key is not None:
                    response = _buffered(response, b"".join(response.iter_raw()))
            except RETRIED_ERRORS as error:
                delay = attempts.after_error(error)
                if delay is None:
                    raise
                self.policy.sleep(delay)
                continue
            body = response.read() if attempts.wants_body(response.status_code) else b""
            delay = attempts.after_response(
                response.status_code, response.headers.get("Retry-After"), body
            )
            if delay is None:
                response.extensions[EXTENSION] = attempts.report
                return response
            response.close()
            self.policy.sleep(delay)

    def close(self) -> None:
        self.transport.close()


class AsyncIdempotentTransport(httpx.AsyncBaseTransport):
    """Wraps ``httpx.AsyncHTTPTransport`` (or ``transport``).

    Use it as ``httpx.AsyncClient(transport=AsyncIdempotentTransport(...))``.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        policy: RetryPolicy | None = None,
        **options: Any,
    ) -> None:
        self.transport: httpx.AsyncBaseTransport = _transport_options(
            transport, options, httpx.AsyncHTTPTransport
        )
        self.policy = policy if policy is not None else RetryPolicy()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempts = _start(self.policy, request)
        while True:
            attempts.begin()
            try:
                response = await self.transport.handle_async_request(request)
                if attempts.report.key is not None:
                    raw = b"".join([chunk async for chunk in response.aiter_raw()])
                    response = _buffered(response, raw)
            except RETRIED_ERRORS as error:
                delay = attempts.after_error(error)
                if delay is None:
                    raise
                await self.policy.async_sleep(delay)
                continue
            body = await response.aread() if attempts.wants_body(response.status_code) else b""
            delay = attempts.after_response(
                response.status_code, response.headers.get("Retry-After"), body
            )
            if delay is None:
                response.extensions[EXTENSION] = attempts.report
                return response
            await response.aclose()
            await self.policy.async_sleep(delay)

    async def aclose(self) -> None:
        await self.transport.aclose()
