from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from portal.permissions import user_roles


def portal(request: HttpRequest) -> dict[str, Any]:
    roles = user_roles(getattr(request, "user", None))
    return {"portal_roles": roles}
