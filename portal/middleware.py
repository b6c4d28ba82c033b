"""MFA is required for the admin and approver roles (IA-2(1)): members of those groups who have
no TOTP authenticator are sent to enrol before they can do anything else in the portal. Every
403 and 405 the portal answers is recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from portal.config import portal_config

# Sign-in, sign-out and the MFA pages themselves must stay reachable, as must static files.
_EXEMPT_PREFIXES = ("/accounts/", "/static/", "/healthz", "/mcp/")


def user_needs_mfa_enrolment(user: object) -> bool:
    from allauth.mfa.models import Authenticator

    if not getattr(user, "is_authenticated", False):
        return False
    required = set(portal_config().mfa_required_roles)
    groups: Any = getattr(user, "groups", None)
    in_scope = getattr(user, "is_superuser", False) or groups.filter(name__in=required).exists()
    if not in_scope:
        return False
    return not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


class MfaRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if not path.startswith(_EXEMPT_PREFIXES) and user_needs_mfa_enrolment(request.user):
            if path.startswith("/api/"):
                return JsonResponse({"detail": "Enrol a TOTP authenticator in the portal first "
                                               "(required for admins and approvers).",
                                     "code": "mfa_required"}, status=403)
            target = reverse("mfa_activate_totp")
            return redirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)


# Refusals every request can meet: a role or CSRF check (403), a method a view does not take
# (405). Each is an attempt, recorded with who made it (AU-2, AC-3).
_RECORDED_REFUSALS = {403: "request_forbidden", 405: "method_not_allowed"}


class RefusalRecordingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        action = _RECORDED_REFUSALS.get(response.status_code)
        if getattr(response, "refusal_recorded", False):
            action = None  # the service recorded it, with its reason (portal.api.exceptions)
        if action is not None and not request.path_info.startswith(("/mcp/", "/static/")):
            from portal.edge import meta_from_request
            from portal.services.events import portal_event

            user: Any = getattr(request, "user", None)
            signed_in = bool(getattr(user, "is_authenticated", False))
            portal_event(action, by=user if signed_in else None,
                         actor=None if signed_in else "", meta=meta_from_request(request),
                         decision="deny",
                         detail={"method": request.method[:16], "path": request.path[:500],
                                 "status": response.status_code})
        return response
