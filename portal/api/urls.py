from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from portal.api import packs, views

router = DefaultRouter()
router.register("access-requests", views.AccessRequestViewSet, basename="access-request")
router.register("query-approvals", views.QueryApprovalViewSet, basename="query-approval")
router.register("grants", views.GrantViewSet, basename="grant")
router.register("accounts", views.AccountViewSet, basename="account")
router.register("incidents", views.IncidentViewSet, basename="incident")
router.register("quarantines", views.QuarantineViewSet, basename="quarantine")
router.register("audit", views.AuditViewSet, basename="audit")
router.register("evidence-packs", packs.EvidencePackViewSet, basename="evidence-pack")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
]
