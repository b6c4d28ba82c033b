"""Incident response (IR-4): quarantines, automatic rules, lifting after review."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditRecord
from audit.services import AuditEntry, append_records
from audit.verify import verify_chain
from portal.config import portal_config
from portal.models import Incident, Quarantine
from portal.services.incidents import (
    incident_lift,
    incident_rules_evaluate,
    quarantine_create,
    quarantine_lift,
)
from portal.services.security import security_revision_current
from tests.portal.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def _calls(actor: str, n: int, *, decision: str, rows: int | None = None) -> None:
    entries = []
    for _ in range(n):
        rid = uuid.uuid4().hex
        entries.append(AuditEntry(event="mcp.decision", request_id=rid, actor=actor,
                                  decision=decision, connection="demo-bigquery"))
        entries.append(AuditEntry(event="mcp.outcome", request_id=rid, actor=actor,
                                  decision=decision, row_count=rows, connection="demo-bigquery"))
    append_records(entries)


def test_denied_calls_rule_raises_incident_and_quarantines(people, configure) -> None:
    configure(portal_config, incident_max_denied=5)
    eng = people["engineer"]
    _calls(eng.username, 4, decision="deny")
    assert incident_rules_evaluate() == []
    _calls(eng.username, 1, decision="deny")
    before = security_revision_current()
    [incident] = incident_rules_evaluate()
    assert incident.user == eng and incident.rule == "denied_calls" and incident.observed == 5
    assert Quarantine.objects.filter(user=eng, lifted_at__isnull=True).exists()
    assert security_revision_current() > before
    assert incident_rules_evaluate() == []  # already open: not raised twice
    raised = AuditRecord.objects.get(event="portal.incident_raised")
    assert raised.actor == "system" and raised.detail["account"] == eng.username

    incident_lift(incident=incident, by=people["admin"], comment="tests of a new client")
    incident.refresh_from_db()
    assert incident.status == "lifted" and incident.reviewed_by == people["admin"]
    assert not Quarantine.objects.filter(user=eng, lifted_at__isnull=True).exists()
    assert incident_rules_evaluate() == []  # the same records do not raise it again
    assert verify_chain().ok


def test_result_rows_rule(people, configure) -> None:
    configure(portal_config, incident_max_rows=1000)
    eng = people["engineer"]
    _calls(eng.username, 3, decision="allow", rows=300)
    assert incident_rules_evaluate() == []
    _calls(eng.username, 1, decision="allow", rows=200)
    [incident] = incident_rules_evaluate()
    assert incident.rule == "result_rows" and incident.observed == 1100


def test_celery_task_runs_the_rules(people, configure) -> None:
    configure(portal_config, incident_max_denied=2)
    _calls(people["engineer"].username, 2, decision="deny")
    from portal.tasks import evaluate_incident_rules

    assert len(evaluate_incident_rules.apply().get()) == 1


def test_manual_quarantine_of_connection_and_lift(people, connection) -> None:
    admin = people["admin"]
    client = client_for(admin)
    client.post("/incidents/", {"connection": connection.slug, "reason": "upstream compromised"})
    q = Quarantine.objects.get(connection=connection)
    assert q.created_by == admin
    page = client.get("/incidents/")
    assert b"upstream compromised" in page.content
    quarantine_lift(quarantine=q, by=admin, reason="patched")
    q.refresh_from_db()
    assert q.lifted_at is not None
    assert list(AuditRecord.objects.filter(event__startswith="portal.quarantine")
                .values_list("event", flat=True)) == ["portal.quarantine_created",
                                                       "portal.quarantine_lifted"]


def test_auditor_sees_incidents_but_cannot_act(people) -> None:
    quarantine_create(user=people["engineer"], reason="x", by=people["admin"])
    client = client_for(people["auditor"])
    page = client.get("/incidents/")
    assert page.status_code == 200 and b"Lift</button>" not in page.content
    assert client.post("/incidents/", {"username": "aud-auditor", "reason": "y"}).status_code == 403
    assert Incident.objects.count() == 0
