import hashlib
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from rest_framework import generics, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes, throttle_classes
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from django_idempotency import IdempotencyMixin, idempotent
from django_idempotency.options import MAX_DURATION
from django_idempotency.scopes import user_or_session

from .models import Payment
from .serializers import PaymentSerializer


def _create(request: Request, **extra: Any) -> Response:
    serializer = PaymentSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    owner = request.user if request.user.is_authenticated else None
    payment = serializer.save(owner=owner, **extra)
    delay = float(request.query_params.get("sleep", 0))
    if delay:
        time.sleep(delay)
    if request.query_params.get("fail") == "402":
        # A refusal the view answers itself (not an exception): stored and replayed.
        return Response({"error": "card declined", "payment": payment.pk}, status=402)
    if request.query_params.get("fail") == "500":
        return Response({"error": "boom"}, status=500)
    if request.query_params.get("fail") == "raise":
        raise RuntimeError("view crashed")
    response = Response(PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)
    response["Location"] = f"/payments/{payment.pk}/"
    response["X-RateLimit-Remaining"] = "41"
    response.set_cookie("session-ish", "secret")
    return response


@api_view(["POST", "GET", "PUT", "PATCH", "DELETE"])
@idempotent
def function_view(request: Request) -> Response:
    if request.method == "GET":
        return Response({"count": Payment.objects.count()})
    return _create(request)


@api_view(["POST"])
@idempotent(header="X-Idempotency-Key", replay_status=409, required=True)
def letter_view(request: Request) -> Response:
    return _create(request)


@api_view(["POST"])
@idempotent(atomic=True)
def atomic_view(request: Request) -> Response:
    return _create(request)


@api_view(["POST"])
@idempotent(per_endpoint=True)
def per_endpoint_a(request: Request) -> Response:
    return _create(request, reference="a")


@api_view(["POST"])
@idempotent(per_endpoint=True)
def per_endpoint_b(request: Request) -> Response:
    return _create(request, reference="b")


@api_view(["POST"])
@idempotent
def binary_view(request: Request) -> HttpResponse:
    Payment.objects.create(amount=1)
    return HttpResponse(bytes(range(256)) * 4, content_type="application/pdf")


@api_view(["POST"])
@idempotent
def streaming_view(request: Request) -> StreamingHttpResponse:
    Payment.objects.create(amount=1)
    return StreamingHttpResponse(iter([b"a", b"b"]), content_type="text/plain")


@api_view(["POST"])
@idempotent
def raw_body_view(request: Request) -> Response:
    """Reads the raw bytes, as a view checking a webhook signature does, then
    the parsed form."""
    digest = hashlib.sha256(request.body).hexdigest()
    payment = Payment.objects.create(amount=int(cast(Any, request.data)["amount"]))
    return Response({"id": payment.pk, "sha256": digest}, status=201)


@api_view(["POST"])
@idempotent
def plain_json_view(request: Request) -> HttpResponse:
    Payment.objects.create(amount=1)
    return HttpResponse(b'{"ok": true}', content_type="application/json", status=202)


class PaymentAPIView(APIView):
    @idempotent
    def post(self, request: Request) -> Response:
        return _create(request)


class PaymentCreateView(IdempotencyMixin, generics.ListCreateAPIView[Payment]):
    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer
    idempotency_options = {"required": True, "key_pattern": r"[0-9a-f-]{36}"}


class PaymentViewSet(viewsets.ModelViewSet[Payment]):
    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer

    @idempotent(required=True)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().create(request, *args, **kwargs)

    @action(detail=False, methods=["post"])
    @idempotent
    def refund(self, request: Request) -> Response:
        return _create(request, reference="refund")


class MixinViewSet(IdempotencyMixin, viewsets.ModelViewSet[Payment]):
    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer

    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        return _create(request, reference="bulk")


class MixinOverrideView(IdempotencyMixin, APIView):
    """The mixin for every method; ``post`` keeps its own decorator's options."""

    idempotency_options = {"replay_status": 200}

    @idempotent(replay_status=202)
    def post(self, request: Request) -> Response:
        return _create(request)

    def patch(self, request: Request) -> Response:
        return _create(request)


class PrivateView(APIView):
    permission_classes = [IsAuthenticated]

    @idempotent
    def post(self, request: Request) -> Response:
        return _create(request)


class TwoPerMinuteThrottle(AnonRateThrottle):
    # A rate on the class: the test settings define no DEFAULT_THROTTLE_RATES.
    rate = "2/minute"


class TwoPerMinuteUserThrottle(UserRateThrottle):
    rate = "2/minute"


