import time

from django.http import HttpResponse, StreamingHttpResponse
from rest_framework import generics, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from django_idempotency import IdempotencyMixin, idempotent

from .models import Payment
from .serializers import PaymentSerializer


def _create(request, **extra):
    serializer = PaymentSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    owner = request.user if request.user.is_authenticated else None
    payment = serializer.save(owner=owner, **extra)
    delay = float(request.query_params.get("sleep", 0))
    if delay:
        time.sleep(delay)
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
def function_view(request):
    if request.method == "GET":
        return Response({"count": Payment.objects.count()})
    return _create(request)


@api_view(["POST"])
@idempotent(header="X-Idempotency-Key", replay_status=409, required=True)
def letter_view(request):
    return _create(request)


@api_view(["POST"])
@idempotent(atomic=True)
def atomic_view(request):
    return _create(request)


@api_view(["POST"])
@idempotent(per_endpoint=True)
def per_endpoint_a(request):
    return _create(request, reference="a")


@api_view(["POST"])
@idempotent(per_endpoint=True)
def per_endpoint_b(request):
    return _create(request, reference="b")


@api_view(["POST"])
@idempotent
def binary_view(request):
    Payment.objects.create(amount=1)
    return HttpResponse(bytes(range(256)) * 4, content_type="application/pdf")


@api_view(["POST"])
@idempotent
def streaming_view(request):
    Payment.objects.create(amount=1)
    return StreamingHttpResponse(iter([b"a", b"b"]), content_type="text/plain")


@api_view(["POST"])
@idempotent
def plain_json_view(request):
    Payment.objects.create(amount=1)
    return HttpResponse(b'{"ok": true}', content_type="application/json", status=202)


class PaymentAPIView(APIView):
    @idempotent
    def post(self, request):
        return _create(request)


class PaymentCreateView(IdempotencyMixin, generics.ListCreateAPIView):
    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer
    idempotency_options = {"required": True, "key_pattern": r"[0-9a-f-]{36}"}


class PaymentViewSet(viewsets.ModelViewSet):
    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer

    @idempotent(required=True)
    def create(self, request, *args, **kwargs):
        return super().create(request, *args, **kwargs)

    @action(detail=False, methods=["post"])
    @idempotent
    def refund(self, request):
        return _create(request, reference="refund")


class MixinViewSet(IdempotencyMixin, viewsets.ModelViewSet):
    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer

    @action(detail=False, methods=["post"])
    def bulk(self, request):
        return _create(request, reference="bulk")


class PrivateView(APIView):
    permission_classes = [IsAuthenticated]

    @idempotent
    def post(self, request):
        return _create(request)


class ThrottledView(APIView):
    throttle_classes = [AnonRateThrottle]
    throttle_scope = "anon"

    @idempotent
    def post(self, request):
        return _create(request)
