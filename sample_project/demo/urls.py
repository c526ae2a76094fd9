from django.urls import include, path
from rest_framework.routers import SimpleRouter

from django_idempotency.lookup import OutcomeLookupView

from .views import asynctransfers, checkout, ietf, index, lithic, orzcash, stannp, txcloud

ietf_router = SimpleRouter()
ietf_router.register("payments", ietf.PaymentViewSet, basename="ietf-payment")
lithic_router = SimpleRouter()
lithic_router.register("cards", lithic.CardViewSet, basename="lithic-card")

urlpatterns = [
    path("", index.index, name="index"),
    path("ietf/", include(ietf_router.urls)),
    path("lithic/", include(lithic_router.urls)),
    path("txcloud/identity/verify", txcloud.VerifyView.as_view(), name="txcloud-verify"),
    path("txcloud/identity/sessions", txcloud.SessionView.as_view(), name="txcloud-sessions"),
    path(
        "txcloud/identity/checks/<int:pk>",
        txcloud.IdentityCheckView.as_view(),
        name="txcloud-check",
    ),
    # TXCloud's keys live in the API key's scope, with its key rules: its own
    # look-up (the project-wide one is in sample_project/urls.py).
    path(
        "txcloud/idempotency/keys/<path:key>",
        OutcomeLookupView.as_view(idempotency_options=txcloud.OPTIONS),
        name="txcloud-key-outcome",
    ),
    path("stannp/letters/", stannp.letters, name="stannp-letters"),
    path("orzcash/transfers/", orzcash.TransferView.as_view(), name="orzcash-transfers"),
    path("async/transfers/", asynctransfers.transfers, name="async-transfers"),
    path("checkout/", checkout.page, name="checkout"),
    path("checkout/session/", checkout.session, name="checkout-session"),
    path("checkout/payments/", checkout.payments, name="checkout-payments"),
]
