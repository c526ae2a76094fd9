"""ORZCash (payments and digital custody): https://sh8tl2g9yw.apifox.cn/doc-1898700

- ``Idempotency-Key`` on every POST (required), a UUID;
- remembered 24 hours, per account; a retry gets the original response;
- the key with another body is an error;
- a request that failed transiently (time-out, server error) is not stored:
  the retry carries the operation to completion.
"""

from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import QuerySet
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import IdempotencyMixin
from django_idempotency.option_types import IdempotencyOptions

from .. import simulate
from ..auth import AUTHENTICATION, PERMISSIONS
from ..models import Transfer
from ..serializers import TransferSerializer

UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

OPTIONS: IdempotencyOptions = {
    "required": True,
    "methods": ["POST"],
    "key_pattern": UUID_PATTERN,
    # The default, spelled out because ORZCash documents it: a 5xx answer is
    # not stored and the key is released, so the retry runs the transfer.
    "store_server_errors": False,
}


class TransferView(IdempotencyMixin, generics.ListCreateAPIView[Transfer]):
    """GET lists your transfers; POST creates one."""

    idempotency_options = OPTIONS
    authentication_classes = AUTHENTICATION
    permission_classes = PERMISSIONS
    serializer_class = TransferSerializer

    def get_queryset(self) -> QuerySet[Transfer]:
        return Transfer.objects.filter(
            owner=cast(User, self.request.user)
        )  # the views require a signed-in user

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        failed = simulate.failure(request)
        if failed is not None:
            return failed
        simulate.pause(request)
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: Any) -> None:
        serializer.save(owner=cast(User, self.request.user))  # the views require a signed-in user
