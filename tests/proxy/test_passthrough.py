"""Through the gateway, the official MCP client gets what it gets directly from the server."""

from __future__ import annotations

import httpx
import pytest
from mcp.client import Client

from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_same_result_direct_and_through_gateway(gateway, demo_connection, mcp_server_url) -> None:  # type: ignore[no-untyped-def]
    sql = "SELECT customer_id, country FROM shop.customers ORDER BY customer_id LIMIT 3"
    async with Client(mcp_server_url) as direct:
        expected = await direct.call_tool("execute_sql", {"sql": sql})
    async with gateway_client(gateway.url("demo-bigquery"), None) as client:
        got = await client.call_tool("execute_sql", {"sql": sql})
    assert got.structured_content == expected.structured_content


async def test_unknown_connection_and_bad_json_get_clear_errors(gateway, demo_connection) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient() as http:
        missing = await http.post(gateway.url("no-such-connection"), json={"jsonrpc": "2.0"})
        bad = await http.post(gateway.url("demo-bigquery"), content=b"{not json",
                              headers={"content-type": "application/json"})
    assert missing.status_code == 404 and "Unknown connection" in missing.json()["error"]["message"]
    assert bad.status_code == 400 and bad.json()["error"]["code"] == -32700
