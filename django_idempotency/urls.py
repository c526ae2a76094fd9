"""``path("idempotency/", include("django_idempotency.urls"))`` adds
``GET idempotency/keys/<key>``, the outcome look-up (``lookup.py``)."""

from django.urls import path

from .lookup import OutcomeLookupView

app_name = "django_idempotency"

urlpatterns = [
    # ``path``: keys may contain "/" (the default key rules allow it).
    path("keys/<path:key>", OutcomeLookupView.as_view(), name="key-outcome"),
]
