"""Authentication of every sample endpoint, set on the views themselves so that
the views behave the same under any project's REST_FRAMEWORK defaults (the
test suite's included)."""

from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import IsAuthenticated

#: The token is the account's API key: scoping by account is real.
AUTHENTICATION = [TokenAuthentication]
PERMISSIONS = [IsAuthenticated]
