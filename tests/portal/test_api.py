"""The portal API: token auth, role permissions, 400s with field errors, separation of
duties, OpenAPI schema."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditRecord
from portal.models import AccessRequest, QueryApproval
from portal.services.api_tokens import api_token_issue
from tests.portal.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def _bearer(user) -> Client:  # type: ignore[no-untyped-def]
    _, plaintext = api_token_issue(user=user, name="test", by=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")


def test_request_and_decide_through_the_api(people, connection, analyst) -> None:
    eng = _bearer(people["engineer"])
    bad = eng.post("/api/v1/access-requests/", {"connection": "nope", "role": "analyst",
                                                "duration_hours": 0, "justification": "x"},
                   content_type="application/json")
    assert bad.status_code == 400
    assert set(bad.json()) == {"connection", "duration_hours", "justification"}
    ok = eng.post("/api/v1/access-requests/", {"connection": "demo-bigquery", "role": "analyst",
                                               "duration_hours": 2,
                                               "justification": "reconcile the ledger"},
                  content_type="application/json")
    assert ok.status_code == 201, ok.content
    pk = ok.json()["id"]
    assert ok.json()["status"] == "pending" and ok.json()["requester"] == "erin-engineer"
    approver = _bearer(people["approver"])
    assert [r["id"] for r in approver.get("/api/v1/access-requests/queue/").json()] == [pk]
    deny = approver.post(f"/api/v1/access-requests/{pk}/decide/", {"decision": "deny"},
                         content_type="application/json")
    assert deny.status_code == 400 and "comment" in deny.json()
    approve = approver.post(f"/api/v1/access-requests/{pk}/decide/",
                            {"decision": "approve", "comment": "fine"},
                            content_type="application/json")
    assert approve.status_code == 200 and approve.json()["status"] == "approved"
    assert eng.get(f"/api/v1/access-requests/{pk}/").json()["status"] == "approved"
    decided = AuditRecord.objects.get(event="portal.access_request_decided")
    assert decided.auth_method == "api_token"


def test_query_approval_separation_of_duties(people, connection) -> None:
    both = people["approver2"]
    mine = QueryApproval.objects.create(
        requester=both, connection=connection, tool="execute_sql", arguments_sha256="a" * 64,
        sql_text="SELECT 1", policy_version=0, rule="r", reason="big scan",
        approver_groups=["approver"], expires_at=timezone.now() + dt.timedelta(hours=1))
    client = _bearer(both)
    assert client.get("/api/v1/query-approvals/").json() == []
    refused = client.post(f"/api/v1/query-approvals/{mine.pk}/decide/",
                          {"decision": "approve"}, content_type="application/json")
    assert refused.status_code == 403 and "Separation of duties" in refused.json()["detail"]
    page = client_for(both)
    assert page.post(f"/approvals/queries/{mine.pk}/decide/",
                     {"decision": "approve"}).status_code == 302  # back, with the refusal shown
    # The service refuses and records each attempt once, through the API and the page alike.
    blocked = list(AuditRecord.objects.filter(event="portal.approval_refused").order_by("pk"))
    assert [r.actor for r in blocked] == [both.username, both.username]
    assert all("Separation of duties" in r.reasons[0]["message"] for r in blocked)
    assert not AuditRecord.objects.filter(event="portal.request_forbidden").exists()
    assert b"your own query" in page.get(f"/approvals/queries/{mine.pk}/").content
    mine.refresh_from_db()
    assert mine.status == "pending"
    other = _bearer(people["approver"])
    assert [a["id"] for a in other.get("/api/v1/query-approvals/").json()] == [mine.pk]
    done = other.post(f"/api/v1/query-approvals/{mine.pk}/decide/",
                      {"decision": "approve", "comment": "ok"}, content_type="application/json")
    assert done.status_code == 200 and done.json()["status"] == "approved"


def test_a_vote_after_expiry_is_refused_and_the_expiry_stays(people, connection) -> None:
    late = QueryApproval.objects.create(
        requester=people["engineer"], connection=connection, tool="execute_sql",
        arguments_sha256="b" * 64, sql_text="SELECT 1", policy_version=0, rule="r",
        reason="big scan", approver_groups=["approver"],
        expires_at=timezone.now() - dt.timedelta(minutes=1))  # the beat task has not run yet
    refused = _bearer(people["approver"]).post(f"/api/v1/query-approvals/{late.pk}/decide/",
                                               {"decision": "approve", "comment": "ok"},
                                               content_type="application/json")
    assert refused.status_code == 400 and "has expired" in refused.json()["detail"]
    late.refresh_from_db()
    assert late.status == "expired" and late.decided_at == late.expires_at
    assert not late.votes.exists()
    expired = AuditRecord.objects.get(event="portal.approvals_expired")
    assert expired.detail["approval_ids"] == [late.pk]
    blocked = AuditRecord.objects.get(event="portal.approval_refused")
    assert blocked.actor == people["approver"].username
    assert "has expired" in blocked.reasons[0]["message"]
    # A second vote is told what the approval now is.
    again = _bearer(people["approver2"]).post(f"/api/v1/query-approvals/{late.pk}/decide/",
                                              {"decision": "deny", "comment": "too late"},
                                              content_type="application/json")
    assert again.status_code == 400 and "expired, not pending" in again.json()["detail"]


def test_admin_api_accounts_grants_quarantine(people, connection, analyst) -> None:
    admin = _bearer(people["admin"])
    created = admin.post("/api/v1/accounts/", {"username": "api-made", "roles": ["engineer"],
                                               "reason": "onboarding"},
                         content_type="application/json")
    assert created.status_code == 201 and created.json()["roles"] == ["engineer"]
    bad = admin.post("/api/v1/accounts/", {"username": "bad name!", "roles": ["king"]},
                     content_type="application/json")
    assert bad.status_code == 400 and {"username", "roles", "reason"} <= set(bad.json())
    grant = admin.post("/api/v1/grants/", {"role": "analyst", "connection": "demo-bigquery",
                                           "user": "api-made", "reason": "project x",
                                           "expires_at": (timezone.now()
                                                          + dt.timedelta(days=1)).isoformat()},
                       content_type="application/json")
    assert grant.status_code == 201 and grant.json()["state"] == "active"
    uid = created.json()["id"]
    disabled = admin.post(f"/api/v1/accounts/{uid}/disable/", {"reason": "offboarding"},
                          content_type="application/json")
    assert disabled.status_code == 200 and disabled.json()["is_active"] is False
    q = admin.post("/api/v1/quarantines/", {"connection": "demo-bigquery", "reason": "drill"},
                   content_type="application/json")
    assert q.status_code == 201
    both = admin.post("/api/v1/quarantines/", {"reason": "drill"},
                      content_type="application/json")
    assert both.status_code == 400 and "non_field_errors" in both.json()


def test_auditor_reads_but_cannot_change(people, connection) -> None:
    auditor = _bearer(people["auditor"])
    assert auditor.get("/api/v1/audit/?decision=info").status_code == 200
    assert auditor.get("/api/v1/audit/?decision=maybe").status_code == 400
    assert auditor.get("/api/v1/accounts/").status_code == 200
    assert auditor.post("/api/v1/quarantines/", {"connection": "demo-bigquery", "reason": "x"},
                        content_type="application/json").status_code == 403
    assert auditor.post(f"/api/v1/accounts/{people['engineer'].pk}/disable/",
                        {"reason": "x"}, content_type="application/json").status_code == 403


def test_tokens_are_checked(people) -> None:
    assert Client(HTTP_AUTHORIZATION="Bearer wga_nope").get(
        "/api/v1/audit/").status_code == 401
    eng = people["engineer"]
    client = _bearer(eng)
    eng.is_active = False
    eng.save()
    assert client.get("/api/v1/access-requests/").status_code == 401
    # A gateway token is not a portal API token.
    assert Client(HTTP_AUTHORIZATION="Bearer wgp_abc").get(
        "/api/v1/access-requests/").status_code in (401, 403)


def test_openapi_schema(people) -> None:
    response = client_for(people["engineer"]).get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Wardgate portal API"
    for path in ("/api/v1/access-requests/{id}/decide/", "/api/v1/audit/",
                 "/api/v1/accounts/{id}/disable/", "/api/v1/query-approvals/{id}/decide/"):
        assert path in schema["paths"], path
    assert "portalApiToken" in schema["components"]["securitySchemes"]
    assert AccessRequest.objects.count() == 0
