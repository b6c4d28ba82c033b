"""Administrative events in the audit log: account lifecycle, access changes, reviews and exports,
incident handling, audit maintenance; and how fast account disables took effect.

Groups are matched by event name (prefixes), so whatever portal.* / audit.* / approval.* events
the system writes are counted without this module knowing every name; a control whose group is
empty in the period is reported with a gap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Max, Q

from audit.models import AuditRecord
from reports.pack.archive import PackArchive

from .base import GATEWAY_EVENTS, Evidence, PackScope, Reservoir


@dataclass(frozen=True, slots=True)
class EventGroup:
    name: str
    path: str
    title: str
    description: str
    prefixes: tuple[str, ...]
    decisions: tuple[str, ...] = ()  # also records with these decisions (e.g. held calls)

    def condition(self) -> Q:
        q = Q()
        for prefix in self.prefixes:
            q |= Q(event__startswith=prefix)
        for decision in self.decisions:
            q |= Q(decision=decision)
        return q

    def selection_text(self) -> str:
        parts = [f"event LIKE '{p}%'" for p in self.prefixes]
        parts += [f"decision = '{d}'" for d in self.decisions]
        return " OR ".join(parts)

    def matches(self, event: str, decision: str) -> bool:
        return event.startswith(self.prefixes) or decision in self.decisions


ACCOUNT_EVENTS = EventGroup(
    "account-events", "csv/account-events.csv", "Account lifecycle events",
    "Accounts created, provisioned, changed, disabled, re-enabled; tokens issued and revoked; "
    "sign-ins and MFA changes, as the portal recorded them.",
    ("portal.account_", "portal.api_token_", "portal.token_", "portal.mfa_", "portal.login",
     "portal.logout", "portal.user_"),
)
ACCESS_CHANGES = EventGroup(
    "access-changes", "csv/access-changes.csv", "Grant, role and policy changes",
    "Grants created and revoked, roles and policies changed, access requests and their "
    "decisions, connections and tool catalogue changes.",
    ("portal.grant_", "portal.role_", "portal.policy_", "portal.access_request",
     "portal.tool_catalog_", "portal.connection_", "catalog.changed"),
)
REVIEW_EVENTS = EventGroup(
    "review-events", "csv/reviews-and-exports.csv", "Audit reviews and exports",
    "Audit searches and reviews in the portal, evidence packs built and downloaded, SIEM exports.",
    ("portal.audit_", "portal.pack_", "portal.review", "portal.incident_reviewed", "reports.",
     "audit.export", "audit.siem"),
)
INCIDENT_EVENTS = EventGroup(
    "incident-events", "csv/incident-events.csv", "Incident handling",
    "Quarantines placed and lifted, incidents raised and closed, query approvals proposed, "
    "decided and used, and every call held for approval.",
    ("portal.quarantine_", "portal.incident_", "portal.approval_", "approval."),
    decisions=("hold",),
)
AUDIT_EVENTS = EventGroup(
    "audit-events", "csv/audit-maintenance-events.csv", "Audit log maintenance",
    "Records of the audit log's own maintenance: retention purges, legal holds, checkpoints.",
    ("audit.",),
)
GROUPS = (ACCOUNT_EVENTS, ACCESS_CHANGES, REVIEW_EVENTS, INCIDENT_EVENTS, AUDIT_EVENTS)

EVENT_COLUMNS = ("seq", "at", "event", "request_id", "actor", "auth_method", "source_ip",
                 "connection", "tool", "decision", "reason_rules", "subject", "detail", "hash")
_SUBJECT_KEYS = ("account", "username", "target", "user", "approval_id", "grant_id",
                 "quarantine_id", "incident_id", "role", "connection")


def _subject(detail: Any) -> str:
    if not isinstance(detail, dict):
        return ""
    for key in _SUBJECT_KEYS:
        if detail.get(key) not in (None, ""):
            return f"{key}={detail[key]}"
    return ""


def write_event_group(scope: PackScope, archive: PackArchive, group: EventGroup,
                      seqs: list[int] | None, expected: int) -> Evidence:
    """The group's records, in seq order. `seqs`: the members the record stream found (else
    they are selected here); `expected`: their number as counted in SQL."""
    if seqs is None:
        seqs = list(scope.records().filter(group.condition()).order_by("seq")
                    .values_list("seq", flat=True))
    sample = Reservoir(scope.sample_size, scope.seed + 10)
    by_event: dict[str, int] = {}
    fields = ("seq", "at", "event", "request_id", "actor", "auth_method", "source_ip",
              "connection", "tool", "decision", "reasons", "detail", "hash")

    def rows() -> Any:
        for start in range(0, len(seqs), 500):  # under every backend's parameter limit
            chunk = seqs[start:start + 500]
            found = (AuditRecord.objects.filter(seq__in=chunk).order_by("seq")
                     .values_list(*fields))
            for r in found:
                seq, at, event, rid, actor, auth, ip, conn, tool, decision, reasons, detail, h = r
                by_event[event] = by_event.get(event, 0) + 1
                rules = ";".join(str(x.get("rule", "")) for x in reasons or ()
                                 if isinstance(x, dict))
                subject = _subject(detail)
                sample.offer({"seq": seq, "at": at, "event": event, "actor": actor,
                              "decision": decision, "subject": subject, "hash": h})
                yield (seq, at.isoformat(), event, rid, actor, auth, ip, conn, tool, decision,
                       rules, subject, json.dumps(detail, sort_keys=True, separators=(",", ":")), h)

    entry = archive.write_csv(group.path, EVENT_COLUMNS, rows())
    return Evidence(
        name=group.name, path=entry.path, title=group.title, description=group.description,
        selection=f"SELECT * FROM {scope.selection} AND ({group.selection_text()}) ORDER BY seq",
        rows=entry.rows, expected_rows=expected, sha256=entry.sha256, bytes=entry.bytes,
        stats={"by_event": dict(sorted(by_event.items()))}, samples=sample.sample(),
    )


DISABLE_EVENTS = ("portal.account_disabled", "portal.account_disabled_inactive",
                  "portal.user_disabled")
ENABLE_EVENTS = ("portal.account_enabled", "portal.user_enabled")
DISABLE_COLUMNS = ("seq", "disabled_at", "event", "account", "disabled_by", "reason",
                   "re_enabled_at", "last_allowed_before", "allowed_after_disable",
                   "last_allowed_after", "took_effect_within_s", "within_sla")


def _account_of(detail: Any) -> str:
    if isinstance(detail, dict):
        for key in ("account", "username", "target", "user"):
            value = detail.get(key)
            if isinstance(value, str) and value:
                return value
    return ""


def write_disables(scope: PackScope, archive: PackArchive, sla_seconds: float) -> Evidence:
    """Per account disable in the period: did the account's calls stop, and how fast?

    After the disable (until a re-enable), any gateway record of the account that is not a
    denial or an error means it could still act; the time from the disable to the last such
    record is how long the disable took to take effect everywhere (0 when nothing got through).
    """
    disables = scope.records().filter(event__in=DISABLE_EVENTS)
    worst = 0.0
    late: list[str] = []

    def allowed(actor: str) -> Any:
        return (AuditRecord.objects.filter(actor=actor, event__in=GATEWAY_EVENTS,
                                           seq__lte=scope.head_seq)
                .exclude(decision__in=("deny", "error")))

    def rows() -> Any:
        nonlocal worst
        fields = ("seq", "at", "event", "actor", "detail")
        for seq, at, event, by, detail in disables.order_by("seq").values_list(*fields):
            account = _account_of(detail)
            enabled = (AuditRecord.objects.filter(event__in=ENABLE_EVENTS, seq__gt=seq,
                                                  seq__lte=scope.head_seq)
                       .filter(Q(detail__account=account) | Q(detail__username=account))
                       .order_by("seq").values_list("at", flat=True).first())
            until: datetime | None = enabled
            before = allowed(account).filter(seq__lt=seq).aggregate(m=Max("at"))["m"]
            after_q = allowed(account).filter(seq__gt=seq)
            if until is not None:
                after_q = after_q.filter(at__lt=until)
            after = after_q.count() if account else 0
            last_after = after_q.aggregate(m=Max("at"))["m"] if after else None
            took = (last_after - at).total_seconds() if last_after else 0.0
            ok = took <= sla_seconds
            worst = max(worst, took)
            if not ok:
                late.append(f"{account} (#{seq}): still allowed {took:.1f}s after the disable")
            reason = detail.get("reason", "") if isinstance(detail, dict) else ""
            yield (seq, at.isoformat(), event, account, by, reason,
                   until.isoformat() if until else "", before.isoformat() if before else "",
                   after, last_after.isoformat() if last_after else "", round(took, 3),
                   "yes" if ok else "no")

    entry = archive.write_csv("csv/account-disables.csv", DISABLE_COLUMNS, rows())
    return Evidence(
        name="account-disables", path=entry.path, title="Account disables and their effect",
        description="Each account disable in the period; gateway records of that account after "
                    "it that were not refused (until a re-enable), and how long after the "
                    f"disable the last one was (the SLA is {sla_seconds:g}s).",
        selection=f"SELECT * FROM {scope.selection} AND event IN {DISABLE_EVENTS}; per account: "
                  "audit_record WHERE actor = account AND seq > disable.seq AND decision NOT IN "
                  "('deny', 'error') AND event IN gateway events",
        controls=("AC-2",), rows=entry.rows, expected_rows=disables.count(),
        sha256=entry.sha256, bytes=entry.bytes,
        stats={"worst_seconds": round(worst, 3), "late": late, "sla_seconds": sla_seconds},
    )
