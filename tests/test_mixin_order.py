"""The mixin placed after the DRF view class would never run: refused at class creation."""

from typing import Any

import pytest
from rest_framework import generics
from rest_framework.views import APIView

from django_idempotency.mixins import IdempotencyMixin


def test_mixin_after_the_drf_class_is_refused_when_the_class_is_created() -> None:
    with pytest.raises(TypeError, match=r"(?s)IdempotencyMixin must come before.*CreateAPIView"):

        class WrongOrder(generics.CreateAPIView[Any], IdempotencyMixin):
            idempotency_options = {"required": True}


def test_mixin_before_the_drf_class_is_accepted_and_inherits() -> None:
    class RightOrder(IdempotencyMixin, APIView):
        pass

    class Child(RightOrder):
        pass

    assert issubclass(Child, IdempotencyMixin)
