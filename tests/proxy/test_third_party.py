"""Wardgate with MCP software nobody here wrote.

The reference server (`@modelcontextprotocol/server-everything`, TypeScript SDK) sits behind the
gateway as the connection "everything"; the official Python client, the MCP conformance suite
and the MCP Inspector CLI talk to it through the gateway. Real processes throughout; the npm
packages are pinned in tests/node/package.json and installed by tests/node_tools.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from asgiref.sync import async_to_sync
from mcp import types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from bigquery_mcp.emulator import free_port
from proxy.asgi_io import Receive, Scope, Send
from proxy.db import run_db
from tests.conftest import http_server
from tests.node_tools import NODE_DIR, NodeTools, node_tools
from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

SLUG = "everything"
RULES: dict[str, Any] = {
    "tools": ["*"],
    "resources": ["*"],
    "prompts": ["*"],
    "masking": {"actions": {}, "detect_content": True},
}


# ---------------------------------------------------------------------------- processes


@pytest.fixture(scope="session")
def tools() -> NodeTools:
    return node_tools()


@pytest.fixture(scope="module")
def everything_url(tools: NodeTools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """server-everything over Streamable HTTP on a free port."""
    port = free_port()
    with http_server(lambda _: tools.command("mcp-server-everything", "streamableHttp"),
                     tmp_path_factory.mktemp("everything"), env=tools.env(PORT=str(port)),
                     cwd=NODE_DIR, port=port) as url:
        yield url


# ---------------------------------------------------------------------------- clients


@dataclass
class Inbox:
    """What reached the client from the server: sampling and elicitation requests."""

    sampled: list[types.CreateMessageRequestParams] = field(default_factory=list)
    elicited: list[types.ElicitRequestParams] = field(default_factory=list)

    async def sampling(self, context: Any, params: types.CreateMessageRequestParams
                       ) -> types.CreateMessageResult:
        self.sampled.append(params)
        return types.CreateMessageResult(
            role="assistant", model="test-model",
            content=types.TextContent(type="text", text="the sampled answer"))

    async def elicitation(self, context: Any, params: types.ElicitRequestParams
                          ) -> types.ElicitResult:
        self.elicited.append(params)
        return types.ElicitResult(action="decline")


def mcp_client(url: str, token: str | None = None, inbox: Inbox | None = None) -> Client:
    """The official client; with an inbox it declares sampling and elicitation (and so sees
    the server's tools that need them)."""
    if inbox is None:
        return gateway_client(url, token) if token else Client(url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    return Client(transport, sampling_callback=inbox.sampling,
                  elicitation_callback=inbox.elicitation)


async def _list_tools(url: str) -> list[dict[str, Any]]:
    async with mcp_client(url, inbox=Inbox()) as client:
        tools = (await client.list_tools()).tools
    return [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools]


def texts(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


# ---------------------------------------------------------------------------- the connection


@dataclass
class Everything:
    connection: Any
    token: str
    upstream: str
    url: str


def set_up_connection(upstream: str, user: Any, gateway_url: str, *, slug: str = SLUG,
                      allow_sampling: bool = False,
                      allow_elicitation: bool = False) -> Everything:
    from portal.models import Connection, Grant, Role
    from portal.services.catalog import (
        tool_catalog_accept,
        tool_catalog_observe,
        tool_catalog_refresh,
    )
    from portal.services.events import SYSTEM
    from portal.services.security import security_revision_bump
    from portal.services.tokens import token_issue

    connection = Connection.objects.create(
        slug=slug, name=f"third-party MCP server ({slug})",
        transport=Connection.Transport.HTTP, upstream_url=upstream,
        allow_sampling=allow_sampling, allow_elicitation=allow_elicitation)
    role = Role.objects.create(name=f"{slug}-user", rules=RULES)
    Grant.objects.create(role=role, connection=connection, user=user, reason="third-party test")
    tool_catalog_refresh(connection=connection)
    # server-everything offers some tools only to clients that declare sampling/elicitation,
    # which the portal's refresh does not: observe those too (see the report).
    tool_catalog_observe(connection=connection, tools=async_to_sync(_list_tools)(upstream))
    tool_catalog_accept(connection=connection, by=None, meta=SYSTEM)
    security_revision_bump()
    _, token = token_issue(user=user, connections=[connection], by=None, meta=SYSTEM)
    return Everything(connection, token, upstream, gateway_url)


@pytest.fixture
def everything(request: pytest.FixtureRequest, gateway: Any, engineer: Any,
               everything_url: str) -> Everything:
    """The connection, its grant to the engineer, the accepted catalogue and a token;
    parametrize indirectly with {"allow_sampling": ..., "allow_elicitation": ...}."""
    flags = getattr(request, "param", {})
    return set_up_connection(everything_url, engineer, gateway.url(SLUG), **flags)


def records(slug: str = SLUG, **filters: Any) -> list[Any]:
    from audit.models import AuditRecord

    return list(AuditRecord.objects.filter(connection=slug, **filters).order_by("seq"))


async def chain_ok() -> bool:
    from audit.verify import verify_chain

    return (await run_db(verify_chain)).ok


# ---------------------------------------------------------------------------- 1. same results


async def test_same_results_direct_and_through_the_gateway(everything: Everything) -> None:
    async with mcp_client(everything.upstream) as direct, \
            mcp_client(everything.url, everything.token) as gated:
        assert gated.protocol_version == direct.protocol_version
        direct_tools = [dump(t) for t in (await direct.list_tools()).tools]
        gated_tools = [dump(t) for t in (await gated.list_tools()).tools]
        assert [t["name"] for t in gated_tools] == [t["name"] for t in direct_tools]
        assert gated_tools == direct_tools  # schemas, descriptions, annotations: identical
        names = {t["name"] for t in direct_tools}
        assert {"echo", "get-sum", "trigger-long-running-operation"} <= names

        calls = [("echo", {"message": "hi"}), ("get-sum", {"a": 2, "b": 40}),
                 ("get-structured-content", {"location": "Chicago"})]
        for tool, arguments in calls:
            want = await direct.call_tool(tool, arguments)
            got = await gated.call_tool(tool, arguments)
            assert not got.is_error, got
            assert dump(got) == dump(want), tool
        echo = await gated.call_tool("echo", {"message": "hi"})
        assert isinstance(echo.content[0], types.TextContent)
        assert echo.content[0].text == "Echo: hi"

        direct_resources = [dump(r) for r in (await direct.list_resources()).resources]
        gated_resources = [dump(r) for r in (await gated.list_resources()).resources]
        assert gated_resources == direct_resources and gated_resources
        text_uri = next(r["uri"] for r in direct_resources
                        if str(r.get("mimeType", "")).startswith("text/"))
        want_read = dump(await direct.read_resource(text_uri))
        got_read = dump(await gated.read_resource(text_uri))
        assert got_read == want_read and got_read["contents"][0]["text"]

        direct_prompts = [dump(p) for p in (await direct.list_prompts()).prompts]
        assert [dump(p) for p in (await gated.list_prompts()).prompts] == direct_prompts
        for prompt, arguments in [("simple-prompt", None), ("args-prompt", {"city": "Paris"})]:
            want_prompt = dump(await direct.get_prompt(prompt, arguments))
            assert dump(await gated.get_prompt(prompt, arguments)) == want_prompt

        progress: dict[str, list[tuple[float, float | None]]] = {"direct": [], "gateway": []}

        def on_progress(into: str) -> Any:
            async def callback(value: float, total: float | None, message: str | None) -> None:
                progress[into].append((value, total))
            return callback

        arguments = {"duration": 1, "steps": 4}
        want = await direct.call_tool("trigger-long-running-operation", arguments,
                                      progress_callback=on_progress("direct"))
        got = await gated.call_tool("trigger-long-running-operation", arguments,
                                    progress_callback=on_progress("gateway"))
        assert dump(got) == dump(want)
        assert len(progress["direct"]) == 4
        assert progress["gateway"] == progress["direct"]

    # Every call is in the audit trail: a decision before it went upstream, an outcome after.
    audit = await run_db(records)
    decisions = {r.request_id: r for r in audit if r.event == "mcp.decision"}
    outcomes = [r for r in audit if r.event == "mcp.outcome"]
    assert Counter((r.jsonrpc_method, r.tool) for r in outcomes) == Counter({
        ("tools/call", "echo"): 2, ("tools/call", "get-sum"): 1,
        ("tools/call", "get-structured-content"): 1,
        ("tools/call", "trigger-long-running-operation"): 1, ("resources/read", text_uri): 1,
        ("prompts/get", "simple-prompt"): 1, ("prompts/get", "args-prompt"): 1})
    for outcome in outcomes:
        assert outcome.decision == "allow" and outcome.response_sha256
        assert decisions[outcome.request_id].decision == "allow"
    listed = {r.jsonrpc_method for r in audit if r.event == "mcp.request"}
    assert {"initialize", "tools/list", "resources/list", "prompts/list"} <= listed
    assert "notifications/initialized" in {r.jsonrpc_method for r in audit}
    assert {r.actor for r in audit if r.event.startswith("mcp.")} == {"engineer"}
    # The setup's catalogue review is on record too (by the system, in this fixture).
    assert {r.event for r in audit if r.actor == "system"} == {
        "portal.tool_catalog_refreshed", "portal.tool_catalog_accepted"}
    assert await chain_ok()


# ---------------------------------------------------------------------------- 2. images


async def test_image_results_pass_through(everything: Everything) -> None:
    async with mcp_client(everything.upstream) as direct, \
            mcp_client(everything.url, everything.token) as gated:
        want = await direct.call_tool("get-tiny-image", {})
        got = await gated.call_tool("get-tiny-image", {})
    assert not got.is_error
    images = [c for c in got.content if isinstance(c, types.ImageContent)]
    assert images and images[0].mime_type == "image/png" and len(images[0].data) > 100
    assert dump(got) == dump(want)
    outcome = [r for r in await run_db(records, tool="get-tiny-image") if r.event == "mcp.outcome"]
    assert [r.decision for r in outcome] == ["allow"]  # not SQL, so not withheld
    assert images[0].data in outcome[0].response_body
    assert await chain_ok()


# ---------------------------------------------------------------------------- 3. server requests


@pytest.mark.parametrize("everything", [{"allow_sampling": False}, {"allow_sampling": True}],
                         indirect=True, ids=["sampling-refused", "sampling-allowed"])
async def test_sampling_reaches_the_client_only_where_allowed(everything: Everything) -> None:
    allowed = everything.connection.allow_sampling
    inbox = Inbox()
    async with mcp_client(everything.url, everything.token, inbox) as gated:
        assert gated.protocol_version == "2025-11-25"  # server-everything: handshake era
        result = await gated.call_tool("trigger-sampling-request", {"prompt": "hello"})
    text = texts(result)
    server_requests = await run_db(records, event="mcp.server_request")
    assert [r.jsonrpc_method for r in server_requests] == ["sampling/createMessage"]
    if allowed:
        assert len(inbox.sampled) == 1
        assert "hello" in str(inbox.sampled[0].messages[0].content)
        assert not result.is_error and "the sampled answer" in text
        assert server_requests[0].decision == "allow"
    else:
        assert inbox.sampled == []  # never reached the client
        assert result.is_error and "sampling/createMessage is not allowed" in text
        assert server_requests[0].decision == "deny"
    assert "hello" in json.dumps(server_requests[0].arguments)
    assert await chain_ok()


@pytest.mark.parametrize("everything", [{"allow_elicitation": False},
                                        {"allow_elicitation": True}],
                         indirect=True, ids=["elicitation-refused", "elicitation-allowed"])
async def test_elicitation_reaches_the_client_only_where_allowed(everything: Everything) -> None:
    allowed = everything.connection.allow_elicitation
    inbox = Inbox()
    async with mcp_client(everything.url, everything.token, inbox) as gated:
        result = await gated.call_tool("trigger-elicitation-request", {})
    text = texts(result)
    server_requests = await run_db(records, event="mcp.server_request")
    assert [r.jsonrpc_method for r in server_requests] == ["elicitation/create"]
    if allowed:
        assert len(inbox.elicited) == 1 and inbox.elicited[0].message
        assert not result.is_error and "declined" in text  # the client's answer got back
        assert server_requests[0].decision == "allow"
    else:
        assert inbox.elicited == []
        assert result.is_error and "elicitation/create is not allowed" in text
        assert server_requests[0].decision == "deny"
    assert await chain_ok()


# ---------------------------------------------------------------------------- 3b. 2026-07-28

# From 2026-07-28 a server does not send sampling/elicitation as server-to-client requests: it
# answers tools/call (prompts/get, resources/read) with {"resultType": "input_required",
# "inputRequests": {key: {"method": "sampling/createMessage", "params": ...}}, "requestState"},
# and the client retries the call with "inputResponses" and the echoed "requestState". No
# third-party server on npm speaks 2026-07-28 yet, so this one is the official Python SDK's
# own resolver machinery (mcp 2.3.0), run as its own process.
SDK_SERVER = '''
import sys
from typing import Annotated

from pydantic import BaseModel

from mcp.server.mcpserver import ElicitationResult, Elicit, MCPServer, Resolve, Sample
from mcp_types import CreateMessageResult, SamplingMessage, TextContent

server = MCPServer("input-required")


class Name(BaseModel):
    name: str


def ask_llm(topic: str) -> Sample:
    text = TextContent(type="text", text=f"write about {topic}")
    return Sample([SamplingMessage(role="user", content=text)], max_tokens=50)


def ask_user() -> Elicit[Name]:
    return Elicit("Who are you?", Name)


@server.tool()
def summarize(topic: str, answer: Annotated[CreateMessageResult, Resolve(ask_llm)]) -> str:
    """Summarize a topic with the client's LLM (sampling)."""
    return f"LLM said: {answer.content.text}"


@server.tool()
def greet(who: Annotated[ElicitationResult[Name], Resolve(ask_user)]) -> str:
    """Greet the user, asking their name (elicitation)."""
    return f"user answered: {who.action}"


server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
'''
SDK_SLUG = "sdk-input-required"


@pytest.fixture(scope="module")
def sdk_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("sdk-server")
    (folder / "server.py").write_text(SDK_SERVER)
    with http_server(lambda port: [sys.executable, str(folder / "server.py"), str(port)],
                     folder) as url:
        yield url


@pytest.fixture
def sdk_connection(request: pytest.FixtureRequest, gateway: Any, engineer: Any,
                   sdk_server_url: str) -> Everything:
    flags = getattr(request, "param", {})
    return set_up_connection(sdk_server_url, engineer, gateway.url(SDK_SLUG), slug=SDK_SLUG,
                             **flags)


@pytest.mark.parametrize("sdk_connection", [{"allow_sampling": True, "allow_elicitation": True}],
                         indirect=True)
async def test_2026_input_requests_complete_through_the_gateway(
        sdk_connection: Everything) -> None:
    inbox = Inbox()
    async with mcp_client(sdk_connection.url, sdk_connection.token, inbox) as gated:
        assert gated.protocol_version == "2026-07-28"
        summary = await gated.call_tool("summarize", {"topic": "cats"})
        greeting = await gated.call_tool("greet", {})
    assert texts(summary) == "LLM said: the sampled answer"
    assert texts(greeting) == "user answered: decline"
    assert len(inbox.sampled) == 1 and len(inbox.elicited) == 1
    legs = await run_db(records, SDK_SLUG, event="mcp.outcome", tool="summarize")
    assert len(legs) == 2  # the input_required answer and the retried call, both recorded
    assert '"resultType":"input_required"' in legs[0].response_body
    assert await chain_ok()


@pytest.mark.parametrize("sdk_connection", [{}, {"allow_sampling": True,
                                                 "allow_elicitation": True}],
                         indirect=True, ids=["refused", "allowed"])
@pytest.mark.parametrize("tool, arguments, method", [
    ("summarize", {"topic": "cats"}, "sampling/createMessage"),
    ("greet", {}, "elicitation/create"),
], ids=["sampling", "elicitation"])
async def test_2026_input_requests_are_policed_and_recorded(
        sdk_connection: Everything, tool: str, arguments: dict[str, Any], method: str) -> None:
    allowed = sdk_connection.connection.allow_sampling
    inbox = Inbox()
    async with mcp_client(sdk_connection.url, sdk_connection.token, inbox) as gated:
        result = await gated.call_tool(tool, arguments)
    reached = inbox.sampled if method == "sampling/createMessage" else inbox.elicited
    if allowed:
        assert len(reached) == 1 and not result.is_error
    else:
        assert reached == []  # the embedded request never reached the client
        assert result.is_error and f"{method} is not allowed" in texts(result)
    server_requests = await run_db(records, SDK_SLUG, event="mcp.server_request")
    assert [(r.jsonrpc_method, r.decision) for r in server_requests] == [
        (method, "allow" if allowed else "deny")]
    assert await chain_ok()


# ---------------------------------------------------------------------------- 4. conformance


class BearerRelay:
    """What the conformance CLI lacks: it has no option for request headers (its server
    scenarios build a bare StreamableHTTPClientTransport(url)). This relay, on 127.0.0.1, adds
    the bearer token and passes everything else through to the gateway unchanged, Host and
    Origin included, streaming the answers (SSE) back as they come."""

    HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length",
                  b"authorization", b"te", b"upgrade"}

    def __init__(self, target_base: str, token: str) -> None:
        import uvicorn

        self.target_base = target_base
        self.token = token
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(
            self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
            timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def url(self, slug: str) -> str:
        return f"http://127.0.0.1:{self.port}/mcp/{slug}"

    def __enter__(self) -> BearerRelay:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the relay did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in self.HOP_BY_HOP]
        headers.append((b"authorization", f"Bearer {self.token}".encode()))
        async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5)) as client, \
                anyio.create_task_group() as group:
            async def on_disconnect() -> None:  # the client went away: stop relaying
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(on_disconnect)
            request = client.build_request(scope["method"], self.target_base + scope["path"],
                                           headers=headers, content=body)
            response = await client.send(request, stream=True)
            try:
                await send({"type": "http.response.start", "status": response.status_code,
                            "headers": [(k, v) for k, v in response.headers.raw
                                        if k.lower() not in self.HOP_BY_HOP]})
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                await response.aclose()
            group.cancel_scope.cancel()


