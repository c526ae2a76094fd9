from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    # The admin shows the idempotency records: create a user for it with
    # `python manage.py createsuperuser`.
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # GET idempotency/keys/<key>: what became of a key (docs/recipes/lookup.md).
    path("idempotency/", include("django_idempotency.urls")),
    path("", include("sample_project.demo.urls")),
]
