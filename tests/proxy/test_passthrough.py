"""The gateway is transparent: what it does not police reaches the client unchanged."""

from __future__ import annotations

import httpx
import pytest
from mcp.client import Client

from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_same_result_direct_and_through_gateway(gateway, engineer_token, mcp_server_url) -> None:  # type: ignore[no-untyped-def]
    sql = "SELECT order_id, status, amount FROM shop.orders ORDER BY order_id LIMIT 3"
    async with Client(mcp_server_url) as direct:
        expected = await direct.call_tool("execute_sql", {"sql": sql})
        expected_schema = await direct.call_tool("get_table_schema", {"table": "shop.orders"})
    async with gateway_client(gateway.url("demo-bigquery"), engineer_token) as client:
        got = await client.call_tool("execute_sql", {"sql": sql})
        got_schema = await client.call_tool("get_table_schema", {"table": "shop.orders"})
        assert client.server_info is None or client.server_info.name == "wardgate-bigquery"
    assert got.structured_content == expected.structured_content
    assert got_schema.structured_content == expected_schema.structured_content


async def test_unknown_connection_and_bad_json_get_clear_errors(gateway, engineer_token) -> None:  # type: ignore[no-untyped-def]
    auth = {"authorization": f"Bearer {engineer_token}", "content-type": "application/json"}
    async with httpx.AsyncClient() as http:
        missing = await http.post(gateway.url("no-such-connection"), json={"jsonrpc": "2.0"},
                                  headers=auth)
        bad = await http.post(gateway.url("demo-bigquery"), content=b"{not json", headers=auth)
    assert missing.status_code == 404 and "Unknown connection" in missing.json()["error"]["message"]
    assert bad.status_code == 400 and bad.json()["error"]["code"] == -32700
