from __future__ import annotations

import inspect
from typing import Any, ClassVar

from rest_framework.request import Request
from rest_framework.views import APIView

from . import engine
from .decorators import MARKER, async_refusal
from .option_types import IdempotencyOptions


class IdempotencyMixin:
    """Honour idempotency keys on every applicable method of a DRF view.

    Put it before the DRF base class::

        class TransferView(IdempotencyMixin, generics.CreateAPIView):
            idempotency_options = {"required": True}

    Handlers that carry their own ``@idempotent`` keep their own options.
    """

    idempotency_options: ClassVar[IdempotencyOptions] = {}
    _idempotency_view_options: ClassVar[engine.ViewOptions]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_base_order(cls)
        _refuse_async_handlers(cls)
        # Validated when the class is defined, like the decorator's options.
        cls._idempotency_view_options = engine.ViewOptions(cls.idempotency_options)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        # DRF looks the handler up after initial(); an instance attribute
        # (the view instance lives for one request) routes it through the engine.
        method = (request.method or "").lower()
        if method not in self.http_method_names:  # type: ignore[attr-defined]
            return
        handler = getattr(self, method, None)
        if handler is None or getattr(handler, MARKER, None) is not None:
            return
        options = self._idempotency_view_options.get()

        def idempotent_handler(request: Request, *a: Any, **kw: Any) -> Any:
            return engine.handle(self, request, handler, a, kw, options)  # type: ignore[arg-type]

        setattr(self, method, idempotent_handler)


_MIXIN_ORDER_HINT = """\
IdempotencyMixin must come before the DRF view class in the bases of {name},
or DRF's initial() runs without it and no key is ever checked:

    class {name}(IdempotencyMixin, {base}):
        ..."""


def _check_base_order(cls: type) -> None:
    """Refuse ``class V(APIView, IdempotencyMixin)`` when the class is created:
    there ``APIView.initial`` comes first in the MRO and never calls ours."""
    mro = cls.__mro__
    mixin_at = mro.index(IdempotencyMixin)
    for base in mro[:mixin_at]:
        if base is not cls and issubclass(base, APIView) and "initial" in vars(base):
            first_drf = next(b for b in cls.__bases__ if issubclass(b, APIView))
            raise TypeError(_MIXIN_ORDER_HINT.format(name=cls.__name__, base=first_drf.__name__))


def _refuse_async_handlers(cls: type) -> None:
    """Accepting an async handler would break at request time (the engine is
    sync): refuse it when the class is defined, as the decorator does."""
    names = set(getattr(cls, "http_method_names", ()))
    names.update(name for name, value in vars(cls).items() if hasattr(value, "mapping"))
    for name in sorted(names):
        handler = getattr(cls, name, None)
        if handler is not None and inspect.iscoroutinefunction(handler):
            raise TypeError(async_refusal(f"{cls.__qualname__}.{name}"))
