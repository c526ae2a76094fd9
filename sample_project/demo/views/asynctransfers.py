"""Async transfers: the ORZCash transfer as an adrf async view, for ASGI
servers (``make demo-asgi`` serves the project under uvicorn).

The same contract as every other group; the view's database work goes through
Django's async ORM, and the app's own queries run in Django's thread-sensitive
executor, so the event loop never waits on them (docs/recipes/async.md).
"""

from typing import Any

from adrf.decorators import api_view
from asgiref.sync import sync_to_async
from rest_framework.decorators import authentication_classes, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent

from ..auth import AUTHENTICATION, PERMISSIONS
from ..models import Transfer
from ..serializers import TransferSerializer
from .orzcash import UUID_PATTERN

OPTIONS: dict[str, Any] = {"required": True, "methods": ["POST"], "key_pattern": UUID_PATTERN}


@api_view(["POST"])
@authentication_classes(AUTHENTICATION)
@permission_classes(PERMISSIONS)
@idempotent(**OPTIONS)
async def transfers(request: Request) -> Response:
    """POST creates a transfer, in an async view."""
    serializer = TransferSerializer(data=request.data)
    await sync_to_async(serializer.is_valid)(raise_exception=True)
    transfer = await Transfer.objects.acreate(owner=request.user, **serializer.validated_data)
    return Response(TransferSerializer(transfer).data, status=201)
