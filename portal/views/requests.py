"""Engineers: request access, follow the state of their requests (and held queries)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal.forms import AccessRequestForm
from portal.models import AccessRequest
from portal.roles import Role
from portal.selectors.queues import access_requests_mine, query_approvals_mine
from portal.services.access_requests import access_request_cancel, access_request_create
from portal.views._base import meta_from_request, role_required, service_call


def _mine(request: HttpRequest) -> dict:
    return {"my_requests": access_requests_mine(request.user)[:50],
            "my_queries": query_approvals_mine(request.user)[:20]}


@role_required(Role.ENGINEER)
def requests_page(request: HttpRequest) -> HttpResponse:
    form = AccessRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and service_call(
            request, lambda: access_request_create(
                requester=request.user, meta=meta_from_request(request), **form.cleaned_data),
            form=form) is not None:
        messages.success(request, "Request sent to the approvers.")
        return redirect("portal:requests")
    return render(request, "portal/requests.html", {"form": form, **_mine(request)})


@role_required(Role.ENGINEER)
def requests_fragment(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/_my_requests.html", _mine(request))


@require_POST
@role_required(Role.ENGINEER)
def request_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    req = get_object_or_404(AccessRequest, pk=pk, requester=request.user)
    if service_call(request, lambda: access_request_cancel(
            access_request=req, by=request.user, meta=meta_from_request(request))) is not None:
        messages.success(request, f"Request #{req.pk} withdrawn.")
    return redirect("portal:requests")
