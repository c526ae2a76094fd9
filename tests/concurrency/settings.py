"""Settings for the gunicorn servers that the concurrency tests start.

They share the test database that pytest-django created (its name comes in
IDEMPOTENCY_SERVER_DB_NAME) and switch modes by environment variables.
"""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, REDIS_URL

DATABASES["default"]["NAME"] = os.environ["IDEMPOTENCY_SERVER_DB_NAME"]
DATABASES["default"]["ATOMIC_REQUESTS"] = os.environ.get("SERVER_ATOMIC_REQUESTS") == "1"
if os.environ.get("SERVER_CONN_MAX_AGE"):
    DATABASES["default"]["CONN_MAX_AGE"] = None
# Through PgBouncer (tests/concurrency/test_pgbouncer.py): its port, extra OPTIONS as JSON.
if os.environ.get("SERVER_DB_PORT"):
    DATABASES["default"]["PORT"] = os.environ["SERVER_DB_PORT"]
DATABASES["default"]["OPTIONS"] = {
    **DATABASES["default"].get("OPTIONS", {}),
    **json.loads(os.environ.get("SERVER_DB_OPTIONS", "{}")),
}
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
IDEMPOTENCY: dict[str, object] = {
    "LOCK": os.environ.get("SERVER_LOCK", "database"),
    "CACHE_ALIAS": "redis",
}

# Records sharded across two databases (tests/test_sharding.py's aliases).
if os.environ.get("SERVER_SHARDED") == "1":
    for _alias, _name in json.loads(os.environ["IDEMPOTENCY_SERVER_SHARD_NAMES"]).items():
        DATABASES[_alias]["NAME"] = _name
    IDEMPOTENCY["DATABASE"] = list(json.loads(os.environ["IDEMPOTENCY_SERVER_SHARD_NAMES"]))
