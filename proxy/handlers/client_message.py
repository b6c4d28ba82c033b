"""Notifications and responses from the client (notifications/initialized, cancellation,
progress, answers to server requests): relayed unchanged and recorded as mcp.notification."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.asgi_io import send_bytes
from proxy.call import Call
from proxy.handlers.respond import upstream_failed
from proxy.transports.http import UpstreamError
from proxy.verdict import Verdict

if TYPE_CHECKING:
    from proxy.pipeline import Pipeline


async def handle_client_message(gw: Pipeline, call: Call) -> None:
    ctx, message = call.ctx, call.message
    assert message is not None
    ctx.jsonrpc_method = message.get("method", "response")
    ctx.jsonrpc_id = message.get("id")
    ctx.settle(Verdict.allow())
    try:
        response = await call.upstream.send("POST", call.headers, call.body,
                                            timeout=gw.config.upstream_timeout_seconds)
    except UpstreamError as exc:
        await upstream_failed(gw.recorder, ctx, call.send, exc, "mcp.notification")
        return
    try:
        out = response.body if not response.is_stream else b""
        await gw.recorder.record(ctx, "mcp.notification")
        await send_bytes(call.send, response.status, out, response.headers)
    finally:
        await response.aclose()
