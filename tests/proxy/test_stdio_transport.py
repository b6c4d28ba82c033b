"""The stdio upstream adapter: real subprocesses (our BigQuery MCP server and a tiny SDK server),
driven with the raw JSON-RPC bodies the official client sends, and end to end with the official
`mcp` client over HTTP through a minimal ASGI app that relays to the adapter."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from bigquery_mcp.emulator import BigQueryEmulator, free_port
from proxy.asgi_io import (
    Receive,
    Scope,
    Send,
    read_body,
    request_headers,
    send_bytes,
    send_json,
    start_stream,
    stream_chunk,
)
from proxy.transports.http import UpstreamError, UpstreamResponse
from proxy.transports.stdio import StdioCommand, StdioSessionPool, StdioUpstream
from tests.conftest import DATASET, PROJECT, ROOT, RunningGateway

pytestmark = pytest.mark.asyncio

ECHO_SERVER = ROOT / "tests" / "fixtures" / "stdio_echo_server.py"
UPSTREAM_TOKEN = "tok-upstream-5f2b9c"
HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
SQL = f"SELECT customer_id FROM {DATASET}.customers ORDER BY customer_id LIMIT 3"

# A misbehaving "server" without the SDK: junk on stdout and lines over the pool's cap.
NOISY_SERVER = r"""
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    out = ["this is not JSON"]
    if msg["method"] == "big":
        out.append(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {"blob": "x" * 10000}}))
    elif msg["method"] == "bignote":
        out.append(json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                               "params": {"level": "info", "data": "y" * 10000}}))
        out.append(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {"small": True}}))
    else:
        out.append(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "serverInfo": {"name": "noisy", "version": "1"}}}))
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
"""

# Answers initialize and mirrors every other line it reads back as a log notification, so a
# test can see exactly what the gateway wrote to the server's stdin.
RECORDER_SERVER = r"""
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("method") == "initialize":
        reply = {"jsonrpc": "2.0", "id": msg["id"], "result": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "serverInfo": {"name": "recorder", "version": "1"}}}
    else:
        reply = {"jsonrpc": "2.0", "method": "notifications/message",
                 "params": {"level": "debug", "data": msg}}
    print(json.dumps(reply), flush=True)
