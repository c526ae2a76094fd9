from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, Unpack, overload

from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request
from rest_framework.views import APIView

from . import engine
from .option_types import IdempotencyOptions

F = TypeVar("F", bound=Callable[..., Any])

#: Set on wrapped handlers so the mixin does not wrap them a second time.
MARKER = "_idempotency_options"

_ORDER_HINT = """\
@idempotent must be applied below @api_view, so that it runs after DRF's
authentication, permission and throttle checks:

    @api_view(["POST"])
    @idempotent(...)
    def {name}(request): ...

On a class-based view, decorate its handler methods or use IdempotencyMixin."""


def async_refusal(name: str) -> str:
    return (
        f"{name} is an async view: django_idempotency does not protect async handlers "
        "yet (neither adrf's nor Django's async def views). Use a sync handler, or "
        "leave this view without idempotency keys."
    )


@overload
def idempotent(func: F, /) -> F: ...
@overload
def idempotent(func: None = None, /, **options: Unpack[IdempotencyOptions]) -> Callable[[F], F]: ...


def idempotent(
    func: F | None = None, /, **options: Unpack[IdempotencyOptions]
) -> F | Callable[[F], F]:
    """Make a DRF handler honour idempotency keys.

    Works on ``@api_view`` functions (placed below ``@api_view``), on APIView
    and ViewSet handler methods, and on ``@action`` methods. Keyword options
    override the ``IDEMPOTENCY`` setting for this view only.
    """
    view_options = engine.ViewOptions(options)  # raises ImproperlyConfigured now

    def decorate(handler: F) -> F:
        if isinstance(handler, type) or hasattr(handler, "cls"):
            view_class = getattr(handler, "cls", None) or handler
            name = getattr(view_class, "__name__", "view")
            raise TypeError(_ORDER_HINT.format(name=name))
        if not callable(handler):
            raise TypeError(f"@idempotent decorates a view function or method, not {handler!r}")
        if inspect.iscoroutinefunction(handler):
            raise TypeError(async_refusal(getattr(handler, "__qualname__", repr(handler))))

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # Function views get (request, ...); methods get (self, request, ...).
            if args and isinstance(args[0], Request):
                request, call_args = args[0], args[1:]

                def call(request: Request, *a: Any, **kw: Any) -> Any:
                    return handler(request, *a, **kw)

            elif len(args) > 1 and isinstance(args[1], Request):
                request, call_args = args[1], args[2:]
                bound_self = args[0]

                def call(request: Request, *a: Any, **kw: Any) -> Any:
                    return handler(bound_self, request, *a, **kw)

            else:
                # Check E006 reports this at startup; here it is a configuration
                # error, not a bug in the request.
                raise ImproperlyConfigured(
                    f"@idempotent on {handler.__qualname__}, which was called without a "
                    "DRF Request: it works on Django REST Framework views only (put "
                    "@api_view above it, or use an APIView/ViewSet)."
                )
            view = request.parser_context.get("view")
            if not isinstance(view, APIView):
                raise ImproperlyConfigured(f"@idempotent on {handler.__qualname__}: not a DRF view")
            return engine.handle(view, request, call, call_args, kwargs, view_options.get())

        setattr(wrapper, MARKER, view_options)
        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate
