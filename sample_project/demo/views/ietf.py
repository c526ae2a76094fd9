"""The app's defaults: the behaviour of the IETF draft "The Idempotency-Key HTTP
Header Field", as Stripe does it.

- ``Idempotency-Key`` on POST and PATCH, optional; 1-255 visible ASCII characters;
- remembered 24 hours, per user;
- a retry gets the original status and body, with ``Idempotent-Replayed: true``;
- the key with another body is 422, a duplicate while the first runs is 409.
"""

from typing import cast

from django.contrib.auth.models import User
from django.db.models import QuerySet
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from django_idempotency import IdempotencyMixin
from django_idempotency.option_types import IdempotencyOptions

from .. import simulate
from ..auth import AUTHENTICATION, PERMISSIONS
from ..models import Payment
from ..serializers import PaymentSerializer, RefundSerializer

OPTIONS: IdempotencyOptions = {}


class PaymentViewSet(IdempotencyMixin, viewsets.ModelViewSet[Payment]):
    """Payments. The mixin protects every handler, the ``refund`` action included."""

    idempotency_options = OPTIONS
    authentication_classes = AUTHENTICATION
    permission_classes = PERMISSIONS
    serializer_class = PaymentSerializer

    def get_queryset(self) -> QuerySet[Payment]:
        return Payment.objects.filter(
            owner=cast(User, self.request.user)
        )  # the views require a signed-in user

    def perform_create(self, serializer: BaseSerializer[Payment]) -> None:
        simulate.pause(self.request)
        serializer.save(owner=cast(User, self.request.user))  # the views require a signed-in user

    @action(detail=True, methods=["post"])
    def refund(self, request: Request, pk: str | None = None) -> Response:
        payment = self.get_object()
        serializer = RefundSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        amount = serializer.validated_data.get("amount", payment.amount - payment.refunded_amount)
        if amount > payment.amount - payment.refunded_amount:
            return Response(
                {"amount": ["More than what is left to refund."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        # Refunding twice is exactly what the key prevents: a replay answers
        # with this response instead of running this line again.
        payment.refunded_amount += amount
        payment.status = Payment.Status.REFUNDED
        payment.save(update_fields=["refunded_amount", "status"])
        return Response(PaymentSerializer(payment).data)
