from django.apps import AppConfig
from django.core.signals import request_finished
from django.utils.translation import gettext_lazy as _


class IdempotencyConfig(AppConfig):
    name = "django_idempotency"
    verbose_name = _("Idempotency")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import cache_lock, checks  # noqa: F401  (checks registers the system checks)
        from .connections import close_side_connections

        request_finished.connect(close_side_connections, dispatch_uid="django_idempotency")
