from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from portal.permissions import has_role


class PortalRoles(BasePermission):
    """`view.roles` maps an action name (or "*") to the portal roles allowed to call it."""

    message = "Your roles do not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated and request.user.is_active):
            return False
        spec: dict[str, tuple[str, ...]] = getattr(view, "roles", {})
        action = getattr(view, "action", None) or request.method.lower()
        allowed = spec.get(action, spec.get("*"))
        if allowed is None:
            return False  # deny by default: an action nobody listed is nobody's
        return has_role(request.user, *allowed)
