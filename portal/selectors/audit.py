"""Reading the audit trail (AU-6): search, one record, calls per day, export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from audit.models import AuditRecord

CALL_EVENTS = ("mcp.outcome", "mcp.rejected")
DECISIONS = ("allow", "deny", "hold", "withheld", "error", "info")
EXPORT_FIELDS = ("seq", "at", "event", "request_id", "actor", "auth_method", "source_ip",
                 "user_agent", "connection", "mcp_session_id", "jsonrpc_method", "tool",
                 "arguments", "sql_text", "sql_fingerprint", "decision", "reasons", "masking",
                 "row_count", "result_bytes", "response_body", "response_sha256",
                 "upstream_latency_ms", "detail", "prev_hash", "hash")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    actor: str = ""
    connection: str = ""
    decision: str = ""
    tool: str = ""
    table: str = ""
    event: str = ""

    def as_detail(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                for k, v in asdict(self).items() if v}


def audit_search(f: AuditFilter) -> QuerySet[AuditRecord]:
    qs = AuditRecord.objects.all()
    if f.since:
        qs = qs.filter(at__gte=f.since)
    if f.until:
        qs = qs.filter(at__lt=f.until)
    if f.actor:
        qs = qs.filter(actor=f.actor)
    if f.connection:
        qs = qs.filter(connection=f.connection)
    if f.decision:
        qs = qs.filter(decision=f.decision)
    if f.tool:
        qs = qs.filter(tool=f.tool)
    if f.event:
        qs = qs.filter(event__startswith=f.event)
    if f.table:
        # detail.sql.tables holds fully qualified lower-case names; match a part of one.
        qs = qs.filter(detail__sql__tables__icontains=f.table.lower())
    return qs.order_by("-seq")


def audit_record(seq: int) -> AuditRecord | None:
    return AuditRecord.objects.filter(seq=seq).first()


def audit_related(record: AuditRecord) -> QuerySet[AuditRecord]:
    """The other records of the same request (decision, outcome, approvals)."""
    if not record.request_id:
        return AuditRecord.objects.none()
    return AuditRecord.objects.filter(request_id=record.request_id).exclude(pk=record.pk) \
        .order_by("seq")


def calls_per_day(f: AuditFilter, *, days: int = 30) -> list[dict[str, Any]]:
    """Gateway calls per day by decision, for the chart (the filter's range, else 30 days)."""
    until = f.until or timezone.now()
    since = f.since or (until - dt.timedelta(days=days))
    qs = audit_search(AuditFilter(**{**asdict(f), "since": since, "until": until}))
    rows = (qs.filter(event__in=CALL_EVENTS).order_by()
            .annotate(day=TruncDate("at")).values("day", "decision")
            .annotate(n=Count("id")).order_by("day"))
    by_day: dict[dt.date, dict[str, int]] = {}
    for row in rows:
        by_day.setdefault(row["day"], {})[row["decision"] or "none"] = row["n"]
    first = max(since.date(), until.date() - dt.timedelta(days=89))
    span = [first + dt.timedelta(days=i) for i in range((until.date() - first).days + 1)]
    return [{"day": day, "counts": by_day.get(day, {}), "total": sum(by_day.get(day, {}).values())}
            for day in span]


def _row(record: AuditRecord) -> dict[str, Any]:
    out = {}
    for name in EXPORT_FIELDS:
        value = getattr(record, name)
        out[name] = value.isoformat() if isinstance(value, dt.datetime) else value
    return out


def _records(qs: QuerySet[AuditRecord]) -> Iterator[AuditRecord]:
    # Keyset pagination in chain order: flat memory, no long transaction.
    last = None
    base = qs.order_by("seq")
    while True:
        page = list((base.filter(seq__gt=last) if last is not None else base)[:1000])
        yield from page
        if len(page) < 1000:
            return
        last = page[-1].seq


def export_jsonl(qs: QuerySet[AuditRecord]) -> Iterator[str]:
    for record in _records(qs):
        yield json.dumps(_row(record), ensure_ascii=False, default=str) + "\n"


# A cell a spreadsheet would run as a formula (OWASP "CSV injection"): =, +, -, @, tab, CR,
# and their full-width forms, also after leading spaces.
_FORMULA_START = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell a spreadsheet shows as text: a string that would start a formula
    gets a leading apostrophe. Numbers stay numbers."""
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    if value is None:
        return ""
    if isinstance(value, str) and value.lstrip(" ").startswith(_FORMULA_START):
        return "'" + value
    return value


def export_csv(qs: QuerySet[AuditRecord]) -> Iterator[str]:
    """CSV for spreadsheets; cells that would be formulas are neutralised (csv_cell)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    yield buffer.getvalue()
    for record in _records(qs):
        buffer.seek(0)
        buffer.truncate()
        row = _row(record)
        writer.writerow([csv_cell(row[k]) for k in EXPORT_FIELDS])
        yield buffer.getvalue()
