from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connections, models
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.db.models.expressions import RawSQL
from django.utils.translation import gettext_lazy as _

from .options import KEY_MAX_LENGTH_LIMIT


class State(models.TextChoices):
    IN_PROGRESS = "in_progress", _("in progress")
    COMPLETED = "completed", _("completed")


class RecordQuerySet(models.QuerySet["IdempotencyRecord"]):
    """The states a record can be in, by the database's clock (the one that
    decides on the request path: a host whose clock runs ahead must not see
    live records as expired)."""

    def _ago(self, age: timedelta = timedelta()) -> RawSQL:
        from .store import Dialect  # store imports this module

        sql, param = Dialect(connections[self.db]).later(-age)
        return RawSQL(sql, [param])

    def expired(self, older_than: timedelta = timedelta()) -> RecordQuerySet:
        """Past ``expires_at`` (by at least ``older_than``): no longer replayed."""
        return self.filter(expires_at__lte=self._ago(older_than))

    def live(self) -> RecordQuerySet:
        """Not expired: replayed, or still being worked on."""
        return self.filter(expires_at__gt=self._ago())

    def with_expired(self) -> RecordQuerySet:
        """Each record with ``is_expired``, decided as ``expired()`` decides it,
        in the same statement that reads it."""
        return self.annotate(
            is_expired=ExpressionWrapper(
                Q(expires_at__lte=self._ago()), output_field=BooleanField()
            )
        )

    def idle(self) -> RecordQuerySet:
        """Completed, or in progress with its lock run out: no request works on it."""
        return self.filter(Q(state=State.COMPLETED) | Q(locked_until__lte=self._ago()))

    def abandoned(self, older_than: timedelta = timedelta()) -> RecordQuerySet:
        """In progress, its lock run out (at least ``older_than`` ago).

        No index serves this (one on ``state`` would keep every completion
        UPDATE from being HOT on PostgreSQL): it reads the table."""
        return self.filter(state=State.IN_PROGRESS, locked_until__lte=self._ago(older_than))

    def delete(self) -> tuple[int, dict[str, int]]:
        """Deleting records (admin, shell, code) also makes Redis forget them."""
        from .cache_lock import forget_deleted  # loaded by AppConfig.ready()

        hashes = list(self.values_list("lookup_hash", flat=True)) if _cache_front() else []
        result = super().delete()
        forget_deleted(self.db, hashes)
        return result

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


def _cache_front() -> bool:
    from .conf import get_settings

    return get_settings().lock == "cache"


class IdempotencyRecord(models.Model):
    """One idempotency key of one scope: its claim while the request runs,
    then the stored response that every retry receives until ``expires_at``.

    The hot path reads and writes this table with raw SQL (``store.py``); the
    ORM model serves migrations, the admin, purging and tests.
    """

    # The key can be 1024 characters; MySQL/MariaDB cannot put a unique index
    # on that, so uniqueness lives on a fixed-length hash of (scope, key[, endpoint]).
    lookup_hash = models.CharField(
        _("lookup hash"),
        max_length=64,
        help_text=_("SHA-256 of scope, key and (with per_endpoint) endpoint."),
    )
    key = models.CharField(_("key"), max_length=KEY_MAX_LENGTH_LIMIT)
    scope = models.CharField(
        _("scope"), max_length=255, help_text=_("Whose key space the key lives in.")
    )
    endpoint = models.CharField(
        _("endpoint"), max_length=255, help_text=_("Method and URL route that matched.")
    )
    method = models.CharField(_("method"), max_length=16)
    path = models.CharField(_("path"), max_length=2048)
    fingerprint = models.CharField(
        _("request fingerprint"),
        max_length=64,
        help_text=_("SHA-256 of what must be identical for a retry; bodies are never stored."),
    )
    state = models.CharField(_("state"), max_length=16, choices=State.choices)
    token = models.CharField(
        _("claim token"),
        max_length=32,
        help_text=_("Random per claim; every later write must present it (fencing)."),
    )
    request_id = models.CharField(_("request id"), max_length=128, blank=True)
    created_at = models.DateTimeField(_("created"))
    locked_until = models.DateTimeField(
        _("locked until"),
        help_text=_("While in progress: after this the claim counts as abandoned."),
    )
    expires_at = models.DateTimeField(_("expires"))
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True)
    response_headers = models.TextField(
        _("response headers"), blank=True, help_text=_("JSON list of [name, value] pairs.")
    )
    response_body = models.BinaryField(_("response body"), null=True)

    objects = RecordQuerySet.as_manager()

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [
            models.UniqueConstraint(fields=["lookup_hash"], name="idempotency_lookup_uniq"),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="idempotency_expires_idx"),
            # The admin's date hierarchy (first/last date, day ranges).
            models.Index(fields=["created_at"], name="idempotency_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.scope}, {self.get_state_display()})"

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        from .cache_lock import forget_deleted  # loaded by AppConfig.ready()

        using = kwargs.get("using") or self._state.db or "default"
        result = super().delete(*args, **kwargs)
        forget_deleted(using, [self.lookup_hash])
        return result

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The stored headers, decrypted if sealed (``encryption.Unreadable``
        if no key in ENCRYPTION_KEYS opens them)."""
        return self.opened_response()[0]

    def opened_response(self) -> tuple[list[tuple[str, str]], bytes | None]:
        """The stored headers and body, decrypted if sealed (``encryption.Unreadable``
        if no key in ENCRYPTION_KEYS opens them)."""
        from . import conf
        from .encryption import open_record

        body = self.response_body
        return open_record(
            conf.get_settings().keyring,
            self.lookup_hash,
            self.response_status,
            self.response_headers,
            None if body is None else bytes(body),
        )
