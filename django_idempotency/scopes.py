"""Ready-made ``scope`` callables for views that accept anonymous clients.

The default scope refuses keys from unauthenticated requests; a browser
checkout that lets guests pay needs a key space per guest instead. Use one of
these as the ``scope`` option (or the ``SCOPE`` setting, by dotted path).
"""

from __future__ import annotations

import hashlib

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from rest_framework.request import Request

from .exceptions import AnonymousKey
from .identity import default_scope

NO_SESSION = _(
    "An idempotency key from a guest needs the guest's session, and this request "
    "has none. It was not processed. Load the page that starts the session (the "
    "checkout page) first, then send the request with its session cookie."
)


def user_or_session(request: Request) -> str:
    """The default scope for authenticated clients; the session for guests.

    Only an existing session counts: one created while answering this request
    would reach the client with the response, and a client that times out
    never sees it, so its retry would land in a new key space and run again.
    The session key is a credential, so only its hash is stored.
    """
    user = getattr(request, "user", None)
    if (user is not None and user.is_authenticated) or getattr(request, "auth", None) is not None:
        return default_scope(request)
    try:
        session = request._request.session
    except AttributeError:
        raise ImproperlyConfigured(
            "the 'user_or_session' idempotency scope needs sessions: add "
            "'django.contrib.sessions.middleware.SessionMiddleware' to MIDDLEWARE."
        ) from None
    # Loading forgets a key the session store does not know (a forged or
    # expired cookie). Authentication has usually loaded it already: no query.
    session.keys()
    session_key = session.session_key
    if not session_key:
        raise AnonymousKey(NO_SESSION)
    return f"session:{hashlib.sha256(session_key.encode()).hexdigest()}"
