"""The URLconf a gateway-only process (`manage.py serve --only gateway`) resolves /healthz in:
that one URL, with the same view as wardgate.urls. Every other path is answered 404 before
Django sees it (wardgate.readiness.health_only), so nothing else could match there; importing
the portal's URLconf would load every view, DRF, drf-spectacular and reportlab (~29 MiB per
worker) for one probe. (A request Django refuses before resolving it, e.g. for a Host not in
WARDGATE_ALLOWED_HOSTS, still looks up its error handler in the portal's URLconf: the same 400
as before, at the old cost. Probes use /readyz, which is outside Django.)"""

from django.urls import path

from portal.views.home import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
]
