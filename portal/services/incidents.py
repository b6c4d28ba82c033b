"""Incident response (IR-4): quarantine an identity or a connection, lift it; automatic rules
that raise an incident (and quarantine the identity) on too many denials or too many rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Max, Sum
from django.utils import timezone

from audit.models import AuditRecord
from portal.config import portal_config
from portal.models import Connection, Incident, Quarantine
from portal.services.errors import ServiceError
from portal.services.events import SYSTEM, RequestMeta, portal_event
from portal.services.security import security_revision_bump


class IncidentError(ServiceError):
    """A quarantine or incident action a rule refuses."""

    default_code = "incident_refused"


def _quarantine_detail(q: Quarantine) -> dict[str, Any]:
    if q.user_id is not None:
        return {"quarantine_id": q.pk, "account": q.user.get_username()}
    return {"quarantine_id": q.pk, "connection": q.connection.slug}


@transaction.atomic
def quarantine_create(*, reason: str, by: Any, user: Any = None,
                      connection: Connection | None = None,
                      meta: RequestMeta = SYSTEM) -> Quarantine:
    if (user is None) == (connection is None):
        raise IncidentError("Quarantine exactly one identity or one connection.")
    if not (reason or "").strip():
        raise IncidentError("Give a reason for the quarantine.")
    existing = Quarantine.objects.filter(user=user, connection=connection,
                                         lifted_at__isnull=True).first()
    if existing is not None:
        return existing
    q = Quarantine.objects.create(user=user, connection=connection, reason=reason.strip(),
                                  created_by=by)
    security_revision_bump()
    portal_event("quarantine_created", by=by, meta=meta,
                 connection=connection.slug if connection else "",
                 detail={**_quarantine_detail(q), "reason": q.reason})
    return q


@transaction.atomic
def quarantine_lift(*, quarantine: Quarantine, by: Any, reason: str,
                    meta: RequestMeta = SYSTEM) -> Quarantine:
    if not (reason or "").strip():
        raise IncidentError("Give a reason for lifting the quarantine.")
    q = (Quarantine.objects.select_for_update(of=("self",))
         .select_related("user", "connection").get(pk=quarantine.pk))
    if q.lifted_at is not None:
        raise IncidentError("This quarantine is already lifted.")
    q.lifted_at = timezone.now()
    q.save(update_fields=["lifted_at"])
    security_revision_bump()
    portal_event("quarantine_lifted", by=by, meta=meta,
                 connection=q.connection.slug if q.connection_id else "",
                 detail={**_quarantine_detail(q), "reason": reason.strip()})
    # An incident whose quarantine is lifted is resolved with it.
    for incident in Incident.objects.filter(quarantine=q, status=Incident.Status.OPEN):
        incident.status = Incident.Status.LIFTED
        incident.reviewed_by, incident.reviewed_at = by, q.lifted_at
        incident.review_comment = reason.strip()
        incident.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_comment"])
    return q


@transaction.atomic
def incident_lift(*, incident: Incident, by: Any, comment: str,
                  meta: RequestMeta = SYSTEM) -> Incident:
    """An admin reviewed the incident: lift the identity's quarantine and close it."""
    if not (comment or "").strip():
        raise IncidentError("Record what the review found.")
    incident = (Incident.objects.select_for_update(of=("self",)).select_related("user")
                .get(pk=incident.pk))
    if incident.status != Incident.Status.OPEN:
        raise IncidentError("This incident is already closed.")
    now = timezone.now()
    incident.status = Incident.Status.LIFTED
    incident.reviewed_by, incident.reviewed_at = by, now
    incident.review_comment = comment.strip()
    incident.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_comment"])
    portal_event("incident_lifted", by=by, meta=meta,
                 detail={"incident_id": incident.pk, "account": incident.user.get_username(),
                         "rule": incident.rule, "comment": comment.strip()})
    if incident.quarantine_id is not None:
        q = Quarantine.objects.get(pk=incident.quarantine_id)
        if q.lifted_at is None:
            quarantine_lift(quarantine=q, by=by, meta=meta,
                            reason=f"incident #{incident.pk} reviewed: {comment.strip()}")
    return incident


def _since_last_review(user: Any, window_start: dt.datetime) -> dt.datetime:
    """Count only what happened after the identity's last incident was reviewed, so lifting an
    incident does not immediately raise it again from the same records."""
    reviewed = Incident.objects.filter(user=user).aggregate(m=Max("reviewed_at"))["m"]
    return max(window_start, reviewed) if reviewed else window_start


def incident_rules_evaluate(now: dt.datetime | None = None) -> list[Incident]:
    """Scan the recent audit trail: an identity with at least N denied calls, or more than R
    result rows, within M minutes gets an incident and is quarantined at once."""
    now = now or timezone.now()
    window = portal_config().incident_window_minutes
    max_denied = portal_config().incident_max_denied
    max_rows = portal_config().incident_max_rows
    start = now - dt.timedelta(minutes=window)
    recent = AuditRecord.objects.filter(at__gte=start, at__lte=now).exclude(actor="")
    candidates: dict[str, list[tuple[str, int, int]]] = {}
    denied = (recent.filter(decision="deny", event__startswith="mcp.")
              .values("actor").annotate(n=Count("request_id", distinct=True))
              .filter(n__gte=max_denied))
    for row in denied:
        candidates.setdefault(row["actor"], []).append((Incident.Rule.DENIED_CALLS, row["n"],
                                                        max_denied))
    rows = (recent.filter(event="mcp.outcome", row_count__isnull=False)
            .values("actor").annotate(n=Sum("row_count")).filter(n__gt=max_rows))
    for row in rows:
        candidates.setdefault(row["actor"], []).append((Incident.Rule.RESULT_ROWS, row["n"],
                                                        max_rows))
    raised: list[Incident] = []
    users = {u.get_username(): u for u in
             get_user_model().objects.filter(username__in=list(candidates))}
    for actor, hits in sorted(candidates.items()):
        user = users.get(actor)
        if user is None or Incident.objects.filter(user=user,
                                                   status=Incident.Status.OPEN).exists():
            continue
        since = _since_last_review(user, start)
        for rule, _, threshold in hits:
            scoped = recent.filter(actor=actor, at__gte=since)
            if rule == Incident.Rule.DENIED_CALLS:
                observed = (scoped.filter(decision="deny", event__startswith="mcp.")
                            .aggregate(n=Count("request_id", distinct=True))["n"] or 0)
                tripped = observed >= threshold
            else:
                observed = (scoped.filter(event="mcp.outcome")
                            .aggregate(n=Sum("row_count"))["n"] or 0)
                tripped = observed > threshold
            if tripped:
                raised.append(_raise(user, rule, observed, threshold, window, since, now))
                break
    return raised


@transaction.atomic
def _raise(user: Any, rule: str, observed: int, threshold: int, window: int,
           since: dt.datetime, now: dt.datetime) -> Incident:
    label = Incident.Rule(rule).label
    q = quarantine_create(user=user, by=None,
                          reason=f"automatic: {label} ({observed} > limit {threshold} "
                                 f"in {window} min)")
    incident = Incident.objects.create(
        user=user, rule=rule, observed=observed, threshold=threshold, window_minutes=window,
        quarantine=q, detail={"from": since.isoformat(), "to": now.isoformat()})
    portal_event("incident_raised", by=None, meta=SYSTEM,
                 reasons=[{"rule": f"incident.{rule}", "message": q.reason}],
                 detail={"incident_id": incident.pk, "account": user.get_username(),
                         "rule": rule, "observed": observed, "threshold": threshold,
                         "window_minutes": window, "quarantine_id": q.pk})
    return incident
