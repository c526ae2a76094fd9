"""Stannp (printed letters): https://www.stannp.com/uk/direct-mail-api/idempotency-keys

- optional ``X-Idempotency-Key`` of 10-1024 characters, on POST only (a key on
  GET has no effect);
- remembered 24 hours, per account;
- a retry gets the original body with status **409**;
- only identical bodies match: the key with another body is not a retry but a
  new letter.
"""

from typing import Any, cast

from django.contrib.auth.models import User
from rest_framework import status
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent

from .. import simulate
from ..auth import AUTHENTICATION, PERMISSIONS
from ..models import Letter
from ..serializers import LetterSerializer

OPTIONS: dict[str, Any] = {
    "header": "X-Idempotency-Key",
    "methods": ["POST"],
    "key_min_length": 10,
    "key_max_length": 1024,
    "replay_status": 409,
    # The request's fingerprint is part of the scope: another body, another key space.
    "scope": "sample_project.demo.scopes.account_and_request_scope",
}


@api_view(["GET", "POST"])
@authentication_classes(AUTHENTICATION)
@permission_classes(PERMISSIONS)
@idempotent(**OPTIONS)
def letters(request: Request) -> Response:
    """GET lists your letters; POST creates one (form fields or JSON)."""
    if request.method == "GET":
        owned = Letter.objects.filter(owner=cast(User, request.user))  # signed in (PERMISSIONS)
        return Response({"success": True, "data": LetterSerializer(owned, many=True).data})
    serializer = LetterSerializer(data=request.data)
    if not serializer.is_valid():
        return Response({"success": False, "error": serializer.errors}, status=400)
    simulate.pause(request)
    letter = serializer.save(owner=request.user)
    return Response(
        {"success": True, "data": LetterSerializer(letter).data}, status=status.HTTP_200_OK
    )
