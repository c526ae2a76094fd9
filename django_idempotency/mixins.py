from __future__ import annotations

import inspect
from typing import Any, ClassVar

from rest_framework.request import Request
from rest_framework.views import APIView

from . import engine
from .decorators import MARKER, async_refusal
from .option_types import IdempotencyOptions
from .options import Options


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
        if inspect.iscoroutinefunction(handler):  # adrf: its dispatch awaits ours
            from .async_driver import handle_async

            async def idempotent_async_handler(request: Request, *a: Any, **kw: Any) -> Any:
                return await handle_async(self, request, handler, a, kw, options)  # type: ignore[arg-type]

            setattr(self, method, idempotent_async_handler)
            return

        def idempotent_handler(request: Request, *a: Any, **kw: Any) -> Any:
            return engine.handle(self, request, handler, a, kw, options)  # type: ignore[arg-type]

        setattr(self, method, idempotent_handler)


def view_options(view: APIView, method: str) -> Options | None:
    """The resolved options that govern ``method`` on this view instance, or
    None where the app leaves the method alone (no ``@idempotent`` on its
    handler, no mixin, or a method outside the options' ``methods``).

    The same rule as at request time: a handler's own ``@idempotent`` wins over
    the mixin. Schema generators read it (``django_idempotency.openapi``); on a
    ViewSet the handler is the one named by ``view.action``.
    """
    name = method.lower()
    if name not in view.http_method_names:
        return None
    handler = getattr(view, getattr(view, "action", None) or name, None)
    if handler is None:
        return None
    marked = _decorator_options(handler)
    if marked is not None:
        options = marked.get()
    elif isinstance(view, IdempotencyMixin):
        options = view._idempotency_view_options.get()
    else:
        return None
    return options if name.upper() in options.methods else None


def _decorator_options(handler: Any) -> engine.ViewOptions | None:
    marked: engine.ViewOptions | None = getattr(handler, MARKER, None)
    if marked is not None:
        return marked
    # @api_view builds a class whose handlers forward to the decorated
    # function, which it keeps only in their closure.
    function = getattr(handler, "__func__", handler)
    for cell in getattr(function, "__closure__", None) or ():
        try:
            marked = getattr(cell.cell_contents, MARKER, None)
        except ValueError:  # a cell not filled yet
            continue
        if isinstance(marked, engine.ViewOptions):
            return marked
    return None


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
    """Async handlers need adrf's dispatch, which awaits them: refuse them
    when the class is defined, not at its first request."""
    names = set(getattr(cls, "http_method_names", ()))
    names.update(name for name, value in vars(cls).items() if hasattr(value, "mapping"))
    for name in sorted(names):
        handler = getattr(cls, name, None)
        if handler is None or not inspect.iscoroutinefunction(handler):
            continue
        where = f"{cls.__qualname__}.{name}"
        refusal = async_refusal(where)
        if refusal:
            raise TypeError(refusal)
        from adrf.views import APIView as AsyncAPIView

        if not issubclass(cls, AsyncAPIView):
            raise TypeError(
                f"{where} is an async handler on a view that is not adrf's: DRF's own "
                "APIView cannot await it. Use adrf's APIView, GenericAPIView or ViewSet."
            )
