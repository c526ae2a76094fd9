"""Test settings. The database comes from IDEMPOTENCY_TEST_DB:

- ``sqlite`` (default): a file database, so that separate processes share it;
- ``postgresql``: 127.0.0.1:5432, user postgres, database test (PGHOST... override);
- ``mysql``: MariaDB/MySQL on 127.0.0.1:3306, user root, empty password, database test.

A requested server that cannot be reached fails the run: never a silent
fallback to SQLite.
"""

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent
BACKEND = os.environ.get("IDEMPOTENCY_TEST_DB", "sqlite")
_RUN_ID = os.environ.get("IDEMPOTENCY_TEST_RUN_ID", str(os.getpid()))

DATABASES: dict[str, dict[str, Any]]
if BACKEND == "sqlite":
    _sqlite_dir = Path(os.environ.get("IDEMPOTENCY_TEST_SQLITE_DIR", "/tmp"))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(_sqlite_dir / f"idempotency-{_RUN_ID}.sqlite3"),
            "OPTIONS": {"timeout": 20},
            "TEST": {"NAME": str(_sqlite_dir / f"idempotency-test-{_RUN_ID}.sqlite3")},
        }
    }
elif BACKEND == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "NAME": os.environ.get("PGDATABASE", "test"),
        }
    }
elif BACKEND == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "USER": os.environ.get("MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
            "NAME": os.environ.get("MYSQL_DATABASE", "test"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        }
    }
else:
    raise RuntimeError(f"IDEMPOTENCY_TEST_DB must be sqlite, postgresql or mysql, not {BACKEND!r}")

# Each test run gets its own test databases, so that runs may overlap.
if BACKEND != "sqlite":
    DATABASES["default"]["TEST"] = {
        **DATABASES["default"].get("TEST", {}),
        "NAME": f"test_idempotency_{_RUN_ID}",
    }
# A second database on the same server, for IDEMPOTENCY["DATABASE"] tests.
DATABASES["records"] = {
    **DATABASES["default"],
    "TEST": {
        **DATABASES["default"].get("TEST", {}),
        "NAME": (
            str(_sqlite_dir / f"idempotency-records-test-{_RUN_ID}.sqlite3")
            if BACKEND == "sqlite"
            else f"test_idempotency_records_{_RUN_ID}"
        ),
    },
}
if BACKEND == "sqlite":
    DATABASES["records"]["NAME"] = str(_sqlite_dir / f"idempotency-records-{_RUN_ID}.sqlite3")
# A third, for records sharded across "records" and "records_2".
DATABASES["records_2"] = {
    **DATABASES["default"],
    "TEST": {
        **DATABASES["default"].get("TEST", {}),
        "NAME": (
            str(_sqlite_dir / f"idempotency-records-2-test-{_RUN_ID}.sqlite3")
            if BACKEND == "sqlite"
            else f"test_idempotency_records_2_{_RUN_ID}"
        ),
    },
}
if BACKEND == "sqlite":
    DATABASES["records_2"]["NAME"] = str(_sqlite_dir / f"idempotency-records-2-{_RUN_ID}.sqlite3")

REDIS_URL = os.environ.get("IDEMPOTENCY_TEST_REDIS", "redis://127.0.0.1:6379/15")

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "rest_framework.authtoken",
    "django_idempotency",
    "tests.testapp",
    "sample_project.demo",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
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
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "tests.testapp.authentication.ApiKeyAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_idempotency": {"handlers": ["null"], "propagate": True}},
}
