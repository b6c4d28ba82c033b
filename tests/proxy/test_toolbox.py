"""MCP Toolbox for Databases (@toolbox-sdk/server, pinned in tests/node/package.json) as a stdio
upstream behind the gateway, with its prebuilt BigQuery tools and the `toolbox` preset.

What runs for real: the Toolbox binary from npm as a subprocess the gateway owns, its tools
listed through the gateway and pinned in the catalogue (hidden until accepted), the gateway's
policy refusing calls before anything reaches the Toolbox, and an allowed call reaching it with
the credentials the gateway injects (a Google access token it minted from a service-account key
at a loopback token endpoint, plus the key file the Toolbox's own Google client insists on at
start-up). What cannot run here: the Toolbox's BigQuery source talks only to Google's API (it has
no endpoint setting to point at the emulator), and this machine cannot reach Google, so an
allowed query comes back as the Toolbox's error, which leaves only through the gateway's
error-text policy.
"""

from __future__ import annotations

import json
import platform

import pytest

from tests.conftest import DATASET, PROJECT
from tests.google_token_endpoint import GoogleTokenEndpoint
from tests.node_tools import node_tools
from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TOOLBOX_PACKAGE = "@toolbox-sdk/server-linux-x64"
GRANTED = ["execute_sql", "list_table_ids", "get_table_info", "list_dataset_ids"]


@pytest.fixture
def toolbox(engineer, bigquery_emulator, tmp_path):  # type: ignore[no-untyped-def]
    from portal.models import Connection, Grant, Role
    from portal.services.demo import DEMO_ANALYST_RULES, DEMO_COLUMN_CLASSES
    from portal.services.events import SYSTEM
    from portal.services.policy import connection_credentials_set, connection_save
    from portal.services.security import security_revision_bump
    from portal.services.tokens import token_issue

    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the pinned Toolbox binary is the linux-x64 one")
    binary = node_tools().binary(TOOLBOX_PACKAGE, "toolbox")
    assert binary.is_file(), f"{binary} missing: the npm package no longer ships the binary?"
    endpoint = GoogleTokenEndpoint().start()
    sa = endpoint.service_account(PROJECT)
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(sa))
    conn = Connection(slug="toolbox", name="MCP Toolbox", transport="stdio", preset="toolbox",
                      upstream_command=[str(binary), "--prebuilt", "bigquery", "--stdio",
                                        "--disable-version-check", "--log-level", "ERROR"],
                      bigquery_project=PROJECT, bigquery_endpoint=bigquery_emulator.endpoint,
                      default_dataset=DATASET, column_classes=DEMO_COLUMN_CLASSES)
    connection_save(connection=conn, by=None, reason="toolbox")
    connection_credentials_set(connection=conn, by=None, reason="toolbox", credentials={
        "google": {"service_account": sa},
        "env": {"BIGQUERY_PROJECT": PROJECT, "GOOGLE_APPLICATION_CREDENTIALS": str(key_file)}})
    role = Role.objects.create(name="analyst-toolbox", rules={**DEMO_ANALYST_RULES,
                                                              "tools": GRANTED})
    Grant.objects.create(role=role, connection=conn, group=engineer.groups.get(), reason="t")
    security_revision_bump()
    _, token = token_issue(user=engineer, connections=[conn], by=None, meta=SYSTEM)
    yield {"connection": conn, "token": token, "endpoint": endpoint}
    endpoint.stop()


async def _tool_names(url: str, token: str) -> list[str]:
    async with gateway_client(url, token) as client:
        return sorted(t.name for t in (await client.list_tools()).tools)


async def test_toolbox_tools_are_listed_pinned_and_policed(gateway, toolbox) -> None:  # type: ignore[no-untyped-def]
    from asgiref.sync import sync_to_async

    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.events import SYSTEM
    from proxy.db import run_db

    url = gateway.url("toolbox")
    # The preset filled in the Toolbox's tool fields.
    conn = toolbox["connection"]
    assert conn.sql_tools == {"execute_sql": "sql"}
    assert conn.metadata_tools["get_table_info"] == {"table": "table", "dataset": "dataset"}

    # Nothing accepted yet: the Toolbox's tools are hidden (and recorded as pending).
    assert await _tool_names(url, toolbox["token"]) == []
    from portal.models import ToolCatalogEntry

    pending = await run_db(lambda: set(ToolCatalogEntry.objects.filter(
        connection=conn, status="pending").values_list("name", flat=True)))
    assert {"execute_sql", "get_table_info", "list_table_ids", "forecast"} <= pending
    # The admin's review asks the Toolbox itself (with the minted token): same catalogue.
    assert await sync_to_async(tool_catalog_refresh)(connection=conn) == []
    await run_db(tool_catalog_accept, connection=conn, by=None, meta=SYSTEM)
    await _wait_for(lambda: _tool_names(url, toolbox["token"]), sorted(GRANTED))
    assert toolbox["endpoint"].issued  # the gateway minted a token for the Toolbox

    async with gateway_client(url, toolbox["token"]) as client:
        # Refusals decided by the gateway, before the Toolbox sees anything.
        computed = await client.call_tool("execute_sql", {
            "sql": f"SELECT UPPER(email) FROM {DATASET}.customers"})
        assert computed.is_error and "sql.masked_column_use" in computed.content[0].text
        write = await client.call_tool("execute_sql", {"sql": f"DELETE FROM {DATASET}.orders "
                                                              "WHERE TRUE"})
        assert write.is_error and "sql.statement_class" in write.content[0].text
        other = await client.call_tool("get_table_info", {"dataset": "hr", "table": "payroll"})
        assert other.is_error and "metadata.table_not_allowed" in other.content[0].text
        project = await client.call_tool("get_table_info", {
            "project": "elsewhere", "dataset": DATASET, "table": "customers"})
        assert project.is_error and "request.project_mismatch" in project.content[0].text
        ungranted = await client.call_tool("forecast", {"history_data": "x", "timestamp_col": "t",
                                                        "data_col": "d"})
        assert ungranted.is_error and "tool.not_granted" in ungranted.content[0].text
        # Allowed: reaches the Toolbox, whose BigQuery (Google) is out of reach here; its error
        # comes back as a tool error through the error-text policy.
        allowed = await client.call_tool("execute_sql", {
            "sql": f"SELECT email FROM {DATASET}.customers LIMIT 1"})
        assert allowed.is_error
        assert "withheld" in allowed.content[0].text or "request id" in \
            allowed.content[0].text.lower()

    from audit.models import AuditRecord

    outcomes = await run_db(lambda: list(AuditRecord.objects.filter(
        connection="toolbox", tool="execute_sql").values_list("decision", flat=True)))
    assert "deny" in outcomes and "allow" in outcomes


async def _wait_for(probe, expected, attempts: int = 20):  # type: ignore[no-untyped-def]
    import asyncio

    got = None
    for _ in range(attempts):
        got = await probe()
        if got == expected:
            return got
        await asyncio.sleep(0.25)
    raise AssertionError(f"expected {expected}, got {got}")
