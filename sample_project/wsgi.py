"""WSGI entry point, e.g. ``gunicorn sample_project.wsgi`` from the repository root."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_project.settings")
application = get_wsgi_application()
