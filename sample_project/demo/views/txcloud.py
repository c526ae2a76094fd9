"""TXCloud (identity verification, KYC):
https://docs.txcloud.thetekcircle.io/concepts/idempotency

- ``Idempotency-Key`` of 10-255 letters, digits, ``-`` and ``_``;
- remembered 24 hours, per API key *and* endpoint: the same key on
  ``/identity/verify`` and ``/identity/sessions`` is two operations;
- a retry gets the cached response with ``Idempotent-Replayed: true`` and the
  ``X-Request-Id`` of the original request;
- the key with another body is a conflict error (409 here);
- GET and DELETE are not affected.
"""

from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import QuerySet
from rest_framework import generics

from django_idempotency import IdempotencyMixin
from django_idempotency.option_types import IdempotencyOptions

from .. import simulate
from ..auth import AUTHENTICATION, PERMISSIONS
from ..models import IdentityCheck
from ..serializers import IdentityCheckSerializer

OPTIONS: IdempotencyOptions = {
    "key_min_length": 10,
    "key_max_length": 255,
    "key_pattern": r"[A-Za-z0-9_-]+",
    "scope": "sample_project.demo.scopes.api_key_scope",
    "per_endpoint": True,
    "mismatch_status": 409,
    # Defaults, spelled out because TXCloud documents them:
    "replayed_header": "Idempotent-Replayed",
    "request_id_header": "X-Request-Id",
}


class _IdentityCheckCreate(IdempotencyMixin, generics.CreateAPIView[IdentityCheck]):
    idempotency_options = OPTIONS
    authentication_classes = AUTHENTICATION
    permission_classes = PERMISSIONS
    serializer_class = IdentityCheckSerializer
    kind: str

    def perform_create(self, serializer: Any) -> None:
        simulate.pause(self.request)
        serializer.save(owner=self.request.user, kind=self.kind, status="approved")


class VerifyView(_IdentityCheckCreate):
    """POST /txcloud/identity/verify: verify an identity document now."""

    kind = IdentityCheck.Kind.VERIFICATION


class SessionView(_IdentityCheckCreate):
    """POST /txcloud/identity/sessions: open a hosted verification session."""

    kind = IdentityCheck.Kind.SESSION

    def perform_create(self, serializer: Any) -> None:
        serializer.save(owner=self.request.user, kind=self.kind, status="pending")


class IdentityCheckView(IdempotencyMixin, generics.RetrieveDestroyAPIView[IdentityCheck]):
    """GET and DELETE /txcloud/identity/checks/<id>: same options, and the key is ignored."""

    idempotency_options = OPTIONS
    authentication_classes = AUTHENTICATION
    permission_classes = PERMISSIONS
    serializer_class = IdentityCheckSerializer

    def get_queryset(self) -> QuerySet[IdentityCheck]:
        return IdentityCheck.objects.filter(
            owner=cast(User, self.request.user)
        )  # the views require a signed-in user
