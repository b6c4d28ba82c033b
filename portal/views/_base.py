"""Shared view helpers: role checks, request metadata, and the one way a page shows a service's
refusal (ServiceError): on the form the person filled in, or as a page message."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Literal, TypeVar

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.forms import BaseForm
from django.http import HttpRequest, HttpResponse

from portal.edge import meta_from_request
from portal.permissions import has_role, user_roles
from portal.services.errors import ServiceError

__all__ = ["act_with_reason", "form_act", "has_role", "meta_from_request", "role_required",
           "service_call", "user_roles"]


View = Callable[..., HttpResponse]
T = TypeVar("T")
Outcome = Literal["invalid", "refused", "done"]


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


def _errors_text(errors: dict[str, list[str]]) -> str:
    return "; ".join(e for errs in errors.values() for e in errs)


def form_add_service_error(form: BaseForm, exc: ServiceError) -> None:
    """The refusal on the form: each field error on its field (one the form lacks is named in
    the message at the top), or the message at the top."""
    if not exc.field_errors:
        form.add_error(None, exc.message)
        return
    for field, errors in exc.field_errors.items():
        target = field if field in form.fields else None
        for error in errors:
            form.add_error(target, error if target else f"{field}: {error}")


def service_call(request: HttpRequest, call: Callable[[], T], *, form: BaseForm | None = None,
                 prefix: str = "") -> T | None:
    """Run one service call and return what it returns; None when the service refused
    (ServiceError), which is then shown on `form`, or without a form as a page message
    (`prefix` + the field errors, else the message). Other errors propagate (fail closed)."""
    try:
        return call()
    except ServiceError as exc:
        if form is not None:
            form_add_service_error(form, exc)
        else:
            messages.error(request, prefix + (_errors_text(exc.field_errors) or exc.message))
        return None


def form_act(request: HttpRequest, form: BaseForm, *, act: Callable[[dict[str, Any]], str],
             invalid: str | None = None, prefix: str = "") -> Outcome:
    """A POSTed action whose outcome is a page message (the view then redirects): an invalid
    form shows `invalid` (default: `prefix` + the form's errors); else `act(cleaned_data)` runs
    the service and its return value is the success message; a refusal is shown as by
    `service_call`."""
    if not form.is_valid():
        messages.error(request, invalid if invalid is not None
                       else prefix + _errors_text(form.errors))
        return "invalid"
    done = service_call(request, lambda: act(form.cleaned_data), prefix=prefix)
    if done is None:
        return "refused"
    messages.success(request, done)
    return "done"


def act_with_reason(request: HttpRequest, *, missing: str, act: Callable[[str], str]) -> Outcome:
    """Run `act(reason)` when the POST carries a reason (every admin action states why); the
    outcome — `act`'s message, or the service's refusal — is shown to the admin."""
    from portal.forms import ReasonForm

    return form_act(request, ReasonForm(request.POST), invalid=missing,
                    act=lambda data: act(data["reason"]))
