"""One ASGI application: the MCP gateway at /mcp/... and its metrics at /metrics, the Django
portal everywhere else."""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

from portal.gateway_store import PortalGatewayStore  # noqa: E402
from proxy.app import GatewayApp  # noqa: E402
from wardgate.config import serve_config  # noqa: E402
from wardgate.readiness import health_only, not_served, readiness_app  # noqa: E402


def build_application(gateway: GatewayApp, only: str | None = None) -> Any:
    """`only` (default WARDGATE_SERVE_ONLY, which `manage.py serve --only` sets): "" serves
    both; "gateway" answers 404 for the portal's URLs; "portal" answers 404 at /mcp/ and starts
    no gateway. /healthz and /readyz answer in every case."""
    only = serve_config().only if only is None else only
    portal: Any
    if only == "gateway":
        portal = health_only()
    else:
        portal = get_asgi_application()
        # The portal's URLconf (every view, DRF, drf-spectacular) is imported while the worker
        # starts, not by the first request, which would otherwise wait seconds for it.
        import_module(settings.ROOT_URLCONF)
        if settings.DEBUG:
            from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

            portal = ASGIStaticFilesHandler(portal)
    if only == "portal":
        gateway = not_served  # type: ignore[assignment]

    async def application(scope, receive, send):  # type: ignore[no-untyped-def]
        path = scope.get("path", "")
        if path == "/readyz" and scope["type"] == "http":
            await readiness_app(scope, receive, send)
        elif scope["type"] == "lifespan" or path.startswith("/mcp/") or path == "/metrics":
            await gateway(scope, receive, send)
        else:
            await portal(scope, receive, send)

    return application


gateway = GatewayApp(store=PortalGatewayStore())
application = build_application(gateway)
