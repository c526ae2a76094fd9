"""The app's errors, answered as ``application/problem+json`` (RFC 9457).

Shaped like DRF's exceptions (status, translatable detail, stable code), but
answered by the app itself rather than the project's exception handler, so
clients always get the documented problem document.
"""

from __future__ import annotations

import json

from django.http import HttpResponse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://django-idempotency.readthedocs.io/en/latest/errors/#"


class IdempotencyError(Exception):
    status_code: int = 400
    default_code: str = "idempotency_error"
    title: str | Promise = _("Idempotency error")
    default_detail: str | Promise = ""
    retry_after: int | None = None

    def __init__(self, detail: str | Promise | None = None, *, status: int | None = None) -> None:
        self.detail = detail if detail is not None else self.default_detail
        if status is not None:
            self.status_code = status
        super().__init__(str(self.detail))

    def as_response(self) -> HttpResponse:
        body = {
            "type": TYPE_BASE + self.default_code.replace("_", "-"),
            "title": str(self.title),
            "status": self.status_code,
            "detail": str(self.detail),
            "code": self.default_code,
        }
        response = HttpResponse(
            json.dumps(body).encode(), status=self.status_code, content_type=PROBLEM_CONTENT_TYPE
        )
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response


class KeyMissing(IdempotencyError):
    default_code = "idempotency_key_missing"
    title = _("Idempotency key missing")
    default_detail = _("This endpoint requires an idempotency key header.")


class KeyInvalid(IdempotencyError):
    default_code = "idempotency_key_invalid"
    title = _("Idempotency key invalid")


class AnonymousKey(IdempotencyError):
    default_code = "idempotency_key_anonymous"
    title = _("Idempotency key needs a known client")
    default_detail = _(
        "This endpoint does not accept an idempotency key from an unauthenticated "
        "client: keys from clients it cannot tell apart would share their stored "
        "responses. It was not processed. Authenticate, or send it without the key."
    )


class KeyUnknown(IdempotencyError):
    status_code = 404
    default_code = "idempotency_key_unknown"
    title = _("Idempotency key unknown")
    # One answer for every reason: telling them apart would tell a caller
    # which keys other clients use.
    default_detail = _(
        "No request with this idempotency key is recorded for you: it was never "
        "received, its record was purged, or the key belongs to another client."
    )


class RequestUnrecordable(IdempotencyError):
    default_code = "idempotency_request_unrecordable"
    title = _("Request cannot be recorded")
    default_detail = _(
        "This request carries a value that cannot be stored with its idempotency "
        "key (a NUL character in its path). It was not processed; retrying it "
        "unchanged will fail the same way."
    )


class NotMigrated(IdempotencyError):
    status_code = 500
    default_code = "idempotency_not_migrated"
    title = _("Idempotency store not installed")
    default_detail = _(
        "The request was not processed: the server's idempotency records table "
        "does not exist. This is a server misconfiguration, not a temporary outage."
    )


class RecordUnreadable(IdempotencyError):
    status_code = 500
    default_code = "idempotency_record_unreadable"
    title = _("Stored response unreadable")
    default_detail = _(
        "A request with this idempotency key was already processed, but the server "
        "cannot decrypt the response it stored. It was not processed again. This is "
        "a server misconfiguration; retrying will not help until it is fixed."
    )


class KeyReused(IdempotencyError):
    status_code = 422
    default_code = "idempotency_key_reused"
    title = _("Idempotency key reused")
    default_detail = _(
        "This idempotency key was already used for a different request. "
        "Use a new key for a new operation."
    )


class RequestInProgress(IdempotencyError):
    status_code = 409
    default_code = "idempotency_request_in_progress"
    title = _("Request in progress")
    default_detail = _("A request with this idempotency key is still being processed. Retry later.")
    retry_after = 1


class Unavailable(IdempotencyError):
    status_code = 503
    default_code = "idempotency_unavailable"
    title = _("Idempotency store unavailable")
    default_detail = _(
        "The request was not processed because its idempotency key could not be "
        "recorded. Retry later with the same key."
    )
    retry_after = 1
