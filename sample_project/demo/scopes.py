"""Scope callables: whose key space a key lives in (the ``scope`` option).

The app's default scope is the authenticated user; these two reproduce
reference APIs that scope differently.
"""

import hashlib

from rest_framework.request import Request

from django_idempotency.identity import default_scope, request_digest


def api_key_scope(request: Request) -> str:
    """TXCloud scopes keys to the API key, not to the account.

    With DRF token authentication the token is the API key: a rotated token
    starts a fresh key space. It is hashed because the scope is stored in the
    records table, which the admin shows, and a token is a credential.
    """
    token = getattr(request.auth, "key", None)
    if not token:
        return default_scope(request)
    return "api-key:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def account_and_request_scope(request: Request) -> str:
    """Stannp treats only identical requests as retries.

    A key sent again with another body is a new operation, not an error: the
    fingerprint (method, path, query string and body) is part of the scope, so
    a different body lands in a different key space.
    """
    # Keyed (an HMAC with SECRET_KEY): the scope is stored in clear.
    return f"{default_scope(request)}/request:{request_digest(request)}"
