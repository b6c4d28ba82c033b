"""Incident response (IR-4): quarantines, automatic incidents, killing a live session."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal.forms import QuarantineForm, ReasonForm
from portal.models import GatewaySession, Incident, Quarantine
from portal.roles import Role
from portal.services.incidents import (
    IncidentError,
    incident_lift,
    quarantine_create,
    quarantine_lift,
)
from portal.services.sessions import session_kill, sessions_live
from portal.views._base import act_with_reason, has_role, meta_from_request, role_required


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
                user = get_user_model().objects.filter(username=data["username"]).first()
                if user is None:
                    form.add_error("username", "No such account.")
            if not form.errors:
                try:
                    quarantine_create(user=user, connection=data["connection"],
                                      reason=data["reason"], by=request.user,
                                      meta=meta_from_request(request))
                except IncidentError as exc:
                    form.add_error(None, str(exc))
                else:
                    messages.success(request, "Quarantined. Gateways drop it within a second.")
                    return redirect("portal:incidents")
    return render(request, "portal/incidents.html", {
        "form": form, "reason_form": ReasonForm(),
        "incidents": Incident.objects.select_related("user", "reviewed_by")[:200],
        "quarantines": Quarantine.objects.filter(lifted_at__isnull=True)
        .select_related("user", "connection", "created_by"),
        "lifted": Quarantine.objects.filter(lifted_at__isnull=False)
        .select_related("user", "connection", "created_by")[:50],
        "live_sessions": sessions_live()[:200],
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

    act_with_reason(request, missing="Give a reason for lifting the quarantine.", act=lift,
                    errors=(IncidentError,))
    return redirect("portal:incidents")


@require_POST
@role_required(Role.ADMIN)
def incident_lift_view(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(Incident, pk=pk)

    def lift(comment: str) -> str:
        incident_lift(incident=incident, by=request.user, comment=comment,
                      meta=meta_from_request(request))
        return f"Incident #{incident.pk} reviewed and lifted."

    act_with_reason(request, missing="Record what the review found.", act=lift,
                    errors=(IncidentError,))
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
