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

import contextlib
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from mcp import types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from proxy.call import Call
from proxy.context import CallContext, Identity
from proxy.db import run_db
from proxy.error_texts import ErrorTextPolicy
from proxy.handlers.relay import relay_server_message
from proxy.record import Recorder
from proxy.sse import SseEvent
from tests.conftest import DATASET, http_server
from tests.proxy.test_handlers import FakeUpstream, FakeWriter

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


def notifications_relayed() -> dict[str, int]:
    """What the call's outcome record counts of the notifications that left on its stream."""
    from audit.models import AuditRecord

    outcome = AuditRecord.objects.filter(event="mcp.outcome", tool="execute_sql").get()
    return outcome.detail.get("notifications_relayed")


def server_requests() -> list[tuple[str, str, list[str]]]:
    from audit.models import AuditRecord

    return [(r.jsonrpc_method, r.decision, [x.get("rule") for x in r.reasons or []])
            for r in AuditRecord.objects.filter(event="mcp.server_request").order_by("seq")]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
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
    assert await run_db(notifications_relayed) == {
        "notifications/message": len(seen.logs), "notifications/progress": len(seen.progress)}
    stored = await run_db(audit_texts)
    assert raw["ssn"] not in stored and raw["email"] not in stored


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
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
    assert await run_db(notifications_relayed) == {
        "notifications/message": len(seen.logs), "notifications/progress": len(seen.progress)}
    stored = await run_db(audit_texts)
    assert raw["ssn"] not in stored and raw["email"] not in stored
    assert "Explain why " in stored  # the audit trail holds what was relayed


# ---------------------------------------------------------------------------- the relay alone
# Against fakes (recorder writer, upstream, connection directory): what leaves on the client's
# stream, what the upstream is told, what is recorded.

SSN = "248-48-5228"


def relay_setup(*, reads_masked: bool, session: str = "s1", masked_elsewhere: bool = False,
                progress_token: Any = None) -> tuple[Any, Call, FakeWriter, FakeUpstream,
                                                    list[bytes]]:
    from proxy.transports.http import UpstreamResponse

    writer, upstream, out = FakeWriter(), FakeUpstream(UpstreamResponse(202, {}, b"")), []

    async def send(event: dict[str, Any]) -> None:
        out.append(event.get("body", b""))

    async def receive() -> dict[str, Any]:
        raise AssertionError("not read")

    spec = SimpleNamespace(allow_sampling=True, allow_elicitation=True)

    async def directory_get(slug: str) -> Any:
        return spec

    masked_calls: Counter[tuple[str, str]] = Counter()
    if masked_elsewhere:
        masked_calls[("demo", session)] = 1
    gw = SimpleNamespace(recorder=Recorder(writer, 10_000),  # type: ignore[arg-type]
                         config=SimpleNamespace(upstream_timeout_seconds=5.0),
                         directory=SimpleNamespace(get=directory_get),
                         masked_calls=masked_calls)
    ctx = CallContext("demo", "127.0.0.1", "test", session, "2025-11-25",
                      identity=Identity(7, "alice", (), "oidc"), auth_method="oidc",
                      jsonrpc_method="tools/call", jsonrpc_id=1)
    if reads_masked:
        ctx.error_texts = ErrorTextPolicy(ctx.request_id, withhold=True)
    params: dict[str, Any] = {"name": "execute_sql", "arguments": {"sql": "SELECT 1"}}
    if progress_token is not None:
        params["_meta"] = {"progressToken": progress_token}
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    call = Call(ctx, {}, "POST", json.dumps(message).encode(), send, receive,
                upstream=upstream, message=message, kind="request")
    return gw, call, writer, upstream, out


async def relay(gw: Any, call: Call, data: str) -> None:
    message = None
    with contextlib.suppress(ValueError):
        message = json.loads(data)
    await relay_server_message(gw, call, SseEvent(data=data, event="message"), message)


def relayed(out: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(b.decode().split("data: ", 1)[1]) for b in out if b]


def log(data: Any, level: str = "error") -> str:
    return json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                       "params": {"level": level, "logger": "db", "data": data}})


@pytest.mark.asyncio
async def test_what_cannot_be_read_or_masked_is_dropped_and_recorded_without_its_text() -> None:
    gw, call, writer, _, out = relay_setup(reads_masked=False, progress_token="p1")
    deep: Any = SSN
    for _ in range(40):
        deep = [deep]
    for data in (f"not json {SSN}", json.dumps({"jsonrpc": "2.0", "method": f"x/{SSN}"}),
                 log(deep), log(SSN, level=f"loud {SSN}"),
                 json.dumps({"jsonrpc": "2.0", "method": "notifications/progress",
                             "params": {"progressToken": "someone-else", "progress": 1,
                                        "message": "half"}})):
        await relay(gw, call, data)
    assert out == []
    assert [(e.event, e.decision, e.reasons[0]["rule"]) for e in writer.entries] == [
        ("mcp.server_request", "withheld", "server_message.dropped")] * 5
    assert SSN not in repr(writer.entries)