class ThrottledView(APIView):
    throttle_classes = [TwoPerMinuteThrottle]

    @idempotent
    def post(self, request: Request) -> Response:
        return _create(request)


@api_view(["POST"])
@permission_classes([IsAuthenticated])
@idempotent
def private_function_view(request: Request) -> Response:
    """DRF's policy decorators above @idempotent..."""
    return _create(request)


@api_view(["POST"])
@idempotent
@permission_classes([IsAuthenticated])
@throttle_classes([TwoPerMinuteUserThrottle])
def private_function_view_inner(request: Request) -> Response:
    """...or below it: both orders keep the policy."""
    return _create(request)


class AdminOnlyView(APIView):
    permission_classes = [IsAdminUser]

    @idempotent
    def post(self, request: Request) -> Response:
        return _create(request)


@api_view(["POST", "PUT"])
def bare_view(request: Request) -> Response:
    """function_view without the app: the baseline of the query counts."""
    return _create(request)


@api_view(["POST"])
@idempotent
def headers_view(request: Request) -> Response:
    """Answers with every kind of header, to see which ones are stored."""
    Payment.objects.create(amount=1)
    response = Response({"ok": True}, status=201)
    response["Location"] = "/payments/1/"
    response["ETag"] = '"v1"'
    response["Authorization"] = "Bearer secret-token"
    response["Cookie"] = "sessionid=secret"
    response["WWW-Authenticate"] = "Token"
    response["RateLimit-Remaining"] = "9"
    response["X-RateLimit-Limit"] = "10"
    response["X-Custom"] = "kept"
    response.set_cookie("auth-cookie", "secret")
    return response


def checkout_page(request: HttpRequest) -> HttpResponse:
    """The page a browser checkout starts on: it saves the guest's session."""
    request.session["checkout_started"] = True
    return HttpResponse("checkout")


@api_view(["POST"])
@idempotent(scope=user_or_session)
def guest_order_view(request: Request) -> Response:
    return _create(request)


def tenant_scope(request: Request) -> str:
    """A scope callable: keys live in the tenant named by a header."""
    return "tenant:" + request.headers.get("X-Tenant", "none")


def amount_fingerprint(request: Request) -> str:
    """A fingerprint callable: only the amount must match for a retry."""
    return str(cast(dict[str, Any], request.data).get("amount"))


#: name -> options of a function view served at ``/options/<name>/``.
OPTION_VIEWS: dict[str, dict[str, Any]] = {
    "header": {"header": "X-Custom-Key"},
    "required": {"required": True},
    "methods": {"methods": ["PUT", "DELETE"]},
    "lengths": {"key_min_length": 8, "key_max_length": 16},
    "long-keys": {"key_max_length": 1024},
    "pattern": {"key_pattern": r"ord_[0-9]{4}"},
    "short-ttl": {"ttl": timedelta(seconds=2), "lock_timeout": 1},
    "longest-ttl": {"ttl": MAX_DURATION},
    "scope-callable": {"scope": tenant_scope},
    "scope-dotted": {"scope": "tests.testapp.views.tenant_scope"},
    "fingerprint": {"fingerprint": amount_fingerprint},
    "replay-status": {"replay_status": 200},
    "replayed-header": {"replayed_header": "X-Was-Replayed"},
    "no-replayed-header": {"replayed_header": None},
    "request-id-header": {"request_id_header": "X-Correlation-Id"},
    "no-request-id": {"request_id_header": None},
    "mismatch-status": {"mismatch_status": 409},
    "store-server-errors": {"store_server_errors": True},
    "max-response-bytes": {"max_response_bytes": 10},
    "empty-scope": {"scope": lambda request: ""},
    "int-fingerprint": {"fingerprint": lambda request: 42},
    "wait": {"wait": 5},
}


def _option_view(name: str, options: dict[str, Any]) -> Callable[..., Any]:
    @api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
    @idempotent(**options)
    def view(request: Request) -> Response:
        return _create(request, reference=name)

    # api_view() returns the function it was given; the stubs call it AsView.
    view.__name__ = view.__qualname__ = f"option_view_{name.replace('-', '_')}"  # type: ignore[attr-defined]
    return view


option_views = {name: _option_view(name, options) for name, options in OPTION_VIEWS.items()}


@api_view(["POST"])
@idempotent
def item_view(request: Request, slug: str) -> Response:
    return _create(request)


@api_view(["POST"])
@idempotent(scope=lambda request: "tenant:\0" + request.headers.get("X-Tenant", ""))
def nul_scope_view(request: Request) -> Response:
    return _create(request)
