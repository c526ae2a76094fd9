"""A requests adapter that keys unsafe requests and retries them with the same key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import ChunkedEncodingError, SSLError, Timeout
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.utils import rewind_body

from .policy import Attempts, RetryPolicy

# ConnectTimeout and ReadTimeout are both Timeouts; a lost connection while the
# body is read is a ChunkedEncodingError. An SSLError (a certificate refused)
# would fail the same way again.
RETRIED_ERRORS = (RequestsConnectionError, Timeout, ChunkedEncodingError)


class IdempotentAdapter(HTTPAdapter):
    """``session.mount("https://", IdempotentAdapter(policy=...))``.

    Unless the caller asked for ``stream=True``, the body is read inside the
    adapter, so that a connection lost in the middle of it is retried too.
    After the last attempt the response has ``response.idempotency``, a
    :class:`~django_idempotency.client.RetryReport`.
    """

    def __init__(self, policy: RetryPolicy | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.policy = policy if policy is not None else RetryPolicy()

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        policy = self.policy
        attempts = policy.start(request.method or "GET", policy.header in request.headers)
        if attempts.key_needed:
            request.headers[policy.header] = attempts.new_key()
        attempts.report.key = request.headers.get(policy.header)
        rewind = self._rewind(request, attempts)
        while True:
            if rewind and attempts.report.attempts:
                rewind_body(request)
            attempts.begin()
            try:
                response = super().send(request, stream, timeout, verify, cert, proxies)
                if not stream or attempts.wants_body(response.status_code):
                    response.content  # noqa: B018 - read here, where a failure is retried
            except SSLError:
                raise
            except RETRIED_ERRORS as error:
                delay = attempts.after_error(error)
                if delay is None:
                    raise
                policy.sleep(delay)
                continue
            delay = attempts.after_response(
                response.status_code,
                response.headers.get("Retry-After"),
                response.content if attempts.wants_body(response.status_code) else b"",
            )
            if delay is None:
                response.idempotency = attempts.report  # type: ignore[attr-defined]
                return response
            response.close()
            policy.sleep(delay)

    @staticmethod
    def _rewind(request: requests.PreparedRequest, attempts: Attempts) -> bool:
        """Whether the body is a file to seek back before a retry."""
        body: Any = request.body  # the stubs say bytes | str, but a file or generator passes too
        if body is None or isinstance(body, bytes | str):
            return False
        if hasattr(body, "seek") and isinstance(getattr(request, "_body_position", None), int):
            return True
        # A generator, or a file whose position requests could not record: the
        # first attempt consumes it and a retry would send a truncated body.
        attempts.refuse("the request body is a stream that cannot be sent twice")
        return False
