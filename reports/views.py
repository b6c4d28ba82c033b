"""JSON endpoints for evidence packs; the portal's pages (list, progress, download buttons) call
them. Auditors and admins only. Thin: parse, call a service or selector, answer."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from reports.selectors import (
    control_choices,
    evidence_pack_get,
    evidence_pack_list,
    evidence_pack_path,
    evidence_pack_progress,
    pack_viewer,
)
from reports.services import (
    PackRequestError,
    evidence_pack_record_download,
    evidence_pack_request,
    period_from_dates,
)


def _denied(request: HttpRequest) -> JsonResponse | None:
    if not request.user.is_authenticated:
        return JsonResponse({"error": "sign in first"}, status=401)
    if not pack_viewer(request.user):
        return JsonResponse({"error": "evidence packs are for auditors and admins"}, status=403)
    return None


@require_GET
def pack_list(request: HttpRequest) -> JsonResponse:
    if (refused := _denied(request)) is not None:
        return refused
    return JsonResponse({"packs": [evidence_pack_progress(p) for p in evidence_pack_list()],
                         "controls": [{"id": c, "title": t} for c, t in control_choices()]})


@require_GET
def pack_progress(request: HttpRequest, pk: int) -> JsonResponse:
    if (refused := _denied(request)) is not None:
        return refused
    pack = evidence_pack_get(pk=pk)
    if pack is None:
        return JsonResponse({"error": "no such pack"}, status=404)
    data = evidence_pack_progress(pack)
    if evidence_pack_path(pack) is not None:
        data["download_url"] = request.build_absolute_uri("download")  # beside this URL
    return JsonResponse(data)


def _body(request: HttpRequest) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            raise PackRequestError("the body is not JSON") from None
        if not isinstance(data, dict):
            raise PackRequestError("the body must be a JSON object")
        return data
    return {"from": request.POST.get("from", ""), "to": request.POST.get("to", ""),
            "controls": request.POST.getlist("controls")}


@require_POST
def pack_create(request: HttpRequest) -> JsonResponse:
    """POST {"from": "YYYY-MM-DD", "to": "YYYY-MM-DD", "controls": ["AC-2", ...]} (JSON or form;
    no controls = all): queues the pack and answers 202 with its progress."""
    if (refused := _denied(request)) is not None:
        return refused
    try:
        data = _body(request)
        first, last = dt.date.fromisoformat(str(data.get("from"))), dt.date.fromisoformat(
            str(data.get("to")))
        controls = data.get("controls") or []
        if isinstance(controls, str):
            controls = controls.split(",")
        start, end = period_from_dates(first, last)
        pack = evidence_pack_request(period_start=start, period_end=end,
                                     controls=[str(c) for c in controls],
                                     created_by=request.user)
    except (PackRequestError, ValueError) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(evidence_pack_progress(pack), status=202)


@require_GET
def pack_download(request: HttpRequest, pk: int) -> HttpResponse:
    if (refused := _denied(request)) is not None:
        return refused
    pack = evidence_pack_get(pk=pk)
    path = evidence_pack_path(pack) if pack is not None else None
    if pack is None or path is None:
        return JsonResponse({"error": "no such pack, or it is not ready"}, status=404)
    evidence_pack_record_download(pack=pack, user=request.user,
                                  source_ip=str(request.META.get("REMOTE_ADDR", "")),
                                  user_agent=str(request.META.get("HTTP_USER_AGENT", "")))
    response = FileResponse(path.open("rb"), as_attachment=True, filename=path.name,
                            content_type="application/zip")
    response["X-Pack-SHA256"] = pack.sha256
    return response
