"""Auditors and admins: search the trail, open a record, export, calls per day (AU-6)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from portal.forms import AuditFilterForm
from portal.roles import Role
from portal.selectors.audit import (
    AuditFilter,
    audit_record,
    audit_related,
    audit_search,
    calls_per_day,
    export_csv,
    export_jsonl,
)
from portal.services.events import portal_event
from portal.views._base import meta_from_request, role_required

CHART_COLOURS = {"allow": "#2e8b57", "deny": "#c0392b", "hold": "#d4a017",
                 "withheld": "#8e44ad", "error": "#7f8c8d", "none": "#bdc3c7", "info": "#3b6fd6"}


def filter_from(params: Any) -> tuple[AuditFilterForm, AuditFilter]:
    form = AuditFilterForm(params or None)
    if not form.is_valid():
        return form, AuditFilter()
    data = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
    for key in ("since", "until"):
        if key in data and timezone.is_naive(data[key]):
            data[key] = timezone.make_aware(data[key], dt.UTC)
    for key in ("actor", "connection", "tool", "table", "event"):
        if key in data:
            data[key] = data[key].strip()
    return form, AuditFilter(**data)


def chart_svg(days: list[dict[str, Any]], *, width: int = 900, height: int = 180) -> str:
    """Stacked bars of calls per day by decision, as an inline SVG (no scripts, no CDN)."""
    if not any(d["total"] for d in days):
        return ""
    top = max(d["total"] for d in days) or 1
    bar = min(40, max(4, (width - 40) // max(len(days), 1) - 4))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 30}" role="img" '
             f'aria-label="Gateway calls per day by decision" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="0" y="12" font-size="11" fill="#667">max {top}/day</text>']
    for i, day in enumerate(days):
        x = 30 + i * (bar + 4)
        y = height
        for decision in ("allow", "deny", "hold", "withheld", "error", "none", "info"):
            n = day["counts"].get(decision, 0)
            if not n:
                continue
            h = max(1, round(n / top * (height - 20)))
            y -= h
            parts.append(f'<rect x="{x}" y="{y}" width="{bar}" height="{h}" '
                         f'fill="{CHART_COLOURS[decision]}"><title>{day["day"]:%Y-%m-%d} '
                         f'{decision}: {n}</title></rect>')
        if len(days) <= 15 or i % max(1, len(days) // 10) == 0:
            parts.append(f'<text x="{x}" y="{height + 14}" font-size="10" fill="#667">'
                         f'{day["day"]:%m-%d}</text>')
    parts.append("</svg>")
    return "".join(parts)


@role_required(Role.AUDITOR, Role.ADMIN)
def audit_page(request: HttpRequest) -> HttpResponse:
    form, f = filter_from(request.GET)
    page = Paginator(audit_search(f), 50).get_page(request.GET.get("page"))
    # Reviewing the trail is itself evidence (AU-6): who searched for what.
    portal_event("audit_searched", by=request.user, meta=meta_from_request(request),
                 detail={"filter": f.as_detail(), "page": page.number,
                         "records": page.paginator.count})
    query = request.GET.copy()
    query.pop("page", None)
    days = calls_per_day(f)
    return render(request, "portal/audit.html", {
        "form": form, "page": page, "query": query.urlencode(), "chart": chart_svg(days),
        "colours": CHART_COLOURS, "days": days})


@role_required(Role.AUDITOR, Role.ADMIN)
def audit_record_page(request: HttpRequest, seq: int) -> HttpResponse:
    record = audit_record(seq)
    portal_event("audit_record_viewed", by=request.user, meta=meta_from_request(request),
                 detail={"seq": seq, "found": record is not None})
    if record is None:
        raise Http404("No such audit record")
    return render(request, "portal/audit_record.html",
                  {"record": record, "related": audit_related(record)})


@role_required(Role.AUDITOR, Role.ADMIN)
def audit_export(request: HttpRequest) -> HttpResponse:
    _, f = filter_from(request.GET)
    fmt = request.GET.get("format", "jsonl")
    if fmt not in ("jsonl", "csv"):
        return HttpResponse("format must be jsonl or csv", status=400)
    qs = audit_search(f)
    # The export is itself recorded (before any row leaves).
    portal_event("audit_exported", by=request.user, meta=meta_from_request(request),
                 detail={"format": fmt, "filter": f.as_detail(), "records": qs.count()})
    stream = export_csv(qs) if fmt == "csv" else export_jsonl(qs)
    response = StreamingHttpResponse(
        stream, content_type="text/csv" if fmt == "csv" else "application/x-ndjson")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="wardgate-audit-{stamp}.{fmt}"'
    return response
