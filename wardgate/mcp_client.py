"""Calling a tool through the gateway with the official MCP client (demo check, docs, bench)."""

from __future__ import annotations

from typing import Any

from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def gateway_client(url: str, token: str | None, *, mode: str = "auto") -> Client:
    """The official client over Streamable HTTP; mode "legacy" speaks the pre-2026 revisions
    (initialize handshake, Mcp-Session-Id, GET stream, DELETE on close)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(streamable_http_client(url, http_client=create_mcp_http_client(headers=headers)),
                  mode=mode)


async def call_tool(url: str, token: str | None, tool: str, arguments: dict[str, Any]) -> Any:
    async with gateway_client(url, token) as client:
        return await client.call_tool(tool, arguments)


SNIPPET = '''\
import asyncio
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

async def main():
    http = create_mcp_http_client(headers={{"Authorization": "Bearer {token}"}})
    async with Client(streamable_http_client("{url}", http_client=http)) as client:
        print([t.name for t in (await client.list_tools()).tools])
        result = await client.call_tool("execute_sql", {{"sql": "SELECT full_name, email FROM {dataset}.customers LIMIT 3"}})
        print(result.structured_content)

asyncio.run(main())
'''
