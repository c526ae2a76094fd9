from adrf.routers import DefaultRouter as AsyncRouter
from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from tests.testapp import async_views, views

router = DefaultRouter()
router.register("viewset", views.PaymentViewSet, basename="viewset")
router.register("mixin-viewset", views.MixinViewSet, basename="mixin-viewset")
async_router = AsyncRouter()
async_router.register("cards", async_views.CardViewSet, basename="async-cards")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("function/", views.function_view),
    path("letters/", views.letter_view),
    path("atomic/", views.atomic_view),
    path("per-endpoint/a/", views.per_endpoint_a),
    path("per-endpoint/b/", views.per_endpoint_b),
    path("binary/", views.binary_view),
    path("streaming/", views.streaming_view),
    path("plain-json/", views.plain_json_view),
    path("raw-body/", views.raw_body_view),
    path("apiview/", views.PaymentAPIView.as_view()),
    path("generic/", views.PaymentCreateView.as_view()),
    path("private/", views.PrivateView.as_view()),
    path("throttled/", views.ThrottledView.as_view()),
    path("admin-only/", views.AdminOnlyView.as_view()),
    path("private-function/", views.private_function_view),
    path("private-function-inner/", views.private_function_view_inner),
    path("mixin-override/", views.MixinOverrideView.as_view()),
    path("bare/", views.bare_view),
    path("headers/", views.headers_view),
    path("items/<str:slug>/", views.item_view),
    path("nul-scope/", views.nul_scope_view),
    path("checkout/", views.checkout_page),
    path("guest-orders/", views.guest_order_view),
    *(path(f"options/{name}/", view) for name, view in views.option_views.items()),
    path("async/function/", async_views.function_view),
    path("async/atomic/", async_views.atomic_view),
    path("async/apiview/", async_views.PaymentAPIView.as_view()),
    path("async/", include(async_router.urls)),
    path("", include(router.urls)),
]
