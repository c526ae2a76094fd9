"""An API-key scheme without users, as API gateways and service clients use:
``request.auth`` is the key, ``request.user`` stays anonymous, and the default
scope is the key's hash. The test clients present one key unless a test is
about anonymous requests."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, str] | None:
        key = request.headers.get("X-Api-Key")
        return (AnonymousUser(), key) if key else None
