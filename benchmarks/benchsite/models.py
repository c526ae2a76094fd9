from django.db import models


class Order(models.Model):
    """The one row the benchmarked endpoint inserts."""

    owner_id = models.IntegerField()
    amount = models.IntegerField()
    note = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return f"order {self.pk}"


class FloorRecord(models.Model):
    """The narrowest table a correct implementation could live with: a unique
    lookup hash, the request fingerprint and the stored answer. The floor writes
    it with raw SQL, so the ORM only creates it."""

    lookup_hash = models.CharField(max_length=64, unique=True)
    fingerprint = models.CharField(max_length=64)
    status = models.SmallIntegerField(null=True)
    body = models.BinaryField(null=True)

    def __str__(self) -> str:
        return self.lookup_hash