"""


# -- helpers ----------------------------------------------------------------------------------


def initialize(id_: int | str = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": id_,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE,
            "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "1"},
        },
    }


def call(
    id_: int | str,
    tool: str,
    arguments: dict[str, Any] | None = None,
    *,
    progress: str | int | None = None,
    modern: bool = False,
) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": arguments or {}}
    meta: dict[str, Any] = dict(ENVELOPE) if modern else {}
    if progress is not None:
        meta["progressToken"] = progress
    if meta:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


def modern_headers(message: dict[str, Any]) -> dict[str, str]:
    headers = ACCEPT | {"mcp-protocol-version": MODERN, "mcp-method": message["method"]}
    name = message.get("params", {}).get("name")
    if name is not None:
        headers["mcp-name"] = name
    return headers


async def post(
    upstream: StdioUpstream,
    message: Any,
    *,
    session: str | None = None,
    modern: bool = False,
    timeout: float | None = None,
    headers: dict[str, str] | None = None,
) -> UpstreamResponse:
    if headers is None:
        headers = modern_headers(message) if modern else dict(ACCEPT)
        if session is not None:
            headers |= {"mcp-session-id": session, "mcp-protocol-version": HANDSHAKE}
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return await upstream.send("POST", headers, body, timeout=timeout)


async def messages(response: UpstreamResponse) -> list[dict[str, Any]]:
    """Every JSON-RPC message of a response, JSON body or SSE stream alike."""
    if not response.is_stream:
        return [json.loads(response.body)]
    assert response.events is not None
    out = []
    try:
        async for event in response.events:
            assert event.event == "message"
            out.append(json.loads(event.data))
    finally:
        await response.aclose()
    return out


async def result_of(response: UpstreamResponse) -> dict[str, Any]:
    final = (await messages(response))[-1]
    assert "result" in final, final
    return final["result"]


async def open_session(upstream: StdioUpstream) -> str:
    response = await post(upstream, initialize())
    assert response.status == 200 and response.headers["content-type"] == "application/json"
    assert (await result_of(response))["protocolVersion"] == HANDSHAKE
    session = response.headers["mcp-session-id"]
    ack = await post(
        upstream, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session=session
    )
    assert ack.status == 202 and ack.body == b""
    return session


def pid_of(pool: StdioSessionPool, session: str | None = None, key: str | None = None) -> int:
    pids = [
        p.pid
        for p in pool.processes()
        if (session is None or p.session_id == session) and (key is None or p.key == key)
    ]
    assert len(pids) == 1 and pids[0] is not None, pool.processes()
    return pids[0]


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie is dead too, merely not yet reaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return True


async def wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not process_gone(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        await asyncio.sleep(0.05)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def bigquery_command(bigquery_emulator: BigQueryEmulator) -> StdioCommand:
    return StdioCommand(
        (
            sys.executable,
            "-m",
            "bigquery_mcp",
            "--transport",
            "stdio",
            "--project",
            PROJECT,
            "--endpoint",
            bigquery_emulator.endpoint,
        ),
        {},
    )


@pytest.fixture
def echo_command() -> StdioCommand:
    return StdioCommand((sys.executable, str(ECHO_SERVER)), {"UPSTREAM_TOKEN": UPSTREAM_TOKEN})


@pytest.fixture
async def pool() -> AsyncIterator[StdioSessionPool]:
    pool = StdioSessionPool()
    yield pool
    await pool.close_all()


@pytest.fixture
def echo(pool: StdioSessionPool, echo_command: StdioCommand) -> StdioUpstream:
    return pool.upstream("echo", echo_command)


# -- sessions: 2025-11-25 and earlier, raw JSON-RPC --------------------------------------------


async def test_bigquery_session_lists_tools_runs_sql_and_delete_ends_the_process(
    pool: StdioSessionPool,
    bigquery_command: StdioCommand,
) -> None:
    upstream = pool.upstream("bq", bigquery_command)
    session = await open_session(upstream)
    pid = pid_of(pool, session)

    tools = await result_of(
        await post(upstream, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session=session)
    )
    assert {"execute_sql", "list_tables", "get_table_schema"} <= {t["name"] for t in tools["tools"]}
    response = await post(upstream, call(3, "execute_sql", {"sql": SQL}), session=session)
    assert response.headers["mcp-session-id"] == session
    rows = (await result_of(response))["structuredContent"]["rows"]
    assert [r["customer_id"] for r in rows] == [1, 2, 3]

    deleted = await upstream.send("DELETE", ACCEPT | {"mcp-session-id": session})
    assert deleted.status == 200
    await wait_gone(pid)
    assert pool.processes() == []
    gone = await post(upstream, call(4, "list_datasets"), session=session)
    assert gone.status == 404 and gone.headers["content-type"] == "application/json"
    assert json.loads(gone.body)["error"]["data"]["reason"] == "session.unknown"


async def test_session_protocol_errors(pool: StdioSessionPool, echo: StdioUpstream) -> None:
    session = await open_session(echo)

    missing = await post(echo, call(1, "echo", {"text": "x"}))
    assert (
        missing.status == 400
        and "Missing session ID" in json.loads(missing.body)["error"]["message"]
    )
    unknown = await post(echo, call(1, "echo", {"text": "x"}), session="no-such-session")
    assert unknown.status == 404
    error = json.loads(unknown.body)
    assert error["jsonrpc"] == "2.0" and error["id"] == 1 and error["error"]["code"] == -32600
    # A session belongs to the connection (key) that opened it.
    elsewhere = pool.upstream("other", echo.command)
    assert (await post(elsewhere, call(1, "echo", {"text": "x"}), session=session)).status == 404

    bad_json = await post(echo, b"{nope", session=session)
    assert bad_json.status == 400 and json.loads(bad_json.body)["error"]["code"] == -32700
    batch = await post(echo, [call(1, "echo", {"text": "x"})], session=session)
    assert (
        batch.status == 400 and json.loads(batch.body)["error"]["data"]["reason"] == "request.batch"
    )
    assert (await echo.send("PUT", ACCEPT | {"mcp-session-id": session})).status == 405
    assert (await echo.send("GET", ACCEPT)).status == 400
    assert (await echo.send("DELETE", ACCEPT | {"mcp-session-id": "nope"})).status == 404


async def test_progress_and_log_messages_are_relayed_in_order_before_the_response(
    echo: StdioUpstream,
) -> None:
    session = await open_session(echo)
    response = await post(
        echo, call("req-1", "count", {"steps": 3}, progress="tok-1"), session=session
    )
    assert response.status == 200 and response.headers["content-type"] == "text/event-stream"
    assert response.headers["mcp-session-id"] == session
    got = await messages(response)
    assert [m.get("method") for m in got] == [
        "notifications/message",
        "notifications/progress",
    ] * 3 + [None]
    progress = [m["params"] for m in got if m.get("method") == "notifications/progress"]
    assert [(p["progressToken"], p["progress"], p["total"]) for p in progress] == [
        ("tok-1", 1, 3),
        ("tok-1", 2, 3),
        ("tok-1", 3, 3),
    ]
    assert (
        got[-1]["id"] == "req-1" and got[-1]["result"]["structuredContent"]["result"] == "counted 3"
    )


async def test_concurrent_requests_on_one_session_each_get_their_own_response(
    echo: StdioUpstream,
) -> None:
    session = await open_session(echo)
    slow = asyncio.create_task(post(echo, call("slow", "sleep", {"seconds": 0.5}), session=session))
    await asyncio.sleep(0.1)
    # Same id as a request still in flight: refused rather than allowed to steal its answer.
    duplicate = await post(echo, call("slow", "echo", {"text": "thief"}), session=session)
    assert duplicate.status == 409
    fast = await asyncio.gather(
        post(echo, call(7, "echo", {"text": "seven"}), session=session),
        post(echo, call("7", "echo", {"text": "string seven"}), session=session),
        post(echo, call(8, "count", {"steps": 2}, progress=8), session=session),
    )
    results = [await messages(r) for r in fast]
    assert results[0][-1] == {**results[0][-1], "id": 7}
    assert results[0][-1]["result"]["structuredContent"]["result"] == "seven"
    assert results[1][-1]["id"] == "7"
    assert results[1][-1]["result"]["structuredContent"]["result"] == "string seven"
    assert results[2][-1]["id"] == 8
    assert all(
        m["params"]["progressToken"] == 8
        for m in results[2][:-1]
        if m["method"] == "notifications/progress"
    )
    slow_final = (await messages(await slow))[-1]
    assert (
        slow_final["id"] == "slow"
        and slow_final["result"]["structuredContent"]["result"] == "slept 0.5"
    )


async def test_get_stream_carries_session_notifications_and_is_exclusive(
    echo: StdioUpstream,
) -> None:
    session = await open_session(echo)
    headers = ACCEPT | {"mcp-session-id": session, "mcp-protocol-version": HANDSHAKE}
    stream = await echo.send("GET", headers)
    assert stream.status == 200 and stream.headers["content-type"] == "text/event-stream"
    assert (await echo.send("GET", headers)).status == 409

    answer = await messages(await post(echo, call(2, "announce"), session=session))
    # list_changed is session-level: on the GET stream, not in the request's answer.
    assert [m.get("method") for m in answer] == [None]
    assert stream.events is not None
    event = await asyncio.wait_for(anext(stream.events), 5)
    assert json.loads(event.data) == {
        "jsonrpc": "2.0",
        "method": "notifications/tools/list_changed",
    }
    await stream.aclose()
    again = await echo.send("GET", headers)
    assert again.status == 200
    await again.aclose()


async def test_crash_fails_every_pending_request_and_removes_the_session(
    pool: StdioSessionPool,
    echo: StdioUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="wardgate.gateway.stdio")
    session = await open_session(echo)
    pid = pid_of(pool, session)
    pending = asyncio.create_task(post(echo, call(2, "sleep", {"seconds": 30}), session=session))
    await asyncio.sleep(0.2)
    with pytest.raises(UpstreamError) as crashed:
        await post(echo, call(3, "crash"), session=session)
    assert crashed.value.reason == "upstream.exited"
    assert "exit code 3" in crashed.value.message
    with pytest.raises(UpstreamError) as stranded:
        await asyncio.wait_for(pending, 5)
    assert stranded.value.reason == "upstream.exited"
    await wait_gone(pid)
    assert (await post(echo, call(4, "echo", {"text": "x"}), session=session)).status == 404
    assert pool.processes() == []
    # The child's last words are logged for the operator, with the injected credential redacted.
    logged = caplog.text
    assert "exited with code 3" in logged and "giving up with token [redacted]" in logged
    assert UPSTREAM_TOKEN not in logged


async def test_timeout_fails_the_request_but_keeps_the_session(echo: StdioUpstream) -> None:
    session = await open_session(echo)
    with pytest.raises(UpstreamError) as timed_out:
        await post(echo, call(2, "sleep", {"seconds": 5}), session=session, timeout=0.3)
    assert timed_out.value.reason == "upstream.timeout"
    # The gateway told the server it gave up (notifications/cancelled), and the session lives on.
    assert await result_of(
        await post(echo, call(3, "echo", {"text": "still here"}), session=session)
    )


async def test_gateway_timeout_mid_stream_cancels_the_request_at_the_server(
    pool: StdioSessionPool,
) -> None:
    recorder = pool.upstream("recorder", StdioCommand((sys.executable, "-c", RECORDER_SERVER), {}))
    session = await open_session(recorder)
    stream = await recorder.send("GET", ACCEPT | {"mcp-session-id": session})
    assert stream.events is not None

    async def next_on_get() -> dict[str, Any]:
        assert stream.events is not None
        return json.loads((await asyncio.wait_for(anext(stream.events), 5)).data)["params"]["data"]

    # With no request in flight, what the server says goes to the GET stream.
    assert (await next_on_get())["method"] == "notifications/initialized"
    response = await post(recorder, call(2, "never-answered"), session=session, timeout=0.3)
    # The server's first message (its log line) opened the stream; then it went quiet.
    assert response.is_stream and response.events is not None
    echoed = json.loads((await anext(response.events)).data)
    assert echoed["params"]["data"]["id"] == 2
    with pytest.raises(UpstreamError) as timed_out:
        await anext(response.events)
    assert timed_out.value.reason == "upstream.timeout"
    await response.aclose()
    # The gateway gave up as the requester, so it told the server to stop working on it.
    assert await next_on_get() == {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                   "params": {"requestId": 2, "reason": "gateway timeout"}}
    await stream.aclose()


async def test_child_sees_only_the_injected_environment(
    echo: StdioUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WARDGATE_GATEWAY_ONLY_SECRET", "gateway-secret-value")
    session = await open_session(echo)

    async def env(name: str, id_: int) -> str:
        result = await result_of(
            await post(echo, call(id_, "env", {"name": name}), session=session)
        )
        return result["structuredContent"]["result"]

    assert await env("WARDGATE_GATEWAY_ONLY_SECRET", 2) == "<unset>"
    assert await env("UPSTREAM_TOKEN", 3) == UPSTREAM_TOKEN
    assert await env("PATH", 4) == os.environ["PATH"]
    assert await env("DJANGO_SETTINGS_MODULE", 5) == "<unset>"


# -- 2026-07-28: no sessions, leased workers ---------------------------------------------------


async def test_bigquery_modern_discover_and_sql_without_a_session(
    pool: StdioSessionPool,
    bigquery_command: StdioCommand,
) -> None:
    upstream = pool.upstream("bq", bigquery_command)
    discover = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "server/discover",
        "params": {"_meta": ENVELOPE},
    }
    response = await post(upstream, discover, modern=True)
    assert response.status == 200 and "mcp-session-id" not in response.headers
    assert MODERN in (await result_of(response))["supportedVersions"]

    response = await post(upstream, call(2, "execute_sql", {"sql": SQL}, modern=True), modern=True)
    rows = (await result_of(response))["structuredContent"]["rows"]
    assert [r["customer_id"] for r in rows] == [1, 2, 3]
    # One warm worker served both requests and is back in the pool, idle.
    [worker] = pool.processes()
    assert worker.era == "modern" and worker.session_id is None and not worker.busy


async def test_modern_http_rules_are_enforced_by_the_adapter(echo: StdioUpstream) -> None:
    message = call(1, "echo", {"text": "x"}, modern=True)
    mismatch = await post(echo, message, headers=modern_headers(message) | {"mcp-name": "env"})
    assert mismatch.status == 400 and json.loads(mismatch.body)["error"]["code"] == -32020
    no_envelope = await post(echo, call(1, "echo", {"text": "x"}), headers=modern_headers(message))
    assert no_envelope.status == 400 and json.loads(no_envelope.body)["error"]["code"] == -32602
    future = await post(
        echo, message, headers=modern_headers(message) | {"mcp-protocol-version": "2099-01-01"}
    )
    assert future.status == 400
    init = await post(
        echo,
        initialize() | {"params": {**initialize()["params"], "_meta": ENVELOPE}},
        headers=ACCEPT | {"mcp-protocol-version": MODERN, "mcp-method": "initialize"},
    )
    assert init.status == 400 and json.loads(init.body)["error"]["code"] == -32022
    note = await post(
        echo,
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
        modern=True,
    )
    assert note.status == 202
    assert (await echo.send("GET", ACCEPT | {"mcp-protocol-version": MODERN})).status == 405
    unknown_tool = await post(
        echo,
        {"jsonrpc": "2.0", "id": 9, "method": "no/such", "params": {"_meta": ENVELOPE}},
        modern=True,
    )
    assert unknown_tool.status == 404 and json.loads(unknown_tool.body)["error"]["code"] == -32601


async def test_modern_concurrent_requests_never_see_each_others_messages(
    pool: StdioSessionPool,
    echo: StdioUpstream,
) -> None:
    # Same JSON-RPC id and the same progress token from two clients at once.
    first, second = await asyncio.gather(
        post(echo, call(1, "count", {"steps": 3}, progress="t", modern=True), modern=True),
        post(echo, call(1, "count", {"steps": 5}, progress="t", modern=True), modern=True),
    )
    got = await asyncio.gather(messages(first), messages(second))
    for stream, steps in zip(got, (3, 5), strict=True):
        progress = [m["params"] for m in stream if m.get("method") == "notifications/progress"]
        assert [p["progress"] for p in progress] == list(range(1, steps + 1))
        assert {p["total"] for p in progress} == {steps}
        assert stream[-1]["id"] == 1
        assert stream[-1]["result"]["structuredContent"]["result"] == f"counted {steps}"
    assert [p.era for p in pool.processes()] == ["modern", "modern"]


async def test_modern_abandoned_stream_retires_its_worker(
    pool: StdioSessionPool,
    echo: StdioUpstream,
) -> None:
    response = await post(
        echo, call(1, "count", {"steps": 500}, progress=1, modern=True), modern=True
    )
    assert response.is_stream and response.events is not None
    pid = pid_of(pool, key="echo")
    await anext(response.events)
    await response.aclose()  # the client went away: on 2026-07-28 that is cancellation
    await wait_gone(pid)
    again = await post(echo, call(2, "echo", {"text": "fresh"}, modern=True), modern=True)
    assert (await result_of(again))["structuredContent"]["result"] == "fresh"
    assert pid_of(pool, key="echo") != pid


# -- limits -------------------------------------------------------------------------------------


async def test_session_limit_evicts_the_idlest_then_refuses_when_all_are_busy(
    echo_command: StdioCommand,
) -> None:
    pool = StdioSessionPool(max_sessions=2)
    try:
        echo = pool.upstream("echo", echo_command)
        first = await open_session(echo)
        second = await open_session(echo)
        await result_of(await post(echo, call(2, "echo", {"text": "recent"}), session=second))
        third = await open_session(echo)  # evicts `first`, the least recently used idle one
        assert (await post(echo, call(3, "echo", {"text": "x"}), session=first)).status == 404
        assert {p.session_id for p in pool.processes()} == {second, third}

        busy = [
            asyncio.create_task(post(echo, call(9, "sleep", {"seconds": 1}), session=s))
            for s in (second, third)
        ]
        await asyncio.sleep(0.2)
        refused = await post(echo, initialize())
        assert refused.status == 503
        assert json.loads(refused.body)["error"]["data"]["reason"] == "upstream.session_limit"
        for task in busy:
            await messages(await task)
    finally:
        await pool.close_all()


async def test_idle_sessions_are_reaped(echo_command: StdioCommand) -> None:
    pool = StdioSessionPool(idle_timeout=0.3)
    try:
        echo = pool.upstream("echo", echo_command)
        session = await open_session(echo)
        pid = pid_of(pool, session)
        await wait_gone(pid)
        assert (await post(echo, call(2, "echo", {"text": "x"}), session=session)).status == 404
    finally:
        await pool.close_all()


async def test_non_json_lines_are_skipped_and_oversized_lines_dropped() -> None:
    pool = StdioSessionPool(max_line_bytes=4096)
    try:
        noisy = pool.upstream("noisy", StdioCommand((sys.executable, "-c", NOISY_SERVER), {}))
        session = await open_session(noisy)
        with pytest.raises(UpstreamError) as too_large:
            await post(noisy, {"jsonrpc": "2.0", "id": 2, "method": "big"}, session=session)
        assert too_large.value.reason == "upstream.message_too_large"
        small = await post(noisy, {"jsonrpc": "2.0", "id": 3, "method": "bignote"}, session=session)
        assert await messages(small) == [{"jsonrpc": "2.0", "id": 3, "result": {"small": True}}]
        [info] = pool.processes()
        assert (info.skipped_lines, info.oversized_lines) == (3, 2)
    finally:
        await pool.close_all()


async def test_a_command_that_cannot_start_is_a_clear_error(pool: StdioSessionPool) -> None:
    upstream = pool.upstream("missing", StdioCommand(("/nonexistent/mcp-server",), {}))
    with pytest.raises(UpstreamError) as failed:
        await post(upstream, initialize())
    assert failed.value.reason == "upstream.unreachable"
    assert pool.processes() == []


# -- end to end: the official client over HTTP ---------------------------------------------------


class AdapterApp:
    """The least an HTTP front needs: /mcp/<slug> -> `StdioUpstream.send()` -> the response."""

    def __init__(self, pool: StdioSessionPool, commands: dict[str, StdioCommand]) -> None:
        self.pool = pool
        self.commands = commands
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.loop = asyncio.get_running_loop()
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await self.pool.close_all()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        slug = scope["path"].rstrip("/").rsplit("/", 1)[-1]
        body = await read_body(receive, 10_000_000) if scope["method"] == "POST" else b""
        upstream = self.pool.upstream(slug, self.commands[slug])
        try:
            response = await upstream.send(scope["method"], request_headers(scope), body)
        except UpstreamError as exc:
            await send_json(
                send,
                502,
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {
                        "code": -32603,
                        "message": exc.message,
                        "data": {"reason": exc.reason},
                    },
                },
            )
            return
        if not response.is_stream:
            await send_bytes(send, response.status, response.body, response.headers)
            return
        assert response.events is not None
        await start_stream(send, response.status, response.headers)
        try:
            async for event in response.events:
                await stream_chunk(send, event.encode())
        except UpstreamError:
            pass  # the stream just ends; the client reports the request as failed
        finally:
            await response.aclose()
        await stream_chunk(send, b"", more=False)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[RunningGateway, AdapterApp]]:
    app = AdapterApp(StdioSessionPool(), {})
    running = RunningGateway(app, free_port()).start()
    yield running, app
    if app.loop is not None:  # end open GET streams so uvicorn can stop
        asyncio.run_coroutine_threadsafe(app.pool.close_all(), app.loop).result(30)
    running.stop()


def mount(served: tuple[RunningGateway, AdapterApp], slug: str, command: StdioCommand) -> str:
    running, app = served
    app.commands[slug] = command
    return running.url(slug)


Served = tuple[RunningGateway, AdapterApp]


async def test_official_client_2026_runs_sql_over_stdio(
    served: Served, bigquery_command: StdioCommand,
) -> None:
    url = mount(served, "bq-modern", bigquery_command)
    async with Client(url) as client:
        assert client.protocol_version == MODERN
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"execute_sql", "list_datasets"} <= names
        result = await client.call_tool("execute_sql", {"sql": SQL})
    assert not result.is_error
    assert [r["customer_id"] for r in result.structured_content["rows"]] == [1, 2, 3]


async def test_official_client_legacy_session_runs_sql_and_delete_ends_the_process(
    served: Served, bigquery_command: StdioCommand,
) -> None:
    url = mount(served, "bq-legacy", bigquery_command)
    pool = served[1].pool
    async with Client(url, mode="legacy") as client:
        assert client.protocol_version == HANDSHAKE
        [info] = [p for p in pool.processes() if p.key == "bq-legacy"]
        assert info.era == "legacy" and info.session_id and info.pid
        result = await client.call_tool("execute_sql", {"sql": SQL})
        assert [r["customer_id"] for r in result.structured_content["rows"]] == [1, 2, 3]
    # Leaving the client sends DELETE: the subprocess is terminated and forgotten.
    await wait_gone(info.pid)
    assert [p for p in pool.processes() if p.key == "bq-legacy"] == []


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_official_client_progress_callback_and_crash(
    served: Served, echo_command: StdioCommand, mode: str,
) -> None:
    url = mount(served, f"echo-{mode}", echo_command)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(url, mode=mode) as client:
        result = await client.call_tool("count", {"steps": 3}, progress_callback=on_progress)
        assert result.structured_content == {"result": "counted 3"}
        assert seen == [(1, 3, "step 1 of 3"), (2, 3, "step 2 of 3"), (3, 3, "step 3 of 3")]
        env = await client.call_tool("env", {"name": "UPSTREAM_TOKEN"})
        assert env.structured_content == {"result": UPSTREAM_TOKEN}
        with pytest.raises(MCPError) as crashed:
            await client.call_tool("crash", {})
        assert "The upstream MCP server exited (exit code 3)" in str(crashed.value)
