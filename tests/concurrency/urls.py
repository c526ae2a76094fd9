from django.urls import path

from . import views

urlpatterns = [
    path("plain/", views.plain),
    path("atomic/", views.atomic),
    path("async-plain/", views.async_plain),
    path("async-atomic/", views.async_atomic),
    path("wait/", views.wait),
    path("wait-short/", views.wait_short),
    path("wait-long/", views.wait_long),
    path("async-wait-long/", views.async_wait_long),
    path("async-wait/", views.async_wait),
    path("waiters/", views.waiters),
]
