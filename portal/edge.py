"""Built at the edge: what every page view and API action takes from the HTTP request and hands
to a service. Services never look at requests (nor import the API); they get a RequestMeta."""

from __future__ import annotations

from typing import Any

from portal.services.events import RequestMeta

__all__ = ["RequestMeta", "meta_from_request"]


def meta_from_request(request: Any, *, auth_method: str | None = None) -> RequestMeta:
    """Where this request came from: client address, user agent, and how it authenticated (a
    portal API token through DRF, else the signed-in session; `auth_method` when the caller
    knows better, e.g. an SSO sign-in)."""
    if auth_method is None:
        # Imported here: portal.signals imports this module in every process, and the API's
        # DRF and drf-spectacular cost a gateway worker ~10 MiB it never uses.
        from portal.api.auth import ApiTokenAuthentication

        authenticator = getattr(request, "successful_authenticator", None)
        auth_method = ("api_token" if isinstance(authenticator, ApiTokenAuthentication)
                       else "session")
    meta = getattr(request, "META", {})
    return RequestMeta(source_ip=str(meta.get("REMOTE_ADDR", ""))[:64],
                       user_agent=str(meta.get("HTTP_USER_AGENT", ""))[:512],
                       auth_method=auth_method)
