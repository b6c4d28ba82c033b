"""A stdio upstream behind the gateway: the gateway owns the subprocess and injects its
credentials; the client sees the same policed, masked MCP as over HTTP."""

from __future__ import annotations

import sys

import pytest

from proxy.db import run_db
from tests.conftest import DATASET, PROJECT, ROOT
from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stdio_connection(bigquery_emulator, engineer):  # type: ignore[no-untyped-def]
    from portal.models import Connection, Grant
    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.demo import DEMO_COLUMN_CLASSES, demo_policy_ensure
    from portal.services.events import SYSTEM
    from portal.services.tokens import token_issue

    conn = Connection(
        slug="bq-stdio", name="BigQuery over stdio", transport=Connection.Transport.STDIO,
        upstream_command=[sys.executable, "-m", "bigquery_mcp", "--transport", "stdio"],
        sql_tools={"execute_sql": "sql"}, bigquery_project=PROJECT,
        bigquery_endpoint=bigquery_emulator.endpoint, default_dataset=DATASET,
        column_classes=DEMO_COLUMN_CLASSES)
    # Upstream settings travel as credentials: sealed at rest, injected into the child only.
    conn.set_credentials({"env": {"BIGQUERY_PROJECT": PROJECT,
                                  "BIGQUERY_ENDPOINT": bigquery_emulator.endpoint,
                                  "PYTHONPATH": str(ROOT)}})
    conn.save()
    role = demo_policy_ensure(conn)
    assert Grant.objects.filter(connection=conn, role=role).exists()
    tool_catalog_refresh(connection=conn)
    tool_catalog_accept(connection=conn, by=None, meta=SYSTEM)
    return conn, token_issue(user=engineer, connections=[conn], by=None, meta=SYSTEM)[1]


async def test_stdio_upstream_is_policed_and_masked(gateway, stdio_connection) -> None:  # type: ignore[no-untyped-def]
    conn, token = stdio_connection
    async with gateway_client(gateway.url("bq-stdio"), token) as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        rows = (await client.call_tool("execute_sql", {
            "sql": "SELECT email, ssn FROM shop.customers ORDER BY customer_id LIMIT 2"})
        ).structured_content["rows"]
        denied = await client.call_tool("execute_sql", {"sql": "DELETE FROM shop.orders WHERE TRUE"})
    assert "execute_sql" in names
    assert all("***@" in r["email"] and r["ssn"] == "[REDACTED:ssn]" for r in rows)
    assert denied.is_error and "sql.statement_class" in denied.content[0].text
    from audit.models import AuditRecord

    outcome = await run_db(lambda: AuditRecord.objects.filter(
        connection="bq-stdio", event="mcp.outcome").order_by("seq").first())
    assert outcome.row_count == 2 and outcome.masking


async def test_stdio_credentials_never_leave_the_gateway(stdio_connection) -> None:  # type: ignore[no-untyped-def]
    conn, _ = stdio_connection
    from portal.models import Connection

    stored = await run_db(lambda: bytes(Connection.objects.get(pk=conn.pk).credentials_sealed))
    assert b"BIGQUERY_ENDPOINT" not in stored and b"127.0.0.1" not in stored
