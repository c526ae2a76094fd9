"""What the sample API creates. Each row is one execution of an operation, so
counting rows shows whether a retry ran the view again."""

import secrets

from django.conf import settings
from django.db import models


def _last_four() -> str:
    return f"{secrets.randbelow(10_000):04d}"


class Payment(models.Model):
    """A card payment of the "ietf" group (the app's defaults)."""

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        REFUNDED = "refunded"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="payments"
    )
    amount = models.PositiveIntegerField(help_text="In minor units (cents).")
    currency = models.CharField(max_length=3, default="EUR")
    description = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUCCEEDED)
    refunded_amount = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} ({self.status})"


class Card(models.Model):
    """A card of the "lithic" group (card issuing)."""

    class Type(models.TextChoices):
        VIRTUAL = "VIRTUAL"
        PHYSICAL = "PHYSICAL"

    class State(models.TextChoices):
        OPEN = "OPEN"
        PAUSED = "PAUSED"
        CLOSED = "CLOSED"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cards"
    )
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.VIRTUAL)
    memo = models.CharField(max_length=200, blank=True)
    spend_limit = models.PositiveIntegerField(default=0, help_text="In cents; 0 means no limit.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    last_four = models.CharField(max_length=4, default=_last_four)
    renewals = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.type} card …{self.last_four}"


class IdentityCheck(models.Model):
    """An identity verification or verification session of the "txcloud" group (KYC)."""

    class Kind(models.TextChoices):
        VERIFICATION = "verification"
        SESSION = "session"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="identity_checks"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    country = models.CharField(max_length=2)
    reference = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, default="pending")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.country} ({self.status})"


class Letter(models.Model):
    """A printed and posted letter of the "stannp" group."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="letters"
    )
    recipient = models.CharField(max_length=200)
    address = models.TextField()
    pages = models.TextField()
    test = models.BooleanField(default=True, help_text="Test letters are never posted.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Letter to {self.recipient}"


class Transfer(models.Model):
    """A money transfer of the "orzcash" group (payments and custody)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="transfers"
    )
    amount = models.DecimalField(max_digits=18, decimal_places=2)
    currency = models.CharField(max_length=8)
    destination = models.CharField(max_length=100)
    external_id = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} to {self.destination}"


class CheckoutPayment(models.Model):
    """A guest's payment from the browser checkout (``/checkout/``): no account."""

    amount = models.PositiveIntegerField(help_text="In minor units (cents).")
    currency = models.CharField(max_length=3, default="EUR")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} (guest checkout)"
