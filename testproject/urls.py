"""URLs of the test and demo project. The tests serve ``testproject.testing_urls``."""

from django.urls import include, path

urlpatterns = [
    path("", include("testproject.demo.urls")),
    path("broadcast/", include("broadcast_app.urls")),
]
