"""A guest checkout in the browser: the page, its session and its payments endpoint.

The visitor has no account, so keys are scoped to the Django session
(``user_or_session``) and the session is started before the first payment:
by the page itself, or by ``GET /checkout/session/`` for a page served from
another origin (see docs/recipes/cors.md). The page's script makes one key per
payment and sends it with every attempt; a double click sends two requests and
the key, not the button, makes them one payment.
"""

import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from rest_framework import serializers, status
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
)
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent
from django_idempotency.scopes import user_or_session

from ..auth import CsrfCheckedSessionAuthentication
from ..models import CheckoutPayment

OPTIONS: dict[str, Any] = {
    "scope": user_or_session,
    "required": True,
    # Tells the page until when a retry of a lost answer is still safe.
    "expiry_header": "Idempotency-Key-Expires",
    # A double click's second request waits for the first (docs/recipes/wait.md)
    # and gets its answer instead of a 409 the page would have to retry.
    "wait": 2,
}

#: How long the card network takes to authorise a payment: long enough for a
#: double click's second request to arrive while the first is still running.
AUTHORISATION_SECONDS = 0.3


class CheckoutPaymentSerializer(serializers.ModelSerializer[CheckoutPayment]):
    amount = serializers.IntegerField(min_value=1, max_value=1_000_000)
    currency = serializers.ChoiceField(choices=["EUR"], default="EUR")

    class Meta:
        model = CheckoutPayment
        fields = ["id", "amount", "currency", "created"]
        read_only_fields = ["created"]


def _start_session(request: HttpRequest) -> None:
    # Saved now, so that the cookie reaches the browser before any payment:
    # a session created by the payment itself would be lost with a dropped answer.
    request.session["checkout_started"] = True


def page(request: HttpRequest) -> HttpResponse:
    """The checkout page; ``DEMO_CHECKOUT_API`` makes it call another origin's API."""
    _start_session(request)
    api = getattr(settings, "DEMO_CHECKOUT_API", "")
    return render(request, "demo/checkout.html", {"api": api})


@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def session(request: Request) -> Response:
    """Starts the guest's session and hands a page on another origin its CSRF token."""
    _start_session(request._request)
    return Response({"csrf_token": get_token(request._request)})


@api_view(["POST"])
@authentication_classes([CsrfCheckedSessionAuthentication])
@permission_classes([AllowAny])
@idempotent(**OPTIONS)
def payments(request: Request) -> Response:
    serializer = CheckoutPaymentSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    time.sleep(AUTHORISATION_SECONDS)
    serializer.save()
    return Response(serializer.data, status=status.HTTP_201_CREATED)
