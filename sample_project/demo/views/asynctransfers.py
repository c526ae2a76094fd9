"""Async transfers: the ORZCash transfer as an adrf async view, for ASGI
servers (``make demo-asgi`` serves the project under uvicorn).

The same contract as every other group; the view's database work goes through
Django's async ORM, and the app's own queries run in Django's thread-sensitive
executor, so the event loop never waits on them (docs/recipes/async.md).
"""

from typing import Any, cast

from adrf.decorators import api_view
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from rest_framework.decorators import authentication_classes, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent

from ..auth import AUTHENTICATION, PERMISSIONS
from ..models import Transfer
from ..serializers import TransferSerializer
from .orzcash import UUID_PATTERN

OPTIONS: dict[str, Any] = {"required": True, "methods": ["POST"], "key_pattern": UUID_PATTERN}


# adrf has no type hints; its api_view runs async views (DRF's stubs know sync ones only).
@api_view(["POST"])  # type: ignore[untyped-decorator,type-var]
@authentication_classes(AUTHENTICATION)
@permission_classes(PERMISSIONS)
@idempotent(**OPTIONS)
async def transfers(request: Request) -> Response:
    """POST creates a transfer, in an async view."""
    serializer = TransferSerializer(data=request.data)
    await sync_to_async(serializer.is_valid)(raise_exception=True)
    owner = cast(User, request.user)  # signed in (PERMISSIONS)
    transfer = await Transfer.objects.acreate(owner=owner, **serializer.validated_data)
    return Response(TransferSerializer(transfer).data, status=201)
