"""The audit browser (AU-6): search, record view, export (recorded), chart."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditRecord
from audit.services import AuditEntry, append_records
from audit.verify import verify_chain
from tests.portal.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trail() -> None:
    append_records([
        AuditEntry(event="mcp.decision", request_id="r1", actor="erin", connection="demo-bigquery",
                   tool="execute_sql", sql_text="SELECT email FROM shop.customers",
                   decision="allow", detail={"sql": {"tables": ["p.shop.customers"]}}),
        AuditEntry(event="mcp.outcome", request_id="r1", actor="erin", connection="demo-bigquery",
                   tool="execute_sql", decision="allow", row_count=3,
                   masking=[{"class": "email", "action": "partial", "count": 3}],
                   response_body='{"result": "j***@example.com"}', response_sha256="ab" * 32,
                   detail={"sql": {"tables": ["p.shop.customers"]}}),
        AuditEntry(event="mcp.outcome", request_id="r2", actor="mallory",
                   connection="demo-bigquery", tool="execute_sql", decision="deny",
                   reasons=[{"rule": "sql.table_not_allowed", "message": "shop.secrets"}],
                   detail={"sql": {"tables": ["p.shop.secrets"]}}),
    ])


def test_search_filters(people, trail) -> None:
    client = client_for(people["auditor"])
    page = client.get("/audit/", {"decision": "deny"})
    assert b"mallory" in page.content and b"erin</td>" not in page.content
    page = client.get("/audit/", {"table": "shop.customers"})
    assert page.content.count(b"erin</td>") == 2 and b"mallory" not in page.content
    page = client.get("/audit/", {"actor": "erin", "event": "mcp.outcome"})
    assert b"1 record" in page.content
    assert b"<svg" in client.get("/audit/").content


def test_record_page_shows_request_decision_masking_response(people, trail) -> None:
    client = client_for(people["admin"])
    record = AuditRecord.objects.get(event="mcp.outcome", actor="erin")
    page = client.get(f"/audit/{record.seq}/").content.decode()
    assert "j***@example.com" in page and "partial" in page and "ab" * 32 in page
    assert "mcp.decision" in page  # the other record of the same request


def test_export_streams_and_is_recorded(people, trail) -> None:
    client = client_for(people["auditor"])
    response = client.get("/audit/export/", {"actor": "erin", "format": "jsonl"})
    assert response.status_code == 200 and response.streaming
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert [r["event"] for r in rows] == ["mcp.decision", "mcp.outcome"]
    assert rows[0]["hash"] and rows[0]["sql_text"].startswith("SELECT")
    csv_body = b"".join(client.get("/audit/export/", {"decision": "deny",
                                                      "format": "csv"}).streaming_content)
    lines = csv_body.decode().splitlines()
    assert lines[0].startswith("seq,at,event") and len(lines) == 2 and "mallory" in lines[1]
    exported = AuditRecord.objects.filter(event="portal.audit_exported").order_by("seq")
    assert [e.detail["filter"] for e in exported] == [{"actor": "erin"}, {"decision": "deny"}]
    assert exported[0].actor == "aud-auditor" and exported[0].detail["records"] == 2
    assert client.get("/audit/export/", {"format": "xml"}).status_code == 400
    assert verify_chain().ok
