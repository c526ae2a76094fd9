"""Settings of the benchmark site, driven by the BENCH_CONFIG environment
variable (JSON) that benchmarks/run.py hands to each worker process.

Keys: ``db`` (sqlite | postgresql | mysql, i.e. MariaDB), ``name`` (the database or SQLite file),
``lock`` (database | cache), ``peer`` (None or a name from ``peers.PEERS``),
``sync`` (on: commits wait for the disk, as in production; off: they do not,
which leaves the CPU cost of the code visible on a machine whose disk flushes
dominate and vary).
"""

import json
import os

CONFIG = json.loads(os.environ.get("BENCH_CONFIG", "{}"))
DB = CONFIG.get("db", "sqlite")
LOCK = CONFIG.get("lock", "database")
PEER = CONFIG.get("peer")
SYNC = CONFIG.get("sync", "on")

SECRET_KEY = "benchmark-only"
# DEBUG would record every query and change what we measure.
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "benchsite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "rest_framework",
    "django_idempotency",
    "benchsite",
]

# Django's defaults for an API: sessions and auth are lazy and cost no query
# unless a cookie comes in; CSRF does not apply to token-style auth.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

if DB == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "NAME": CONFIG.get("name", "bench_idempotency"),
            # Persistent connections, as behind any production pool: opening a
            # connection per request would dwarf everything measured here.
            "CONN_MAX_AGE": None,
            "OPTIONS": {
                **({} if SYNC == "on" else {"options": "-c synchronous_commit=off"}),
                # What-if only: psycopg binds the parameters server-side (it
                # prepares nothing: Django sets prepare_threshold to None).
                **({"server_side_binding": True} if CONFIG.get("server_binding") else {}),
            },
        }
    }
elif DB == "mysql":
    # MariaDB. Durable commits only: innodb_flush_log_at_trx_commit is a
    # server-wide setting, not a session's, so run.py measures "sync on" only.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("MARIADB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MARIADB_PORT", "3306"),
            "USER": os.environ.get("MARIADB_USER", "root"),
            "PASSWORD": os.environ.get("MARIADB_PASSWORD", ""),
            "NAME": CONFIG.get("name", "bench_idempotency"),
            "CONN_MAX_AGE": None,
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": CONFIG.get("name", "/tmp/bench-idempotency.sqlite3"),
            "OPTIONS": {
                "timeout": 20,
                **({} if SYNC == "on" else {"init_command": "PRAGMA synchronous=OFF"}),
            },
            "CONN_MAX_AGE": None,
        }
    }

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "locks": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
    },
}

IDEMPOTENCY = {"LOCK": "cache", "CACHE_ALIAS": "locks"} if LOCK == "cache" else {}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["benchsite.auth.HeaderUserAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "ERROR"},
}

if PEER:
    from peers import configure

    configure(PEER, globals())
