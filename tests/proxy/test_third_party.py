"""Wardgate with MCP software nobody here wrote.

The reference server (`@modelcontextprotocol/server-everything`, TypeScript SDK) sits behind the
gateway as the connection "everything"; the official Python client, the MCP conformance suite
and the MCP Inspector CLI talk to it through the gateway. Real processes throughout; the npm
packages are pinned in tests/node/package.json and installed by tests/node_tools.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from mcp import types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from bigquery_mcp.emulator import free_port
from proxy.db import run_db
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


def wait_until_answering(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process for {url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


@pytest.fixture(scope="module")
def everything_url(tools: NodeTools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """server-everything over Streamable HTTP on a free port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("everything") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(tools.command("mcp-server-everything", "streamableHttp"),
                                env=tools.env(PORT=str(port)), cwd=NODE_DIR, stdout=log,
                                stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/mcp"
        try:
            wait_until_answering(url, proc)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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


def dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


# ---------------------------------------------------------------------------- the connection


@dataclass
class Everything:
    connection: Any
    token: str
    upstream: str
    url: str


def set_up_connection(upstream: str, user: Any, gateway_url: str, *,
                      allow_sampling: bool = False,
                      allow_elicitation: bool = False) -> Everything:
    from portal.models import Connection, Grant, Role
    from portal.services.catalog import (
        tool_catalog_accept,
        tool_catalog_observe,
        tool_catalog_refresh,
    )
    from portal.services.security import security_revision_bump
    from portal.services.tokens import token_issue

    connection = Connection.objects.create(
        slug=SLUG, name="server-everything (reference MCP server)",
        transport=Connection.Transport.HTTP, upstream_url=upstream,
        allow_sampling=allow_sampling, allow_elicitation=allow_elicitation)
    role = Role.objects.create(name="everything-user", rules=RULES)
    Grant.objects.create(role=role, connection=connection, user=user, reason="third-party test")
    tool_catalog_refresh(connection=connection)
    # server-everything offers some tools only to clients that declare sampling/elicitation,
    # which the portal's refresh does not: observe those too (see the report).
    tool_catalog_observe(connection=connection, tools=async_to_sync(_list_tools)(upstream))
    tool_catalog_accept(connection=connection, accepted_by=None)
    security_revision_bump()
    _, token = token_issue(user=user, connections=[connection])
    return Everything(connection, token, upstream, gateway_url)


@pytest.fixture
def everything(request: pytest.FixtureRequest, gateway: Any, engineer: Any,
               everything_url: str) -> Everything:
    """The connection, its grant to the engineer, the accepted catalogue and a token;
    parametrize indirectly with {"allow_sampling": ..., "allow_elicitation": ...}."""
    flags = getattr(request, "param", {})
    return set_up_connection(everything_url, engineer, gateway.url(SLUG), **flags)


def records(**filters: Any) -> list[Any]:
    from audit.models import AuditRecord

    return list(AuditRecord.objects.filter(connection=SLUG, **filters).order_by("seq"))


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

    audit = await run_db(records)
    by_method: dict[str, list[Any]] = {}
    for record in audit:
        by_method.setdefault(record.jsonrpc_method, []).append(record)
    outcomes = {(r.tool, r.decision) for r in audit if r.event == "mcp.outcome"}
    for tool, _ in calls:
        assert (tool, "allow") in outcomes
    assert ("trigger-long-running-operation", "allow") in outcomes
    assert (text_uri, "allow") in outcomes
    assert ("args-prompt", "allow") in outcomes and ("simple-prompt", "allow") in outcomes
    for method in ("initialize", "notifications/initialized", "tools/list", "resources/list",
                   "prompts/list"):
        assert method in by_method, method
    assert {r.actor for r in audit if r.event != "catalog.changed"} == {"engineer"}
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
        result = await gated.call_tool("trigger-sampling-request", {"prompt": "hello"})
    text = " ".join(c.text for c in result.content if isinstance(c, types.TextContent))
    server_requests = await run_db(records, event="mcp.server_request")
    assert [r.jsonrpc_method for r in server_requests] == ["sampling/createMessage"]
    if allowed:
        assert len(inbox.sampled) == 1
        assert "hello" in str(inbox.sampled[0].messages[0].content)
        assert not result.is_error and "the sampled answer" in text
        assert server_requests[0].decision == "allow"
    else:
        assert inbox.sampled == []  # never reached the client
        assert "the sampled answer" not in text
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
    print(result)
    server_requests = await run_db(records, event="mcp.server_request")
    assert [r.jsonrpc_method for r in server_requests] == ["elicitation/create"]
    assert len(inbox.elicited) == (1 if allowed else 0)
    assert server_requests[0].decision == ("allow" if allowed else "deny")
    assert await chain_ok()


async def test_probe_2026(gateway: Any, engineer: Any) -> None:
    def setup() -> Everything:
        return set_up_connection("http://127.0.0.1:3012/mcp", engineer, gateway.url(SLUG))
    ev = await run_db(setup)
    inbox = Inbox()
    async with mcp_client(ev.url, ev.token, inbox) as gated:
        print(gated.protocol_version)
        try:
            result = await gated.call_tool("summarize", {"topic": "cats"})
            print("RESULT", result)
        except Exception as exc:
            print("EXC", repr(exc))
    print("INBOX", inbox)
    for r in await run_db(records):
        print(r.event, r.jsonrpc_method, r.tool, r.decision, r.reasons, r.response_body[:300])
