from django.conf import settings
from django.db import models


class Payment(models.Model):
    """Each row is one execution of a view: tests count them."""

    amount = models.IntegerField()
    reference = models.CharField(max_length=100, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)

    def __str__(self) -> str:
        return f"{self.amount} ({self.reference})"
