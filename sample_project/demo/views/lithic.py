"""Lithic (card issuing): https://docs.lithic.com/docs/idempotent-requests

- ``Idempotency-Key`` on POST only (PATCH is declarative and ignores it);
- any key of at most 255 characters; remembered 24 hours, per account;
- a retry gets the original status and response, even a 500;
- the key with other parameters is an error.

Lithic's client libraries generate a key for each call and retry on their
own; the server side is the same.
"""

from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import QuerySet
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent

from .. import simulate
from ..auth import AUTHENTICATION, PERMISSIONS
from ..models import Card
from ..serializers import CardSerializer

OPTIONS: dict[str, Any] = {
    "methods": ["POST"],
    # Lithic stores "whether the request was successful or not ... even if
    # those results are 500 errors".
    "store_server_errors": True,
}


class CardViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet[Card],
):
    """Cards, with ``@idempotent`` on the handlers that create something."""

    authentication_classes = AUTHENTICATION
    permission_classes = PERMISSIONS
    serializer_class = CardSerializer

    def get_queryset(self) -> QuerySet[Card]:
        return Card.objects.filter(
            owner=cast(User, self.request.user)
        )  # the views require a signed-in user

    @idempotent(**OPTIONS)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        failed = simulate.failure(request)
        if failed is not None:
            return failed
        simulate.pause(request)
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: Any) -> None:
        serializer.save(owner=cast(User, self.request.user))  # the views require a signed-in user

    # @action above @idempotent: DRF routes to the method, and the key is
    # checked after DRF's authentication and permissions.
    @action(detail=True, methods=["post"])
    @idempotent(**OPTIONS)
    def renew(self, request: Request, pk: str | None = None) -> Response:
        card = self.get_object()
        card.renewals += 1
        card.last_four = Card._meta.get_field("last_four").get_default()
        card.save(update_fields=["renewals", "last_four"])
        return Response(CardSerializer(card).data)
