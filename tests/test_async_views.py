"""Async handlers are not protected yet: refused when the view is defined,
never accepted and broken at request time (a 500 and a locked key)."""

import pytest
from rest_framework.decorators import action, api_view
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from django_idempotency import IdempotencyMixin, idempotent


def test_a_plain_django_async_view_is_refused_by_the_decorator():
    with pytest.raises(TypeError, match="async view"):

        @idempotent
        async def pay(request):  # pragma: no cover - never called
            return None


def test_an_async_function_under_api_view_is_refused():
    with pytest.raises(TypeError, match="async view"):

        @api_view(["POST"])
        @idempotent(required=True)
        async def pay(request):  # pragma: no cover
            return None


def test_an_async_handler_method_is_refused_by_the_decorator():
    with pytest.raises(TypeError, match="async view"):

        class Pay(APIView):
            @idempotent
            async def post(self, request):  # pragma: no cover
                return None


def test_the_mixin_refuses_a_class_with_an_async_handler():
    with pytest.raises(TypeError, match=r"AsyncPay\.post is an async view"):

        class AsyncPay(IdempotencyMixin, APIView):
            async def post(self, request):  # pragma: no cover
                return None


def test_the_mixin_refuses_an_async_action():
    with pytest.raises(TypeError, match=r"Cards\.block is an async view"):

        class Cards(IdempotencyMixin, ViewSet):
            @action(detail=True, methods=["post"])
            async def block(self, request, pk=None):  # pragma: no cover
                return None
