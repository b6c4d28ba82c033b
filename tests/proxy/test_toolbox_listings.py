"""The MCP Toolbox's listings through the gateway, cut to what the caller's role may query.

The Toolbox answers `list_dataset_ids` and `list_table_ids` with one text block per name, each
the JSON encoding of the name, and no structured content: its MCP layer marshals every item of
a tool's answer into a block of its own. Its BigQuery cannot be the emulator
(tests/proxy/test_toolbox.py), so a stand-in MCP server answers those two tools exactly that
way, behind a real gateway with the `toolbox` preset. Before, the preset read the table listing
from a structured key the Toolbox never sends (every listing withheld) and left the dataset
listing out (every dataset name passed on).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent

from bigquery_mcp.emulator import free_port
from tests.conftest import DATASET, PROJECT, RunningGateway
from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

DATASETS = ["hr", DATASET, "secret_finance"]
TABLES = {DATASET: ["customers", "orders", "payroll_export"], "hr": ["salaries"]}


def _blocks(texts: list[str]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=t) for t in texts])


def toolbox_shaped_server() -> MCPServer:
    server = MCPServer(name="toolbox-standin", version="1", log_level="WARNING")

    async def list_dataset_ids(project: str = PROJECT) -> CallToolResult:
        return _blocks([json.dumps(d) for d in DATASETS])

    async def list_table_ids(dataset: str, project: str = PROJECT) -> CallToolResult:
        if dataset == "odd":  # not the Toolbox's shape: the gateway cannot read it
            return _blocks(["customers, orders"])
        return _blocks([json.dumps(t) for t in TABLES.get(dataset, [])])

    server.add_tool(list_dataset_ids, name="list_dataset_ids")
    server.add_tool(list_table_ids, name="list_table_ids")
    return server


@pytest.fixture
def toolbox_http(engineer) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    from portal.models import Connection, Grant, Role
    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.demo import DEMO_ANALYST_RULES, DEMO_COLUMN_CLASSES
    from portal.services.events import SYSTEM
    from portal.services.policy import connection_save
    from portal.services.security import security_revision_bump
    from portal.services.tokens import token_issue

    upstream = RunningGateway(toolbox_shaped_server().streamable_http_app(stateless_http=True),
                              free_port()).start()
    conn = Connection(slug="toolbox-http", name="Toolbox over HTTP", transport="http",
                      upstream_url=f"{upstream.base_url}/mcp", preset="toolbox",
                      bigquery_project=PROJECT, default_dataset=DATASET,
                      column_classes=DEMO_COLUMN_CLASSES)
    connection_save(connection=conn, by=None, reason="toolbox listings")
    role = Role.objects.create(name="analyst-toolbox-listings", rules={
        **DEMO_ANALYST_RULES, "tools": ["list_dataset_ids", "list_table_ids"]})
    Grant.objects.create(role=role, connection=conn, group=engineer.groups.get(), reason="t")
    tool_catalog_refresh(connection=conn)
    tool_catalog_accept(connection=conn, by=None, meta=SYSTEM)
    security_revision_bump()
    _, token = token_issue(user=engineer, connections=[conn], by=None, meta=SYSTEM)
    yield {"connection": conn, "token": token}
    upstream.stop()


async def test_toolbox_listings_are_cut_to_what_the_role_may_query(gateway, toolbox_http) -> None:  # type: ignore[no-untyped-def]
    conn = toolbox_http["connection"]
    assert conn.metadata_tools["list_dataset_ids"] == {"lists_datasets": "content[]"}
    async with gateway_client(gateway.url("toolbox-http"), toolbox_http["token"]) as client:
        datasets = await client.call_tool("list_dataset_ids", {"project": PROJECT})
        tables = await client.call_tool("list_table_ids", {"project": PROJECT,
                                                           "dataset": DATASET})
        other = await client.call_tool("list_table_ids", {"project": PROJECT, "dataset": "hr"})
        odd = await client.call_tool("list_table_ids", {"project": PROJECT, "dataset": "odd"})
    # Still the Toolbox's shape (a client written for it reads it as before), cut to the role.
    assert not datasets.is_error and [b.text for b in datasets.content] == [json.dumps(DATASET)]
    assert not tables.is_error
    assert [json.loads(b.text) for b in tables.content] == ["customers", "orders"]
    assert not other.is_error and other.content == []
    # A listing in a shape the gateway cannot read is withheld, not passed on.
    assert odd.is_error and "withheld" in odd.content[0].text
    assert "customers" not in odd.content[0].text
