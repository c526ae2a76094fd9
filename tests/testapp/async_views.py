"""adrf async views under @idempotent and IdempotencyMixin (tests/test_async_views.py)."""

import asyncio

from adrf.decorators import api_view
from adrf.views import APIView
from adrf.viewsets import ViewSet
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import IdempotencyMixin, idempotent
from tests.testapp.models import Payment


class Boom(Exception):
    pass


async def _create(request: Request, reference="async") -> Response:
    if request.data.get("fail"):
        raise Boom("the view failed")
    payment = await Payment.objects.acreate(amount=int(request.data["amount"]), reference=reference)
    delay = float(request.query_params.get("sleep", 0))
    if delay:
        await asyncio.sleep(delay)
    if request.data.get("fail_after_write"):
        raise Boom("the view failed after writing")
    return Response({"id": payment.pk, "amount": payment.amount}, status=201)


@api_view(["POST"])
@idempotent
async def function_view(request: Request):
    return await _create(request)


@api_view(["POST"])
@idempotent(atomic=True)
async def atomic_view(request: Request):
    return await _create(request)


class PaymentAPIView(IdempotencyMixin, APIView):
    async def post(self, request: Request):
        return await _create(request, reference="mixin")


class CardViewSet(IdempotencyMixin, ViewSet):
    async def acreate(self, request: Request):  # adrf routes POST on a list to acreate
        return await _create(request, reference="viewset")

    @action(detail=True, methods=["post"])
    async def block(self, request: Request, pk=None):
        return await _create(request, reference=f"block-{pk}")
