from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from portal.permissions import user_roles
from portal.roles import Role
from portal.selectors.policy import connection_list
from portal.selectors.queues import access_requests_pending, query_approvals_pending


@login_required
def home(request: HttpRequest) -> HttpResponse:
    connections = connection_list(enabled=True)
    groups = sorted(request.user.groups.values_list("name", flat=True))
    gateway_base = request.build_absolute_uri("/mcp/")
    roles = user_roles(request.user)
    pending = None
    if Role.APPROVER in roles:
        pending = (access_requests_pending(for_user=request.user).count()
                   + len(query_approvals_pending(for_user=request.user)))
    return render(request, "portal/home.html",
                  {"connections": connections, "groups": groups, "gateway_base": gateway_base,
                   "pending": pending})


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
