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


def async_refusal(name: str) -> str | None:
    """Why an async handler cannot be protected here, or None if it can."""
    try:
        import adrf  # noqa: F401
    except ImportError:
        return (
            f"{name} is an async handler: protecting async DRF views needs adrf. "
            'Install django-idempotency[async] (pip install "django-idempotency[async]") '
            "and write the view with adrf's @api_view, APIView or ViewSet."
        )
    return None


def _async_wrapper(handler: Callable[..., Any], view_options: engine.ViewOptions) -> Any:
    from .async_driver import handle_async

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request, call_args, call = _split(handler, args, is_async=True)
        view = _drf_view(handler, request)
        return await handle_async(view, request, call, call_args, kwargs, view_options.get())

    return wrapper


def _split(handler: Callable[..., Any], args: tuple[Any, ...], *, is_async: bool = False) -> Any:
    """(request, the handler's other arguments, a call taking the request first).

    Function views get (request, ...); methods get (self, request, ...).
    """
    if args and isinstance(args[0], Request):
        return args[0], args[1:], handler
    if len(args) > 1 and isinstance(args[1], Request):
        bound_self = args[0]
        if is_async:

            async def call_async(request: Request, *a: Any, **kw: Any) -> Any:
                return await handler(bound_self, request, *a, **kw)

            return args[1], args[2:], call_async

        def call(request: Request, *a: Any, **kw: Any) -> Any:
            return handler(bound_self, request, *a, **kw)

        return args[1], args[2:], call
    # Check E006 reports this at startup; here it is a configuration error,
    # not a bug in the request.
    raise ImproperlyConfigured(
        f"@idempotent on {handler.__qualname__}, which was called without a DRF "
        "Request: it works on Django REST Framework views only (put @api_view above "
        "it, or use an APIView/ViewSet)."
    )


def _drf_view(handler: Callable[..., Any], request: Request) -> APIView:
    view = request.parser_context.get("view")
    if not isinstance(view, APIView):
        raise ImproperlyConfigured(f"@idempotent on {handler.__qualname__}: not a DRF view")
    return view


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
            refusal = async_refusal(getattr(handler, "__qualname__", repr(handler)))
            if refusal:
                raise TypeError(refusal)
            async_wrapper = _async_wrapper(handler, view_options)
            setattr(async_wrapper, MARKER, view_options)
            return async_wrapper  # type: ignore[no-any-return]

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request, call_args, call = _split(handler, args)
            view = _drf_view(handler, request)
            return engine.handle(view, request, call, call_args, kwargs, view_options.get())

        setattr(wrapper, MARKER, view_options)
        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate
