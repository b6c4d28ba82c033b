"""Access requests: approval creates a time-bound grant; denial records why; nobody approves
their own request (portal, API, and the service itself)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from audit.models import AuditRecord
from audit.verify import verify_chain
from portal.models import AccessRequest, Grant
from portal.services.access_requests import (
    AccessRequestError,
    access_request_create,
    access_request_decide,
)
from portal.services.security import security_revision_current
from tests.portal.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_request_approve_creates_time_bound_grant(people, connection, analyst) -> None:
    eng, approver = people["engineer"], people["approver"]
    client = client_for(eng)
    response = client.post("/requests/", {"connection": "demo-bigquery", "role": "analyst",
                                          "duration_hours": 4,
                                          "justification": "quarterly churn report"})
    assert response.status_code == 302
    req = AccessRequest.objects.get()
    assert req.status == "pending" and req.requester == eng
    assert b"pending" in client.get("/requests/fragment/").content
    before = security_revision_current()

    queue = client_for(approver).get("/approvals/fragment/")
    assert b"quarterly churn report" in queue.content
    client_for(approver).post(f"/approvals/access/{req.pk}/decide/",
                              {"decision": "approve", "comment": "ok for Q3"})
    req.refresh_from_db()
    assert req.status == "approved" and req.decided_by == approver
    grant = Grant.objects.get(pk=req.grant_id)
    assert grant.user == eng and grant.role == analyst and grant.connection == connection
    assert dt.timedelta(hours=3, minutes=59) < grant.expires_at - timezone.now() \
        <= dt.timedelta(hours=4)
    assert security_revision_current() > before
    assert b"approved" in client.get("/requests/fragment/").content
    events = list(AuditRecord.objects.filter(event__startswith="portal.")
                  .exclude(event="portal.login").values_list("event", flat=True))
    assert events == ["portal.access_requested", "portal.grant_created",
                      "portal.access_request_decided"]
    decided = AuditRecord.objects.get(event="portal.access_request_decided")
    assert decided.actor == approver.username and decided.decision == "allow"
    assert verify_chain().ok


def test_denial_needs_and_records_a_reason(people, connection, analyst) -> None:
    req = access_request_create(requester=people["engineer"], connection=connection, role=analyst,
                                duration_hours=2, justification="just curious about data")
    with pytest.raises(AccessRequestError, match="reason"):
        access_request_decide(access_request=req, by=people["approver"], approve=False)
    access_request_decide(access_request=req, by=people["approver"], approve=False,
                          comment="use the aggregated dataset instead")
    req.refresh_from_db()
    assert req.status == "denied" and req.grant is None
    record = AuditRecord.objects.get(event="portal.access_request_decided")
    assert record.decision == "deny"
    assert record.detail["comment"] == "use the aggregated dataset instead"


def test_nobody_approves_their_own_request(people, connection, analyst) -> None:
    both = people["approver2"]  # approver and engineer
    req = access_request_create(requester=both, connection=connection, role=analyst,
                                duration_hours=2, justification="need this for an incident")
    with pytest.raises(AccessRequestError, match="Separation of duties"):
        access_request_decide(access_request=req, by=both, approve=True)
    client = client_for(both)
    assert b"need this for an incident" not in client.get("/approvals/fragment/").content
    client.post(f"/approvals/access/{req.pk}/decide/", {"decision": "approve"})
    api = client.post(f"/api/v1/access-requests/{req.pk}/decide/", {"decision": "approve"},
                      content_type="application/json")
    assert api.status_code == 403 and "Separation of duties" in api.json()["detail"]
    # Each attempt is recorded once, by the service (not again as a forbidden request).
    assert AuditRecord.objects.filter(event="portal.access_request_refused").count() == 3
    assert not AuditRecord.objects.filter(event="portal.request_forbidden").exists()
    req.refresh_from_db()
    assert req.status == "pending" and not Grant.objects.exists()


def test_engineer_cannot_decide_even_through_the_service(people, connection, analyst) -> None:
    req = access_request_create(requester=people["engineer"], connection=connection,
                                role=analyst, duration_hours=2, justification="need it, really")
    other = people["auditor"]
    with pytest.raises(AccessRequestError, match="Only approvers"):
        access_request_decide(access_request=req, by=other, approve=True)


def test_bad_requests_are_refused(people, connection, analyst) -> None:
    eng = people["engineer"]
    with pytest.raises(AccessRequestError, match="between"):
        access_request_create(requester=eng, connection=connection, role=analyst,
                              duration_hours=100000, justification="long enough text")
    with pytest.raises(AccessRequestError, match="why"):
        access_request_create(requester=eng, connection=connection, role=analyst,
                              duration_hours=1, justification="short")
    access_request_create(requester=eng, connection=connection, role=analyst, duration_hours=1,
                          justification="long enough text")
    with pytest.raises(AccessRequestError, match="already"):
        access_request_create(requester=eng, connection=connection, role=analyst,
                              duration_hours=1, justification="long enough text")
