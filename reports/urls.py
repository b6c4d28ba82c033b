"""Evidence-pack endpoints. Include with: path("reports/", include("reports.urls"))."""

from django.urls import path

from reports import views

app_name = "reports"
urlpatterns = [
    path("packs/", views.pack_list, name="pack_list"),
    path("packs/new", views.pack_create, name="pack_create"),
    path("packs/<int:pk>/", views.pack_progress, name="pack_progress"),
    path("packs/<int:pk>/download", views.pack_download, name="pack_download"),
]
