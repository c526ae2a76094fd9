from django.conf import settings
from django.urls import path

from . import views

urlpatterns = [
    path("plain/", views.PlainOrders.as_view()),
    path("floor/", views.FloorOrders.as_view()),
    path("floor-atomic/", views.FloorAtomicOrders.as_view()),
]

# benchsite.settings has PEER; the django-stubs plugin reads tests.settings.
if settings.PEER:  # type: ignore[misc]
    from peers import peer_urlpatterns

    urlpatterns += peer_urlpatterns(settings.PEER)  # type: ignore[misc]
else:
    from . import ours_views

    urlpatterns += [
        path("ours/", ours_views.OursOrders.as_view()),
        path("ours-atomic/", ours_views.OursAtomicOrders.as_view()),
    ]
