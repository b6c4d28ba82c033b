"""Handlers on their own, against fakes (recorder writer, upstream): what they answer and what
they record, in order. No database, emulator or server."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from proxy import jsonrpc
from proxy.call import Call
from proxy.context import CallContext, Identity
from proxy.handlers import handler_for
from proxy.handlers.data_request import handle_data_request
from proxy.handlers.plain_request import handle_plain_request
from proxy.handlers.tool_call import handle_tool_call
from proxy.record import Recorder
from proxy.transports.http import UpstreamError, UpstreamResponse


class FakeWriter:
    def __init__(self) -> None:
        self.entries: list[Any] = []

    async def write(self, entry: Any) -> None:
        self.entries.append(entry)


class FakeUpstream:
    def __init__(self, reply: UpstreamResponse | UpstreamError) -> None:
        self.reply = reply
        self.sent: list[bytes] = []

    async def send(self, method: str, headers: dict[str, str], body: bytes = b"",
                   timeout: float | None = None) -> UpstreamResponse:
        self.sent.append(body)
        if isinstance(self.reply, UpstreamError):
            raise self.reply
        return self.reply


class NoGrants:
    roles = ("reader",)
    policy_version = 1

    def resource_role(self, uri: str) -> None:
        return None

    def prompt_role(self, name: str) -> None:
        return None


def setup(message: dict[str, Any], upstream: FakeUpstream) -> tuple[Any, Call, FakeWriter,
                                                                   list[dict[str, Any]]]:
    writer, sent = FakeWriter(), []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    async def receive() -> dict[str, Any]:
        raise AssertionError("not read")

    gw = SimpleNamespace(recorder=Recorder(writer, 10_000),  # type: ignore[arg-type]
                         config=SimpleNamespace(upstream_timeout_seconds=5.0),
                         admission=SimpleNamespace(session_refusal=lambda user: None))
    ctx = CallContext("demo", "127.0.0.1", "test", "", "2025-06-18",
                      identity=Identity(7, "alice", (), "oidc"), auth_method="oidc",
                      jsonrpc_method=message["method"], jsonrpc_id=message["id"])
    call = Call(ctx, {}, "POST", json.dumps(message).encode(), send, receive,
                spec=SimpleNamespace(connection_id=1), plan=NoGrants(),  # type: ignore[arg-type]
                upstream=upstream, message=message, kind="request")
    return gw, call, writer, sent


def answered(sent: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_each_method_has_its_handler() -> None:
    def route(method: str, kind: str = "request", http: str = "POST") -> Any:
        ctx = CallContext("demo", "", "", "", "", jsonrpc_method=method)
        return handler_for(Call(ctx, {}, http, b"", None, None, kind=kind))  # type: ignore[arg-type]

    assert route("tools/call") is handle_tool_call
    assert route("resources/read") is handle_data_request
    assert route("prompts/get") is handle_data_request
    assert route("tools/list") is handle_plain_request
    assert route("initialize") is handle_plain_request
    assert route("notifications/initialized", kind="notification").__name__ == \
        "handle_client_message"
    assert route("", http="GET").__name__ == "handle_stream"
    assert route("", http="DELETE").__name__ == "handle_delete"


async def test_a_resource_no_role_allows_is_denied_recorded_and_never_forwarded() -> None:
    upstream = FakeUpstream(UpstreamResponse(200, {}, b"{}"))
    gw, call, writer, sent = setup({"jsonrpc": "2.0", "id": 3, "method": "resources/read",
                                    "params": {"uri": "file:///secret"}}, upstream)
    await handle_data_request(gw, call)
    assert upstream.sent == []
    assert [(e.event, e.decision) for e in writer.entries] == [
        ("mcp.decision", "deny"), ("mcp.outcome", "deny")]
    status, body = answered(sent)
    assert status == 200 and body["error"]["code"] == jsonrpc.POLICY_DENIED
    assert body["error"]["data"]["reasons"][0]["rule"] == "resource.not_granted"
    assert writer.entries[1].response_sha256  # the answer as it left is on the record


async def test_a_plain_request_is_relayed_and_recorded_once() -> None:
    reply = b'{"jsonrpc":"2.0","id":4,"result":{}}'
    upstream = FakeUpstream(UpstreamResponse(200, {"content-type": "application/json"}, reply))
    gw, call, writer, sent = setup({"jsonrpc": "2.0", "id": 4, "method": "ping"}, upstream)
    await handle_plain_request(gw, call)
    assert [(e.event, e.decision) for e in writer.entries] == [("mcp.request", "allow")]
    assert sent[1]["body"] == reply and len(upstream.sent) == 1


async def test_an_upstream_failure_on_a_plain_request_is_a_502() -> None:
    upstream = FakeUpstream(UpstreamError("upstream.unreachable", "Connection refused"))
    gw, call, writer, sent = setup({"jsonrpc": "2.0", "id": 5, "method": "ping"}, upstream)
    await handle_plain_request(gw, call)
    status, body = answered(sent)
    assert status == 502 and body["error"]["data"]["reason"] == "upstream.unreachable"
    assert [(e.event, e.decision) for e in writer.entries] == [("mcp.request", "error")]
