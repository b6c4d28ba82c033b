"""Who holds which portal role. Roles are Django groups (portal.roles.Role); a superuser counts
as an admin. Used by views, API permissions and services alike."""

from __future__ import annotations

from typing import Any

from portal.roles import Role

ALL_ROLES = frozenset(r.value for r in Role)


def user_roles(user: Any) -> frozenset[str]:
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return frozenset()
    cached = getattr(user, "_wardgate_roles", None)
    if cached is None:
        names = set(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        if user.is_superuser:
            names.add(Role.ADMIN.value)
        cached = frozenset(names)
        user._wardgate_roles = cached
    return cached


def has_role(user: Any, *roles: str) -> bool:
    return bool(user_roles(user) & {str(r) for r in roles})
