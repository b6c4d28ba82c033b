"""Approvers: the queues of pending access requests and held queries; approve or deny."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal.forms import DecisionForm
from portal.models import AccessRequest, QueryApproval
from portal.roles import Role
from portal.selectors.queues import (
    access_requests_pending,
    query_approval_get,
    query_approvals_pending,
)
from portal.services.access_requests import access_request_decide
from portal.services.approvals import query_approval_decide
from portal.views._base import form_act, has_role, meta_from_request, role_required


def _past(decision: str) -> str:
    return {"approve": "approved", "deny": "denied"}[decision]


def _queues(request: HttpRequest) -> dict:
    return {"access_requests": access_requests_pending(for_user=request.user),
            "query_approvals": query_approvals_pending(for_user=request.user)}


@role_required(Role.APPROVER)
def approvals_page(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/approvals.html", _queues(request))


@role_required(Role.APPROVER)
def approvals_fragment(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/_queues.html", _queues(request))


@require_POST
@role_required(Role.APPROVER)
def access_request_decide_view(request: HttpRequest, pk: int) -> HttpResponse:
    req = get_object_or_404(AccessRequest, pk=pk)

    def decide(data: dict[str, Any]) -> str:
        access_request_decide(access_request=req, by=request.user,
                              approve=data["decision"] == "approve", comment=data["comment"],
                              meta=meta_from_request(request))
        return f"Access request #{req.pk} {_past(data['decision'])}."

    form_act(request, DecisionForm(request.POST), act=decide)
    return redirect("portal:approvals")


@role_required()
def query_approval_page(request: HttpRequest, pk: int) -> HttpResponse:
    """One held query: the link the gateway gives the caller. Approvers decide here; the caller
    who opens it sees their own request's status (and an approver's reason)."""
    approval = query_approval_get(pk)
    if approval is None:
        raise Http404("No such held query")
    own = approval.requester_id == request.user.pk
    if not own and not has_role(request.user, Role.APPROVER):
        raise PermissionDenied("Only approvers and the caller may open this held query.")
    return render(request, "portal/query_approval.html",
                  {"approval": approval, "own": own, "form": DecisionForm()})


@require_POST
@role_required(Role.APPROVER)
def query_approval_decide_view(request: HttpRequest, pk: int) -> HttpResponse:
    approval = get_object_or_404(QueryApproval, pk=pk)

    def decide(data: dict[str, Any]) -> str:
        query_approval_decide(approval=approval, approver=request.user,
                              approve=data["decision"] == "approve", comment=data["comment"],
                              meta=meta_from_request(request))
        return f"Query #{approval.pk} {_past(data['decision'])}."

    if form_act(request, DecisionForm(request.POST), act=decide) == "invalid":
        return redirect("portal:query_approval", pk=pk)
    return redirect("portal:approvals")
