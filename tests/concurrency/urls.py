from django.urls import path

from . import views

urlpatterns = [
    path("plain/", views.plain),
    path("atomic/", views.atomic),
    path("async-plain/", views.async_plain),
    path("async-atomic/", views.async_atomic),
]
