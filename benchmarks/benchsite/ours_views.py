"""The endpoint behind django-idempotency. Kept apart from views.py because
peer processes run without the app (drf-idempotency reads a setting of the
same name), and importing the decorator loads the app's models."""

from typing import Any

from rest_framework.response import Response
from rest_framework.views import APIView

from django_idempotency import idempotent

from .views import create_order


class OursOrders(APIView):
    @idempotent
    def post(self, request: Any) -> Response:
        return create_order(request)


class OursAtomicOrders(APIView):
    @idempotent(atomic=True)
    def post(self, request: Any) -> Response:
        return create_order(request)
