"""adrf async views under @idempotent and IdempotencyMixin (tests/test_async_views.py)."""

import asyncio
from typing import Any, cast

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


async def _create(request: Request, reference: str = "async") -> Response:
    data = cast(dict[str, Any], request.data)  # a JSON object in these tests
    if data.get("fail"):
        raise Boom("the view failed")
    payment = await Payment.objects.acreate(amount=int(data["amount"]), reference=reference)
    delay = float(request.query_params.get("sleep", 0))
    if delay:
        await asyncio.sleep(delay)
    if data.get("fail_after_write"):
        raise Boom("the view failed after writing")
    return Response({"id": payment.pk, "amount": payment.amount}, status=201)


@api_view(["POST"])  # type: ignore[untyped-decorator]  # adrf has no type hints
@idempotent
async def function_view(request: Request) -> Response:
    return await _create(request)


@api_view(["POST"])  # type: ignore[untyped-decorator]  # adrf has no type hints
@idempotent(atomic=True)
async def atomic_view(request: Request) -> Response:
    return await _create(request)


class PaymentAPIView(IdempotencyMixin, APIView):  # type: ignore[misc]  # adrf: no hints
    async def post(self, request: Request) -> Response:
        return await _create(request, reference="mixin")


class CardViewSet(IdempotencyMixin, ViewSet):  # type: ignore[misc]  # adrf: no hints
    async def acreate(self, request: Request) -> Response:  # adrf routes POST on a list to acreate
        return await _create(request, reference="viewset")

    # drf-stubs type action() for sync methods only.
    @action(detail=True, methods=["post"])  # type: ignore[type-var]
    async def block(self, request: Request, pk: str | None = None) -> Response:
        return await _create(request, reference=f"block-{pk}")
