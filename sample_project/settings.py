"""Settings of the sample project.

SQLite by default, so that ``make demo`` needs nothing but Python. Environment
variables switch the backing services:

- ``DEMO_DATABASE=postgresql``: PostgreSQL, addressed by the usual ``PGHOST``,
  ``PGPORT``, ``PGUSER``, ``PGPASSWORD`` and ``PGDATABASE`` (defaults
  127.0.0.1, 5432, postgres, empty, ``idempotency_demo``). Create the database
  first: ``createdb -h 127.0.0.1 -U postgres idempotency_demo``.
- ``DEMO_DATABASE=mysql``: MySQL/MariaDB, addressed by ``MYSQL_HOST``,
  ``MYSQL_PORT``, ``MYSQL_USER``, ``MYSQL_PASSWORD`` and ``MYSQL_DATABASE``
  (needs ``pip install mysqlclient``).
- ``DEMO_REDIS_URL=redis://127.0.0.1:6379/0``: a django-redis cache, and the
  in-progress lock taken in Redis (``IDEMPOTENCY["LOCK"] = "cache"``) while the
  records stay in the database.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DEMO_SECRET_KEY", "sample-project-not-secret")
# The demo runs on 127.0.0.1 only; DEBUG gives readable tracebacks while you
# experiment with the views.
DEBUG = os.environ.get("DEMO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_idempotency",
    "sample_project.demo",
    # The OpenAPI schema and its Swagger UI, assets served locally (docs/openapi.md).
    "drf_spectacular",
    "drf_spectacular_sidecar",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "sample_project.urls"
WSGI_APPLICATION = "sample_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_database = os.environ.get("DEMO_DATABASE", "sqlite")
if _database == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DEMO_SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # runserver answers concurrent requests in threads; SQLite lets one
            # of them write at a time, the others wait up to this many seconds.
            "OPTIONS": {"timeout": 20},
        }
    }
elif _database == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "NAME": os.environ.get("PGDATABASE", "idempotency_demo"),
        }
    }
elif _database == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "USER": os.environ.get("MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
            "NAME": os.environ.get("MYSQL_DATABASE", "idempotency_demo"),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }
else:
    raise RuntimeError(f"DEMO_DATABASE must be sqlite, postgresql or mysql, not {_database!r}")

# Every endpoint group configures itself with @idempotent(...) options or
# IdempotencyMixin.idempotency_options (see demo/views/); the global defaults
# stay those of the app, which is what the "ietf" group shows.
IDEMPOTENCY: dict[str, object] = {}

_redis_url = os.environ.get("DEMO_REDIS_URL")
if _redis_url:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": _redis_url,
        }
    }
    IDEMPOTENCY["LOCK"] = "cache"

# DEMO_ENCRYPTION_KEYS="key1,key2" encrypts stored responses at rest, in the
# database and in Redis (docs/recipes/encryption.md); the first key encrypts.
# A key: python -c "from django_idempotency.encryption import generate_key as g; print(g())"
_encryption_keys = os.environ.get("DEMO_ENCRYPTION_KEYS")
if _encryption_keys:
    IDEMPOTENCY["ENCRYPTION_KEYS"] = [k.strip() for k in _encryption_keys.split(",") if k.strip()]

# The checkout page (/checkout/) calls the API on its own origin, or on
# DEMO_CHECKOUT_API (such as http://127.0.0.1:8000) when this server only serves
# the page: see docs/recipes/cors.md.
DEMO_CHECKOUT_API = os.environ.get("DEMO_CHECKOUT_API", "")
try:
    from corsheaders.defaults import default_headers
except ImportError:  # django-cors-headers is optional: same-origin pages only
    pass
else:
    from django_idempotency import cors

    INSTALLED_APPS.append("corsheaders")
    MIDDLEWARE.insert(0, "corsheaders.middleware.CorsMiddleware")
    # --8<-- [start:cors]
    CORS_ALLOWED_ORIGINS = os.environ.get(
        "DEMO_CORS_ORIGINS", "http://127.0.0.1:8001,http://localhost:8001"
    ).split(",")
    CORS_URLS_REGEX = r"^/checkout/"
    CORS_ALLOW_CREDENTIALS = True  # the guest's session cookie
    CORS_ALLOW_HEADERS = (*default_headers, *cors.allow_headers(IDEMPOTENCY))
    CORS_EXPOSE_HEADERS = cors.expose_headers(IDEMPOTENCY)
    CSRF_TRUSTED_ORIGINS = CORS_ALLOWED_ORIGINS
    # --8<-- [end:cors]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Documents every protected operation's key header and problem responses.
    "DEFAULT_SCHEMA_CLASS": "django_idempotency.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "django-idempotency sample API",
    "DESCRIPTION": "Five public APIs' idempotency, reproduced with options alone.",
    "VERSION": "1.0.0",
    # The Swagger UI from drf-spectacular-sidecar: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # Takeovers, unstored responses and store failures are logged here.
    "loggers": {"django_idempotency": {"handlers": ["console"], "level": "INFO"}},
}
