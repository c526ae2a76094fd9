"""The other idempotency packages, each set up as its own README recommends
for the behaviour closest to ours, in front of the same endpoint at /peer/.

Only imported in peer processes, which run from the benchmark's virtualenv
(benchmarks/.venv-bench) and without django_idempotency in INSTALLED_APPS:
drf-idempotency reads a setting named IDEMPOTENCY too.

Each entry: ``package`` (the PyPI name), ``mode`` (how it is used),
``apps``, ``middleware`` (prepended: every README that uses middleware puts
it first or does not care), ``settings`` and ``view`` (a callable returning the
view function mounted at /peer/).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REDIS = "redis://127.0.0.1:6379"


def _drf_idempotencykey() -> Callable[..., Any]:
    from benchsite.views import create_order
    from drf_idempotencykey.mixins import DrfIdempotencyKeyMixin
    from rest_framework.views import APIView

    class Orders(DrfIdempotencyKeyMixin, APIView):  # type: ignore[misc]  # a peer: not installed here
        def post(self, request: Any) -> Any:
            return create_order(request)

    return Orders.as_view()


def _view_plain() -> Callable[..., Any]:
    """For middleware-only packages: the unprotected endpoint itself."""
    from benchsite.views import PlainOrders

    return PlainOrders.as_view()


def _rest_framework_idempotency_key() -> Callable[..., Any]:
    from benchsite.views import create_order
    from rest_framework.views import APIView
    from rest_framework_idempotency_key.decorators import simple_idempotency_key_method

    class Orders(APIView):
        @simple_idempotency_key_method  # type: ignore[untyped-decorator]  # a peer: no hints
        def post(self, request: Any) -> Any:
            return create_order(request)

    return Orders.as_view()


def _django_idempotency_key() -> Callable[..., Any]:
    from benchsite.views import PlainOrders
    from idempotency_key.decorators import idempotency_key

    # Its middleware reads the flags from the resolved view function, so the
    # decorator goes on the as_view() callable (opt-in per view, as ours).
    view: Callable[..., Any] = idempotency_key(optional=True)(PlainOrders.as_view())
    return view


PEERS: dict[str, dict[str, Any]] = {
    "drf-idempotencykey": {
        "package": "drf-idempotencykey",
        "mode": "view mixin, database",
        "apps": ["drf_idempotencykey"],
        "middleware": [],
        "settings": {},
        "view": _drf_idempotencykey,
    },
    "drf-idempotency-db": {
        "package": "drf-idempotency",
        "mode": "middleware, database backend",
        "apps": ["drf_idempotency"],
        "middleware": ["drf_idempotency.middleware.IdempotencyMiddleware"],
        "settings": {
            "IDEMPOTENCY": {"BACKEND": "drf_idempotency.backends.database.DatabaseBackend"}
        },
        "view": _view_plain,
    },
    "drf-idempotency-redis": {
        "package": "drf-idempotency",
        "mode": "middleware, Redis backend",
        "apps": ["drf_idempotency"],
        "middleware": ["drf_idempotency.middleware.IdempotencyMiddleware"],
        "settings": {
            "IDEMPOTENCY": {
                "BACKEND": "drf_idempotency.backends.redis.RedisBackend",
                "BACKEND_OPTIONS": {"url": f"{REDIS}/14"},
            }
        },
        "view": _view_plain,
    },
    "djangorestframework-idempotency-key": {
        "package": "djangorestframework-idempotency-key",
        "mode": "middleware + method decorator, database",
        "apps": ["rest_framework_idempotency_key"],
        "middleware": ["rest_framework_idempotency_key.middleware.IdempotencyKeyMiddleware"],
        "settings": {},
        "view": _rest_framework_idempotency_key,
    },
    "django-idempotency-key": {
        "package": "django-idempotency-key",
        "mode": "opt-in middleware + decorator, Redis cache and Redis lock",
        "apps": [],
        "middleware": ["idempotency_key.middleware.ExemptIdempotencyKeyMiddleware"],
        "settings": {
            "IDEMPOTENCY_KEY": {
                # None: a replay carries the original status, as ours and
                # Stripe's do (the package's default answers replays with 409).
                "CONFLICT_STATUS_CODE": None,
                "STORAGE": {
                    "CLASS": "idempotency_key.storage.CacheKeyStorage",
                    "CACHE_NAME": "peer",
                },
                # The README's multi-process choice; its default ThreadLock
                # only guards threads of one process. The README's
                # "localhost:6379" is refused by redis-py 4+: a URL it is.
                "LOCK": {
                    "CLASS": "idempotency_key.locks.redis.MultiProcessRedisLock",
                    "LOCATION": f"{REDIS}/13",
                    "NAME": "bench-idempotency-key",
                    "TTL": 60,
                },
            }
        },
        "caches": {"peer": f"{REDIS}/13"},
        "view": _django_idempotency_key,
    },
    "drf-idem": {
        "package": "drf-idem",
        "mode": "middleware, Redis",
        "apps": ["drf_idem"],
        "middleware": ["drf_idem.middleware.IdempotencyMiddleware"],
        "settings": {
            "DRF_IDEM": {
                "HEADER": "HTTP_IDEMPOTENCY_KEY",
                "TTL": 60,
                "CACHE_BACKEND": "drf_idem",
                "ENDPOINTS": ["POST /peer/"],
            }
        },
        "caches": {"drf_idem": f"{REDIS}/12"},
        "view": _view_plain,
    },
}


def configure(name: str, settings: dict[str, Any]) -> None:
    peer = PEERS[name]
    settings["INSTALLED_APPS"] = [
        app for app in settings["INSTALLED_APPS"] if app != "django_idempotency"
    ] + peer["apps"]
    settings["MIDDLEWARE"] = peer["middleware"] + settings["MIDDLEWARE"]
    settings.pop("IDEMPOTENCY", None)
    settings.update(peer["settings"])
    for alias, url in peer.get("caches", {}).items():
        settings["CACHES"][alias] = {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }


def peer_urlpatterns(name: str) -> list[Any]:
    from django.urls import path

    return [path("peer/", PEERS[name]["view"]())]
