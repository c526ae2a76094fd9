from typing import Any

from django.contrib.auth import get_user_model
from rest_framework.authentication import BaseAuthentication

_users: dict[str, Any] = {}


class HeaderUserAuthentication(BaseAuthentication):
    """Token-style authentication that costs no query once warm.

    Real APIs authenticate with a token looked up per request (or verified
    without a query, as JWTs are); this stand-in keeps the users in memory so
    that every figure measures the idempotency layer, not the auth lookup.
    Like any token scheme, it is invisible to Django middleware.
    """

    def authenticate(self, request: Any) -> tuple[Any, None] | None:
        name = request.META.get("HTTP_X_USER")
        if not name:
            return None
        user = _users.get(name)
        if user is None:
            user = _users[name] = get_user_model().objects.get(username=name)
        return user, None

    def authenticate_header(self, request: Any) -> str:
        return "X-User"