async def run_conformance(tools: NodeTools, url: str, scenario: str, out: Path
                          ) -> list[dict[str, Any]]:
    """One conformance scenario against `url`; its checks (from the saved checks.json)."""
    folder = out / scenario
    proc = await asyncio.create_subprocess_exec(
        *tools.command("conformance", "server", "--url", url, "--scenario", scenario,
                       "-o", str(folder)),
        env=tools.env(), cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    found = sorted(folder.glob("*/checks.json"))
    assert found, f"conformance {scenario} saved no checks:\n{output.decode()[-3000:]}"
    checks: list[dict[str, Any]] = json.loads(found[-1].read_text())
    return checks


CONFORMANCE_SCENARIOS = ["server-initialize", "ping", "tools-list"]


async def test_conformance_scenarios_pass_through_the_gateway(
        everything: Everything, gateway: Any, tools: NodeTools, tmp_path: Path) -> None:
    try:
        with BearerRelay(gateway.base_url, everything.token) as relay:
            # One after the other: the test database (in-memory SQLite, shared cache) answers
            # concurrent audit writes with "database table is locked" (see the report).
            results = [await run_conformance(tools, relay.url(SLUG), scenario, tmp_path)
                       for scenario in CONFORMANCE_SCENARIOS]
    finally:
        await end_sessions(everything)
    for scenario, checks in zip(CONFORMANCE_SCENARIOS, results, strict=True):
        failed = [c for c in checks if c["status"] in ("FAILURE", "WARNING")]
        assert checks and not failed, (scenario, failed)
    listed = next(c for c in results[2] if c["id"] == "tools-list")
    assert "echo" in listed["details"]["tools"]
    audit = await run_db(records)
    methods = {r.jsonrpc_method for r in audit if r.actor == "engineer"}
    assert {"initialize", "notifications/initialized", "ping", "tools/list"} <= methods
    assert any(r.user_agent for r in audit)
    assert await chain_ok()


async def test_conformance_dns_rebinding_protection_through_the_gateway(
        everything: Everything, gateway: Any, tools: NodeTools, tmp_path: Path) -> None:
    """The scenario sends an initialize with Host/Origin evil.example.com (must be refused
    with a 4xx) and one with the URL's own localhost Host/Origin (must succeed). The relay
    passes both headers through as they are, so the gateway is what answers. With the token
    supplied, only Host/Origin validation can make the first check pass; a 401 for a
    missing token would make it pass vacuously, which is why the token is sent."""
    with BearerRelay(gateway.base_url, everything.token) as relay:
        checks = await run_conformance(tools, relay.url(SLUG), "dns-rebinding-protection",
                                       tmp_path)
    status = {c["id"]: c["status"] for c in checks}
    assert status["localhost-host-valid-accepted"] == "SUCCESS", checks
    assert status["localhost-host-rebinding-rejected"] == "SUCCESS", checks


# ---------------------------------------------------------------------------- inspector


async def run_inspector(tools: NodeTools, url: str, token: str, *args: str) -> Any:
    proc = await asyncio.create_subprocess_exec(
        *tools.command("mcp-inspector", "--cli", url, "--transport", "http",
                       "--header", f"Authorization: Bearer {token}", *args),
        env=tools.env(), cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, (args, out.decode()[-2000:], err.decode()[-2000:])
    return json.loads(out)


async def test_inspector_cli_through_the_gateway(everything: Everything,
                                                 tools: NodeTools) -> None:
    try:
        listed = await run_inspector(tools, everything.url, everything.token,
                                     "--method", "tools/list")
        echoed = await run_inspector(tools, everything.url, everything.token,
                                     "--method", "tools/call", "--tool-name", "echo",
                                     "--tool-arg", "message=from the inspector")
    finally:
        await end_sessions(everything)
    names = [t["name"] for t in listed["tools"]]
    assert "echo" in names and "get-sum" in names
    assert echoed["content"][0]["text"] == "Echo: from the inspector"
    # The inspector declares roots, for which server-everything adds get-roots-list; the
    # catalogue review declared every capability too, so that tool was reviewed and accepted.
    assert "get-roots-list" in names
    assert not await run_db(records, event="catalog.changed")
    calls = await run_db(records, tool="echo", event="mcp.outcome")
    assert [c.decision for c in calls] == ["allow"]
    assert {"tools/list", "initialize"} <= {r.jsonrpc_method for r in await run_db(records)}
    assert await chain_ok()


# ---------------------------------------------------------------------------- GET streams

LEGACY = "2025-11-25"


def legacy_headers(token: str, session: str | None = None) -> dict[str, str]:
    headers = {"authorization": f"Bearer {token}", "mcp-protocol-version": LEGACY,
               "accept": "application/json, text/event-stream",
               "content-type": "application/json"}
    return {**headers, "mcp-session-id": session} if session else headers


async def open_legacy_session(http: httpx.AsyncClient, url: str, token: str) -> str:
    """initialize + notifications/initialized by hand; the session id."""
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {},
        "clientInfo": {"name": "raw-http", "version": "1"}}}
    answer = await http.post(url, json=hello, headers=legacy_headers(token))
    assert answer.status_code == 200, answer.text
    session = answer.headers["mcp-session-id"]
    done = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                           headers=legacy_headers(token, session))
    assert done.status_code == 202, done.text
    return session


