"""Both protocol generations through the gateway: the stateless 2026-07-28 revision and the
session-based revisions (initialize, Mcp-Session-Id, GET stream, DELETE) older clients speak."""

from __future__ import annotations

import pytest

from proxy.db import run_db
from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
SQL = "SELECT email FROM shop.customers ORDER BY customer_id LIMIT 2"


def events_for(slug: str) -> list:
    from audit.models import AuditRecord

    return list(AuditRecord.objects.filter(connection=slug).order_by("seq"))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_policed_and_masked_in_either_protocol_generation(gateway, engineer_token, mode) -> None:  # type: ignore[no-untyped-def]
    async with gateway_client(gateway.url("demo-bigquery"), engineer_token, mode=mode) as client:
        version = client.protocol_version
        rows = (await client.call_tool("execute_sql", {"sql": SQL})).structured_content["rows"]
        denied = await client.call_tool("execute_sql", {"sql": "DROP TABLE shop.orders"})
    assert all("***@" in r["email"] for r in rows)
    assert denied.is_error
    records = await run_db(events_for, "demo-bigquery")
    methods = [r.jsonrpc_method for r in records]
    if mode == "legacy":
        assert version < "2026-07-28"
        assert "initialize" in methods and "notifications/initialized" in methods
        session_ids = {r.mcp_session_id for r in records if r.jsonrpc_method == "tools/call"}
        assert len(session_ids) == 1 and "" not in session_ids
        assert "mcp.session_closed" in [r.event for r in records]
    else:
        assert version >= "2026-07-28"
        assert "server/discover" in methods
    recorded = {r.detail.get("protocol_version") for r in records if r.jsonrpc_method == "tools/call"}
    assert recorded == {version}
