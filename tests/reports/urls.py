"""The reports endpoints mounted as wardgate/urls.py will mount them."""

from django.urls import include, path

urlpatterns = [path("reports/", include("reports.urls"))]