async def end_sessions(everything: Everything) -> None:
    """DELETE the sessions third-party clients left behind. The TypeScript clients close their
    sockets without a DELETE, and the gateway goes on relaying their GET streams until the
    upstream ends them (see test_abandoned_get_stream_is_released); without this the
    gateway's shutdown waits for them."""
    sessions = {r.mcp_session_id for r in await run_db(records) if r.mcp_session_id}
    async with httpx.AsyncClient(timeout=10) as http:
        for session in sessions:
            await http.delete(everything.url, headers=legacy_headers(everything.token, session))


async def test_abandoned_get_stream_is_released(everything: Everything) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        session = await open_legacy_session(http, everything.url, everything.token)
    try:
        for attempt in range(2):  # the second GET only works if the first was let go
            async with httpx.AsyncClient(timeout=10) as http, http.stream(
                    "GET", everything.url, headers=legacy_headers(everything.token, session)
            ) as stream:
                assert stream.status_code == 200, (attempt, await stream.aread())
                assert stream.headers["content-type"].startswith("text/event-stream")
            # the client has gone: the gateway should now let the upstream stream go
            await asyncio.sleep(0.5)
    finally:
        await end_sessions(everything)
    opened = await run_db(records, event="mcp.stream_opened")
    assert len(opened) == 2

