from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from portal.models import Connection


@login_required
def home(request: HttpRequest) -> HttpResponse:
    connections = Connection.objects.filter(enabled=True)
    groups = sorted(request.user.groups.values_list("name", flat=True))
    gateway_base = request.build_absolute_uri("/mcp/")
    return render(request, "portal/home.html",
                  {"connections": connections, "groups": groups, "gateway_base": gateway_base})


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