@pytest.mark.asyncio
async def test_progress_for_the_calls_own_token_is_relayed_with_its_text_detected() -> None:
    gw, call, _, _, out = relay_setup(reads_masked=False, progress_token="p1")
    await relay(gw, call, json.dumps({
        "jsonrpc": "2.0", "method": "notifications/progress",
        "params": {"progressToken": "p1", "progress": 3, "total": 4,
                   "message": f"converting {SSN}"}}))
    [progress] = relayed(out)
    assert progress["params"]["progressToken"] == "p1" and progress["params"]["progress"] == 3
    assert progress["params"]["message"].startswith("converting ")
    assert SSN not in progress["params"]["message"]


@pytest.mark.asyncio
async def test_texts_are_withheld_while_another_call_of_the_session_reads_masked_columns() -> None:
    # Stdio and the GET stream cannot say which call a log message belongs to: a message on
    # a stream of the session (here a call that reads nothing masked) is withheld meanwhile.
    gw, call, _, _, out = relay_setup(reads_masked=False, masked_elsewhere=True)
    await relay(gw, call, log({"note": f"value {SSN}"}))
    [message] = relayed(out)
    assert message["params"]["level"] == "error"
    assert "withheld" in message["params"]["data"] and SSN not in json.dumps(message)
    # Another session is not affected: its texts go through the detectors.
    gw, call, _, _, out = relay_setup(reads_masked=False, session="s2")
    gw.masked_calls[("demo", "s1")] = 1
    await relay(gw, call, log("rows fetched: 3"))
    assert relayed(out)[0]["params"]["data"] == "rows fetched: 3"


@pytest.mark.asyncio
async def test_a_server_request_with_text_during_a_masked_call_is_refused_to_the_upstream(
        ) -> None:
    gw, call, writer, upstream, out = relay_setup(reads_masked=True)
    await relay(gw, call, json.dumps({
        "jsonrpc": "2.0", "id": 9, "method": "elicitation/create",
        "params": {"message": f"Is {SSN} yours?", "requestedSchema": {"type": "object"}}}))
    await relay(gw, call, json.dumps({"jsonrpc": "2.0", "id": 10, "method": "roots/list",
                                      "params": {"_meta": {"why": SSN}}}))
    await relay(gw, call, json.dumps({"jsonrpc": "2.0", "id": 11, "method": "ping"}))
    await relay(gw, call, json.dumps({"jsonrpc": "2.0", "id": f"q-{SSN}", "method": "ping"}))
    assert [m["id"] for m in relayed(out)] == [11]  # a ping carries no text: relayed
    refusals = [json.loads(b) for b in upstream.sent]
    assert [(r["id"], r["error"]["code"]) for r in refusals] == [
        (9, -32001), (10, -32001), (f"q-{SSN}", -32001)]
    assert SSN not in repr(refusals[:2])
    assert [(e.jsonrpc_method, e.decision) for e in writer.entries] == [
        ("elicitation/create", "deny"), ("roots/list", "withheld"), ("ping", "withheld")]
    assert writer.entries[0].reasons[0]["rule"] == "server_request.masked_call"
    assert SSN not in repr(writer.entries)


@pytest.mark.asyncio
@pytest.mark.parametrize("reads_masked", [True, False], ids=["masked-call", "plain-call"])
async def test_input_requests_of_2026_follow_the_same_rule(reads_masked: bool) -> None:
    from proxy.handlers.relay import _final_message

    gw, call, writer, _, _ = relay_setup(reads_masked=reads_masked)
    sampling = {"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": f"Explain {SSN}"}}],
        "maxTokens": 20}}
    raw = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {
        "resultType": "input_required", "inputRequests": {"a": sampling},
        "requestState": "opaque"}}).encode()
    answer = json.loads(await _final_message(gw, call.ctx, raw, lambda r: r, 200))
    assert SSN not in json.dumps(answer) and SSN not in repr(writer.entries)
    [record] = writer.entries
    if reads_masked:  # refused: the client gets a tool error instead of the request
        assert answer["result"]["isError"] is True
        assert (record.decision, record.reasons[0]["rule"], record.arguments) == (
            "deny", "server_request.masked_call", None)
    else:  # relayed, its text through the detectors; the record holds what was relayed
        request = answer["result"]["inputRequests"]["a"]
        assert request["params"]["messages"][0]["content"]["text"].startswith("Explain ")
        assert record.decision == "allow"
        assert record.arguments["messages"] == request["params"]["messages"]
