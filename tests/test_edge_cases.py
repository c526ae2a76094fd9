"""Edge cases of the engine: fingerprints of parsed or streamed bodies, takeovers
near the end of ttl, Redis and rolled-back transactions, TemplateResponses,
machine clients' scopes, REPEATABLE READ, ASGI side connections.

Run on each backend: IDEMPOTENCY_TEST_DB=postgresql|mysql|sqlite.
The module carries its own views and URLs (``@pytest.mark.urls(__name__)``).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any, cast

import pytest
import redis
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.template import engines
from django.template.response import SimpleTemplateResponse
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.test.utils import override_settings
from django.urls import path
from pytest_django import Settings
from rest_framework.authentication import BaseAuthentication
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    parser_classes,
    permission_classes,
)
from rest_framework.parsers import BaseParser, FileUploadParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient

from django_idempotency import engine, idempotent, store
from django_idempotency.conf import resolve
from django_idempotency.connections import side_connection
from django_idempotency.identity import lookup_hash
from django_idempotency.models import IdempotencyRecord, State
from django_idempotency.options import validate_options
from tests.clock import advance
from tests.factories import CLIENT_API_KEY, CLIENT_SCOPE, api_client
from tests.helpers import needs_redis
from tests.settings import REDIS_URL
from tests.testapp.models import Payment

URLS = __name__


# Views -------------------------------------------------------------------------


class StreamJSONParser(BaseParser):
    """A JSON parser that reads the request stream, as DRF's own JSONParser did
    up to 3.15 (the oldest DRF this package supports) and as third-party
    parsers still do (drf-orjson-renderer's ORJSONParser, msgpack, YAML...)."""

    media_type = "application/json"

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        return json.loads(stream.read())


class AmountLimit(BasePermission):
    """A permission that looks at the body, as many real ones do."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return int(cast(dict[str, Any], request.data).get("amount", 0)) <= 10_000


@api_view(["POST"])
@parser_classes([StreamJSONParser])
@idempotent
def pay(request: Request) -> Response:
    payment = Payment.objects.create(
        amount=int(cast(dict[str, Any], request.data)["amount"]), reference="pay"
    )
    return Response({"id": payment.pk, "amount": payment.amount}, status=201)


@api_view(["POST"])
@permission_classes([AmountLimit])
@parser_classes([StreamJSONParser])
@idempotent
def pay_with_body_permission(request: Request) -> Response:
    payment = Payment.objects.create(
        amount=int(cast(dict[str, Any], request.data)["amount"]), reference="perm"
    )
    return Response({"id": payment.pk, "amount": payment.amount}, status=201)


@api_view(["POST"])
@idempotent(lock_timeout=1, ttl=60)
def pay_html_receipt(request: Request) -> SimpleTemplateResponse:
    # Any lazily rendered response: TemplateResponse, SimpleTemplateResponse.
    payment = Payment.objects.create(
        amount=int(cast(dict[str, Any], request.data)["amount"]), reference="html"
    )
    template = engines["django"].from_string("<p>Paid {{ amount }}</p>")
    return SimpleTemplateResponse(template, {"amount": payment.amount}, status=201)


class ClientCredentials(BaseAuthentication):
    """Machine clients (OAuth2 client credentials, API keys): an auth object,
    no user, as django-oauth-toolkit gives for a client-credentials token."""

    def authenticate(self, request: Request) -> tuple[None, str] | None:
        client_id = request.headers.get("X-Client")
        return None if client_id is None else (None, client_id)


class HasClient(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return request.auth is not None


@api_view(["POST"])
@authentication_classes([ClientCredentials])
@permission_classes([HasClient])
@idempotent
def partner_refund(request: Request) -> Response:
    payment = Payment.objects.create(
        amount=int(cast(dict[str, Any], request.data)["amount"]), reference=cast(str, request.auth)
    )
    return Response({"refund": payment.pk, "client": request.auth, "iban": f"IBAN-{request.auth}"})


@api_view(["POST"])
@idempotent(lock_timeout=1, ttl=60)
def pay_quick_lock(request: Request) -> Response:
    payment = Payment.objects.create(
        amount=int(cast(dict[str, Any], request.data)["amount"]), reference="rr"
    )
    return Response({"id": payment.pk}, status=201)


@api_view(["PATCH"])
@parser_classes([MultiPartParser])
@idempotent
def update_payout_account(request: Request) -> Response:
    # e.g. a new IBAN plus a scanned bank statement, sent as multipart.
    payment = Payment.objects.create(
        amount=int(cast(dict[str, Any], request.data)["amount"]), reference="patch"
    )
    return Response({"id": payment.pk, "amount": payment.amount})


@api_view(["POST"])
@parser_classes([FileUploadParser])
@idempotent
def upload_statement(request: Request, filename: str) -> Response:
    upload = cast(dict[str, Any], request.data)["file"]
    payment = Payment.objects.create(amount=upload.size, reference="upload")
    return Response({"id": payment.pk, "size": upload.size}, status=201)


urlpatterns = [
    path("statements/<str:filename>", upload_statement),
    path("payout-account/", update_payout_account),
    path("pay-quick-lock/", pay_quick_lock),
    path("pay/", pay),
    path("pay-permission/", pay_with_body_permission),
    path("pay-html/", pay_html_receipt),
    path("partner-refund/", partner_refund),
]


def _post(client: APIClient, url: str, amount: int, key: str, **extra: Any) -> Any:
    return client.post(url, {"amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


# Fingerprint: a JSON body DRF parsed before the view -----------------------------------

CSRF = "A" * 32


@pytest.mark.urls(URLS)
@pytest.mark.django_db
def test_session_auth_json_post_with_other_amount_is_422_not_a_replay(user: User) -> None:
    # SessionAuthentication's CSRF check reads request.POST, which makes DRF
    # parse the JSON body from the stream before the handler: request.body is
    # then unreadable and the fingerprint falls back to an (empty) form digest.
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.cookies["csrftoken"] = CSRF

    first = _post(client, "/pay/", 10, "k-session", HTTP_X_CSRFTOKEN=CSRF)
    other = _post(client, "/pay/", 9_999, "k-session", HTTP_X_CSRFTOKEN=CSRF)

    assert first.status_code == 201
    assert other.status_code == 422, (
        f"a different amount under the same key got {other.status_code} "
        f"{other.content!r} (replayed: {other.get('Idempotent-Replayed')})"
    )


@pytest.mark.urls(URLS)
@pytest.mark.django_db
def test_permission_reading_request_data_does_not_blind_the_fingerprint(client: APIClient) -> None:
    first = _post(client, "/pay-permission/", 10, "k-perm")
    other = _post(client, "/pay-permission/", 9_999, "k-perm")

    assert first.status_code == 201
    assert other.status_code == 422, (
        f"a different amount under the same key got {other.status_code} {other.content!r}"
    )


# Takeover: an abandoned claim taken over near the end of ttl ---------------------------


@pytest.mark.django_db(transaction=True)
def test_takeover_near_ttl_end_cannot_be_stolen_while_it_runs() -> None:
    # Valid options: lock_timeout <= ttl.
    options = resolve(validate_options({"ttl": 300, "lock_timeout": 150}))

    def new_record(fingerprint: str = "f" * 64) -> store.NewRecord:
        return store.NewRecord(
            lookup_hash=lookup_hash(CLIENT_SCOPE, "k-ttl", None),
            key="k-ttl",
            scope=CLIENT_SCOPE,
            endpoint="POST pay/",
            method="POST",
            path="/pay/",
            fingerprints=(fingerprint,),
            request_id=uuid.uuid4().hex,
            ttl=options.ttl,
            lock_timeout=options.lock_timeout,
        )

    first = engine._claim("default", new_record())  # a worker that then dies
    assert isinstance(first, store.Claim)
    advance(200, key="k-ttl")  # abandoned since 50 s; 100 s of ttl left
    second = engine._claim("default", new_record())  # the retry takes it over...
    assert isinstance(second, store.Claim), second
    # ...and runs the view, which takes less than lock_timeout (150 s).
    advance(110, key="k-ttl")  # the record's ttl (from the first claim) has passed
    third = engine._claim("default", new_record())
    assert not isinstance(third, store.Claim), (
        "a live claim (locked for another 40 s) was taken over because the "
        "record's ttl ran out first: the view runs twice at once"
    )


# Redis: responses cached only after the caller's transaction commits -------------------


@pytest.fixture
def redis_front() -> Iterator[None]:
    prefix = f"review-{uuid.uuid4().hex[:8]}"
    with override_settings(
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": prefix,
            },
        },
        IDEMPOTENCY={"LOCK": "cache", "CACHE_ALIAS": "redis"},
    ):
        yield
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


class _RolledBack(Exception):
    pass


@needs_redis
@pytest.mark.urls(URLS)
@pytest.mark.django_db(transaction=True)
def test_redis_never_replays_a_response_whose_transaction_rolled_back(
    redis_front: None,
) -> None:
    # The view runs inside a transaction the caller opened (ATOMIC_REQUESTS, or
    # an enclosing atomic()) that rolls back after the view returned: nothing
    # of the operation is committed, the record is not completed.
    client = api_client()
    with pytest.raises(_RolledBack), transaction.atomic():
        first = _post(client, "/pay/", 10, "k-redis-rollback")
        assert first.status_code == 201
        raise _RolledBack

    assert Payment.objects.count() == 0
    assert not IdempotencyRecord.objects.filter(
        key="k-redis-rollback", state=State.COMPLETED
    ).exists()

    retry = _post(client, "/pay/", 10, "k-redis-rollback")
    assert retry.get("Idempotent-Replayed") != "true", (
        "Redis replayed a 201 for an operation whose transaction rolled back: "
        "the payment does not exist"
    )


@needs_redis
@pytest.mark.urls(URLS)
@pytest.mark.django_db(transaction=True)
def test_redis_never_replays_when_atomic_requests_commit_fails(redis_front: None) -> None:
    # ATOMIC_REQUESTS: the view's deferred foreign key is checked at COMMIT,
    # which fails after the engine already handed the response to Redis.
    if connection.vendor == "mysql":
        pytest.skip("MySQL has no deferred constraints")

    @api_view(["POST"])
    @idempotent
    def bad_fk(request: Request) -> Response:
        payment = Payment.objects.create(amount=1, reference="fk", owner_id=987654321)
        return Response({"id": payment.pk}, status=201)

    from django.core.handlers.base import BaseHandler
    from django.test import RequestFactory

    factory = RequestFactory()
    old = connection.settings_dict.get("ATOMIC_REQUESTS")
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    try:
        wrapped = BaseHandler().make_view_atomic(bad_fk)
        request = factory.post(
            "/bad-fk/",
            b'{"amount": 1}',
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="k-fk",
            HTTP_X_API_KEY=CLIENT_API_KEY,
        )
        with pytest.raises(IntegrityError):  # at COMMIT: the client gets a 500
            wrapped(request)
    finally:
        connection.settings_dict["ATOMIC_REQUESTS"] = old
        side_connection("default").close()
    assert Payment.objects.count() == 0
    # The record is still in progress (claim committed on the side connection),
    # so the database would answer 409; Redis must not answer with a replay.
    from django_idempotency import cache_lock

    fast = cache_lock.check(
        "redis", lookup_hash(CLIENT_SCOPE, "k-fk", None), ("x",), "t", timedelta(seconds=5)
    )
    assert not isinstance(fast, cache_lock.Cached), (
        "Redis caches the 201 of a request whose COMMIT failed; retries replay it"
    )


# Responses: lazily rendered (TemplateResponse) -----------------------------------------


@pytest.mark.urls(URLS)
@pytest.mark.django_db
def test_template_response_is_not_answered_500_and_not_run_twice() -> None:
    client = api_client(raise_request_exception=False)
    first = _post(client, "/pay-html/", 10, "k-html")
    assert Payment.objects.count() == 1  # the payment was made...
    assert first.status_code == 201, (
        f"...but the client got {first.status_code}: the engine read .content of an "
        "unrendered response (ContentNotRenderedError) after the view committed"
    )


@pytest.mark.urls(URLS)
@pytest.mark.django_db
def test_template_response_payment_is_not_made_again_after_lock_timeout() -> None:
    client = api_client(raise_request_exception=False)
    _post(client, "/pay-html/", 10, "k-html-2")
    advance(1.1, key="k-html-2")  # lock_timeout of the view
    _post(client, "/pay-html/", 10, "k-html-2")
    assert Payment.objects.count() == 1, "the same key made two payments"


# Scope: authenticated principals without a user ----------------------------------------


@pytest.mark.urls(URLS)
@pytest.mark.django_db
def test_authenticated_machine_clients_do_not_share_a_key_space() -> None:
    client = api_client()
    acme = _post(client, "/partner-refund/", 10, "refund-0001", HTTP_X_CLIENT="acme")
    globex = _post(client, "/partner-refund/", 10, "refund-0001", HTTP_X_CLIENT="globex")

    assert acme.status_code == 200
    assert globex.get("Idempotent-Replayed") != "true", (
        f"client globex received client acme's stored response: {globex.content!r}"
    )
    assert Payment.objects.filter(reference="globex").count() == 1


# Transactions: ATOMIC_REQUESTS at REPEATABLE READ / SERIALIZABLE -----------------------


@pytest.fixture
def atomic_requests_repeatable_read() -> Iterator[None]:
    if connection.vendor == "postgresql":
        import psycopg

        repeatable_read: object = psycopg.IsolationLevel.REPEATABLE_READ
    elif connection.vendor == "mysql":
        repeatable_read = "repeatable read"  # passes: InnoDB UPDATEs read the latest row
    else:
        pytest.skip("SQLite joins the caller's transaction")
    settings_dict = connection.settings_dict
    saved = settings_dict.get("ATOMIC_REQUESTS"), dict(settings_dict.get("OPTIONS", {}))
    connection.close()
    settings_dict["ATOMIC_REQUESTS"] = True
    settings_dict["OPTIONS"] = {**saved[1], "isolation_level": repeatable_read}
    try:
        yield
    finally:
        connection.close()
        side_connection("default").close()
        settings_dict["ATOMIC_REQUESTS"], settings_dict["OPTIONS"] = saved


@pytest.mark.urls(URLS)
@pytest.mark.django_db(transaction=True)
def test_atomic_requests_with_repeatable_read_stores_the_response(
    atomic_requests_repeatable_read: None, user_client: APIClient
) -> None:
    # Token authentication reads the token inside the request's transaction:
    # its snapshot predates the claim that the side connection commits, so the
    # final UPDATE on the request's connection cannot see the record.
    first = _post(user_client, "/pay-quick-lock/", 10, "k-rr")
    assert first.status_code == 201
    record = IdempotencyRecord.objects.get(key="k-rr")
    assert record.state == State.COMPLETED, "the response was never stored"


@pytest.mark.urls(URLS)
@pytest.mark.django_db(transaction=True)
def test_atomic_requests_with_repeatable_read_runs_the_payment_once(
    atomic_requests_repeatable_read: None, user_client: APIClient
) -> None:
    _post(user_client, "/pay-quick-lock/", 10, "k-rr-2")
    advance(1.1, key="k-rr-2")  # lock_timeout
    retry = _post(user_client, "/pay-quick-lock/", 10, "k-rr-2")
    assert retry.status_code == 201
    assert Payment.objects.filter(reference="rr").count() == 1, "the payment was made twice"


# Fingerprint: multipart PATCH bodies ---------------------------------------------------


@pytest.mark.urls(URLS)
@pytest.mark.django_db
def test_multipart_patch_with_other_content_is_422_not_a_replay(client: APIClient) -> None:
    # PATCH is in the default methods. Django only parses request.POST/FILES for
    # POST, so the multipart digest of a PATCH is the digest of nothing.
    first = client.patch(
        "/payout-account/",
        encode_multipart(BOUNDARY, {"amount": "10"}),
        content_type=MULTIPART_CONTENT,
        HTTP_IDEMPOTENCY_KEY="k-patch",
    )
    other = client.patch(
        "/payout-account/",
        encode_multipart(BOUNDARY, {"amount": "9999"}),
        content_type=MULTIPART_CONTENT,
        HTTP_IDEMPOTENCY_KEY="k-patch",
    )
    assert first.status_code == 200
    assert other.status_code == 422, (
        f"another amount under the same key got {other.status_code} {other.content!r} "
        f"(replayed: {other.get('Idempotent-Replayed')})"
    )


# Fingerprint: raw uploads above DATA_UPLOAD_MAX_MEMORY_SIZE ----------------------------


@pytest.mark.urls(URLS)
@pytest.mark.django_db
def test_raw_file_upload_larger_than_the_memory_limit_still_works(
    client: APIClient, settings: Settings
) -> None:
    # FileUploadParser streams the body through upload handlers; without the
    # app this upload succeeds. The default fingerprint reads request.body,
    # which Django caps at DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default).
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    body = b"%PDF-1.7 " + b"x" * (2 * 1024 * 1024)
    response = client.post(
        "/statements/march.pdf",
        body,
        content_type="application/pdf",
        HTTP_CONTENT_DISPOSITION="attachment; filename=march.pdf",
        HTTP_IDEMPOTENCY_KEY="k-upload",
    )
    assert response.status_code == 201, f"{response.status_code} {response.content[:200]!r}"


# Connections: the side connection under ASGI -------------------------------------------


@pytest.mark.urls(URLS)
@pytest.mark.django_db(transaction=True)
def test_side_connection_is_reused_across_asgi_requests(user: User) -> None:
    # ATOMIC_REQUESTS with persistent connections (CONN_MAX_AGE=None), served
    # by Django's ASGI handler. Django keeps its own connections per thread; the
    # side connection lives in a context-local, and every ASGI request runs in
    # a fresh context, so each request opens (and drops) a new connection.
    if connection.vendor == "sqlite":
        pytest.skip("SQLite claims on the request's connection")
    from asgiref.sync import async_to_sync
    from django.db.backends.signals import connection_created
    from django.test import AsyncClient
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=user)
    opened = []

    def count(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(connection)

    settings_dict = connection.settings_dict
    saved = settings_dict.get("ATOMIC_REQUESTS"), settings_dict.get("CONN_MAX_AGE")
    settings_dict["ATOMIC_REQUESTS"], settings_dict["CONN_MAX_AGE"] = True, None
    connection_created.connect(count)
    try:
        client = AsyncClient()

        async def one(i: int) -> Any:
            # An ASGI server runs each request in a task of its own.
            return await client.post(
                "/pay/",
                b'{"amount": 1}',
                content_type="application/json",
                headers={"Idempotency-Key": f"k-asgi-{i}", "Authorization": f"Token {token.key}"},
            )

        async def five() -> None:
            for i in range(5):
                response = await asyncio.create_task(one(i))
                assert response.status_code == 201

        # A fresh context, as an ASGI server's: nothing inherited from other tests.
        contextvars.Context().run(async_to_sync(five))
    finally:
        connection_created.disconnect(count)
        settings_dict["ATOMIC_REQUESTS"], settings_dict["CONN_MAX_AGE"] = saved
        for opened_connection in opened:
            opened_connection.close()
    side = [c for c in opened if c is not connection]
    assert len({id(c) for c in side}) <= 2, (
        f"{len(side)} database connections opened for 5 requests"
    )
