"""Authentication of every sample endpoint, set on the views themselves so that
the views behave the same under any project's REST_FRAMEWORK defaults (the
test suite's included)."""

from typing import Any

from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request

#: The token is the account's API key: scoping by account is real.
AUTHENTICATION = [TokenAuthentication]
PERMISSIONS = [IsAuthenticated]


class CsrfCheckedSessionAuthentication(SessionAuthentication):
    """Session authentication that checks the CSRF token of guests too.

    DRF's ``SessionAuthentication`` checks it only for a signed-in user and
    lets anonymous requests through unchecked. A guest checkout writes on
    behalf of the session cookie the browser sends on its own, so another
    site must not be able to post to it either.
    """

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        signed_in = super().authenticate(request)  # checks CSRF for a user
        if signed_in is None:
            self.enforce_csrf(request)
        return signed_in
