"""ASGI entry point, e.g. ``uvicorn sample_project.asgi:application`` from the
repository root (``make demo-asgi``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_project.settings")
application = get_asgi_application()
