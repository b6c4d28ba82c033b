"""Shared view helpers: role checks, request metadata, service errors as form errors."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from portal.edge import meta_from_request
from portal.permissions import has_role, user_roles

__all__ = ["has_role", "meta_from_request", "role_required", "user_roles"]


View = Callable[..., HttpResponse]


def role_required(*roles: str) -> Callable[[View], View]:
    """Signed in, active, and holding one of `roles`; else the login page or 403."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if roles and not has_role(request.user, *roles):
                raise PermissionDenied("Your roles do not allow this page.")
            return view(request, *args, **kwargs)

        wrapped.portal_roles = tuple(roles)  # type: ignore[attr-defined]
        return wrapped

    return decorate


def act_with_reason(request: HttpRequest, *, missing: str, act: Callable[[str], str],
                    errors: tuple[type[Exception], ...] = ()) -> None:
    """Run `act(reason)` when the POST carries a reason (every admin action states why); the
    outcome — `act`'s message, or the service's refusal — is shown to the admin."""
    from django.contrib import messages

    from portal.forms import ReasonForm

    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, missing)
        return
    try:
        messages.success(request, act(form.cleaned_data["reason"]))
    except errors as exc:
        messages.error(request, str(exc))
