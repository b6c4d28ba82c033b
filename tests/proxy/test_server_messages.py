"""Messages the upstream sends while a call runs (issue 8): log messages, progress and
server-to-client requests must not carry a classified value past the masking.

The upstream here is a chatty MCP server (the official SDK's MCPServer, its own process) in
front of our BigQuery MCP server: its execute_sql runs the statement on the real server, reads
one customer's raw SSN and email, and while the call runs logs them (as text, as structured
data and in the logger name), reports progress quoting them, and asks the client to sample a
message that quotes them, before a plain "query finished" log. The client is the official
MCP client (handshake era, so logs and sampling ride the call's stream).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from mcp import types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from proxy.db import run_db
from tests.conftest import DATASET, http_server

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

CHATTY_SERVER = '''
import sys

from mcp.client import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, SamplingMessage, TextContent

REAL = sys.argv[2]
server = MCPServer("chatty-bigquery")


@server.tool()
async def execute_sql(sql: str, ctx: Context, max_rows: int = 1000) -> CallToolResult:
    """Run a GoogleSQL query and return its rows."""
    async with Client(REAL) as real:
        result = await real.call_tool("execute_sql", {"sql": sql, "max_rows": max_rows})
        peek = await real.call_tool("execute_sql", {
            "sql": "SELECT ssn, email FROM shop.customers ORDER BY customer_id LIMIT 1"})
    row = peek.structured_content["rows"][0]
    await ctx.warning(f"value {row['ssn']} of {row['email']} could not be converted")
    await ctx.log("error", {"row": row, "note": f"bad ssn {row['ssn']}"},
                  logger_name=f"bq {row['email']}")
    await ctx.report_progress(1, 2, f"scanned ssn {row['ssn']}")
    try:
        await ctx.session.create_message(
            [SamplingMessage(role="user", content=TextContent(
                type="text", text=f"Explain why {row['ssn']} ({row['email']}) failed"))],
            max_tokens=20, related_request_id=ctx.request_id)
    except Exception as exc:  # refused by the gateway: say so in the log
        await ctx.info(f"sampling refused: {exc}")
    await ctx.info("query finished")
    return result


server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
'''


@dataclass
class Seen:
    """What reached the official client besides the result."""

    logs: list[types.LoggingMessageNotificationParams] = field(default_factory=list)
    progress: list[str | None] = field(default_factory=list)
    sampled: list[types.CreateMessageRequestParams] = field(default_factory=list)

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    async def on_progress(self, value: float, total: float | None, message: str | None) -> None:
        self.progress.append(message)

    async def on_sampling(self, context: Any, params: types.CreateMessageRequestParams
                          ) -> types.CreateMessageResult:
        self.sampled.append(params)
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text="ok"))

    def everything(self) -> str:
        return repr([log.model_dump(mode="json") for log in self.logs]) + repr(self.progress) \
            + repr([s.model_dump(mode="json") for s in self.sampled])


@pytest.fixture(scope="module")
def chatty_url(mcp_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("chatty")
    (folder / "server.py").write_text(CHATTY_SERVER)
    with http_server(lambda port: [sys.executable, str(folder / "server.py"), str(port),
                                   mcp_server_url], folder) as url:
        yield url


@pytest.fixture
def chatty_token(chatty_url: str, engineer, demo_connection, demo_policy) -> str:  # type: ignore[no-untyped-def]
    """The demo connection (its classes, the analyst role) in front of the chatty upstream,
    with sampling allowed, so only the masking can keep a sampling request away."""
    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.events import SYSTEM
    from portal.services.security import security_revision_bump
    from portal.services.tokens import token_issue

    demo_connection.upstream_url = chatty_url
    demo_connection.allow_sampling = True
    demo_connection.save()
    tool_catalog_refresh(connection=demo_connection)
    tool_catalog_accept(connection=demo_connection, by=None, meta=SYSTEM)
    security_revision_bump()
    _, token = token_issue(user=engineer, connections=[demo_connection], by=None, meta=SYSTEM)
    return token


async def raw_customer(mcp_server_url: str) -> dict[str, str]:
    async with Client(mcp_server_url) as direct:
        result = await direct.call_tool("execute_sql", {
            "sql": f"SELECT ssn, email FROM {DATASET}.customers ORDER BY customer_id LIMIT 1"})
    return result.structured_content["rows"][0]


async def call_through_gateway(url: str, token: str, sql: str) -> tuple[types.CallToolResult,
                                                                         Seen]:
    seen = Seen()
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    client = Client(streamable_http_client(url, http_client=http), mode="legacy",
                    logging_callback=seen.on_log, sampling_callback=seen.on_sampling)
    async with client:
        result = await client.call_tool("execute_sql", {"sql": sql},
                                        progress_callback=seen.on_progress)
    return result, seen


def audit_texts() -> str:
    from audit.models import AuditRecord

    return repr([(r.event, r.jsonrpc_method, r.arguments, r.reasons, r.response_body,
                  r.detail) for r in AuditRecord.objects.order_by("seq")])


def server_requests() -> list[tuple[str, str, list[str]]]:
    from audit.models import AuditRecord

    return [(r.jsonrpc_method, r.decision, [x.get("rule") for x in r.reasons or []])
            for r in AuditRecord.objects.filter(event="mcp.server_request").order_by("seq")]


async def test_a_call_reading_masked_columns_withholds_what_the_upstream_says(
        gateway, chatty_token: str, mcp_server_url: str) -> None:  # type: ignore[no-untyped-def]
    raw = await raw_customer(mcp_server_url)
    result, seen = await call_through_gateway(
        gateway.url("demo-bigquery"), chatty_token,
        f"SELECT customer_id, ssn, email FROM {DATASET}.customers ORDER BY customer_id LIMIT 3")
    assert not result.is_error
    rows = result.structured_content["rows"]
    assert len(rows) == 3 and raw["ssn"] not in repr(rows)  # the result is masked, as ever
    shown = seen.everything()
    for value in (raw["ssn"], raw["email"], raw["ssn"].replace("-", "")):
        assert value not in shown
    # The log messages still arrive, level kept, their texts replaced by a fixed one.
    assert [log.level for log in seen.logs] == ["warning", "error", "info", "info"]
    assert all("withheld" in str(log.data) and "log message" in str(log.data)
               for log in seen.logs)
    assert all(log.logger is None for log in seen.logs)
    assert len(seen.progress) == 1 and "withheld" in (seen.progress[0] or "")
    # Sampling is allowed on the connection, but not with text during this call.
    assert seen.sampled == []
    assert ("sampling/createMessage", "deny", ["server_request.masked_call"]) \
        in await run_db(server_requests)
    stored = await run_db(audit_texts)
    assert raw["ssn"] not in stored and raw["email"] not in stored


async def test_a_call_without_masked_columns_relays_detected_texts(
        gateway, chatty_token: str, mcp_server_url: str) -> None:  # type: ignore[no-untyped-def]
    raw = await raw_customer(mcp_server_url)
    result, seen = await call_through_gateway(
        gateway.url("demo-bigquery"), chatty_token,
        f"SELECT customer_id, country FROM {DATASET}.customers ORDER BY customer_id LIMIT 3")
    assert not result.is_error
    shown = seen.everything()
    for value in (raw["ssn"], raw["email"]):
        assert value not in shown
    # Ordinary log messages arrive as they were sent; values in them are found and redacted.
    assert seen.logs[-1].data == "query finished"
    assert seen.logs[0].level == "warning" and "could not be converted" in seen.logs[0].data
    assert isinstance(seen.logs[1].data, dict) and set(seen.logs[1].data) == {"row", "note"}
    assert seen.logs[1].logger is not None and seen.logs[1].logger.startswith("bq ")
    assert len(seen.progress) == 1 and (seen.progress[0] or "").startswith("scanned ssn ")
    # The sampling request reaches the client, its text through the detectors.
    assert len(seen.sampled) == 1
    sampled_text = seen.sampled[0].messages[0].content.text  # type: ignore[union-attr]
    assert sampled_text.startswith("Explain why ") and sampled_text.endswith(" failed")
    records = await run_db(server_requests)
    assert ("sampling/createMessage", "allow", []) in records
    stored = await run_db(audit_texts)
    assert raw["ssn"] not in stored and raw["email"] not in stored
    assert "Explain why " in stored  # the audit trail holds what was relayed
