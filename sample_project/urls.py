from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # The admin shows the idempotency records: create a user for it with
    # `python manage.py createsuperuser`.
    path("admin/", admin.site.urls),
    path("", include("sample_project.demo.urls")),
]
