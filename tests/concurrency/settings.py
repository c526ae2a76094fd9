"""Settings for the gunicorn servers that the concurrency tests start.

They share the test database that pytest-django created (its name comes in
IDEMPOTENCY_SERVER_DB_NAME) and switch modes by environment variables.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, REDIS_URL

DATABASES["default"]["NAME"] = os.environ["IDEMPOTENCY_SERVER_DB_NAME"]
DATABASES["default"]["ATOMIC_REQUESTS"] = os.environ.get("SERVER_ATOMIC_REQUESTS") == "1"
if os.environ.get("SERVER_CONN_MAX_AGE"):
    DATABASES["default"]["CONN_MAX_AGE"] = None
ROOT_URLCONF = "tests.concurrency.urls"

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "redis": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("SERVER_REDIS_URL", REDIS_URL),
        "KEY_PREFIX": os.environ.get("SERVER_REDIS_PREFIX", "tests"),
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    },
}
IDEMPOTENCY = {"LOCK": os.environ.get("SERVER_LOCK", "database"), "CACHE_ALIAS": "redis"}
