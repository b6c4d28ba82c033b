"""Incident response (IR-4): quarantines, automatic incidents, killing a live session."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal.forms import QuarantineForm, ReasonForm
from portal.models import GatewaySession, Incident, Quarantine
from portal.roles import Role
from portal.selectors.accounts import account_get_by_username
from portal.selectors.incidents import incident_list, quarantine_list
from portal.selectors.sessions import gateway_sessions_live
from portal.services.incidents import incident_lift, quarantine_create, quarantine_lift
from portal.services.sessions import session_kill
from portal.views._base import (
    act_with_reason,
    has_role,
    meta_from_request,
    role_required,
    service_call,
)


@role_required(Role.ADMIN, Role.AUDITOR)
def incidents_page(request: HttpRequest) -> HttpResponse:
    form = QuarantineForm(request.POST or None)
    if request.method == "POST":
        if not has_role(request.user, Role.ADMIN):
            return HttpResponse("Only admins act on incidents.", status=403)
        if form.is_valid():
            data = form.cleaned_data
            user = None
            if data["username"]:
                user = account_get_by_username(data["username"])
                if user is None:
                    form.add_error("username", "No such account.")
            if not form.errors and service_call(request, lambda: quarantine_create(
                    user=user, connection=data["connection"], reason=data["reason"],
                    by=request.user, meta=meta_from_request(request)), form=form) is not None:
                messages.success(request, "Quarantined. Gateways drop it within a second.")
                return redirect("portal:incidents")
    return render(request, "portal/incidents.html", {
        "form": form, "reason_form": ReasonForm(),
        "incidents": incident_list()[:200],
        "quarantines": quarantine_list(lifted=False),
        "lifted": quarantine_list(lifted=True)[:50],
        "live_sessions": gateway_sessions_live()[:200],
        "can_act": has_role(request.user, Role.ADMIN),
    })


@require_POST
@role_required(Role.ADMIN)
def quarantine_lift_view(request: HttpRequest, pk: int) -> HttpResponse:
    q = get_object_or_404(Quarantine, pk=pk)

    def lift(reason: str) -> str:
        quarantine_lift(quarantine=q, by=request.user, reason=reason,
                        meta=meta_from_request(request))
        return "Quarantine lifted."

    act_with_reason(request, missing="Give a reason for lifting the quarantine.", act=lift)
    return redirect("portal:incidents")


@require_POST
@role_required(Role.ADMIN)
def incident_lift_view(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(Incident, pk=pk)

    def lift(comment: str) -> str:
        incident_lift(incident=incident, by=request.user, comment=comment,
                      meta=meta_from_request(request))
        return f"Incident #{incident.pk} reviewed and lifted."

    act_with_reason(request, missing="Record what the review found.", act=lift)
    return redirect("portal:incidents")


@require_POST
@role_required(Role.ADMIN)
def session_kill_view(request: HttpRequest, pk: int) -> HttpResponse:
    session = get_object_or_404(GatewaySession, pk=pk)

    def kill(reason: str) -> str:
        session_kill(session=session, by=request.user, reason=reason)
        return "Session kill sent to every gateway process."

    act_with_reason(request, missing="Give a reason for killing the session.", act=kill)
    return redirect(request.POST.get("next") or "portal:incidents")
