"""How every handler ends a call: a refusal, an answer, an upstream failure, a cancellation;
each recorded before (or, for failures while failing closed, as well as) it leaves."""

from __future__ import annotations

import logging
from typing import Any

from proxy import jsonrpc
from proxy.asgi_io import Send, send_bytes, send_json, stream_chunk
from proxy.context import CallContext
from proxy.record import Recorder
from proxy.sse import SseEvent
from proxy.transports.http import UpstreamError
from proxy.verdict import Verdict

log = logging.getLogger("wardgate.gateway")


def denial_text(reasons: list[dict[str, str]]) -> str:
    lines = [f"- {r.get('message', '')} [{r.get('rule', '')}]" for r in reasons]
    return "Wardgate denied this call:\n" + "\n".join(lines)


def tool_error(ctx: CallContext, text: str, data: dict[str, Any]) -> dict[str, Any]:
    """A CallToolResult with isError for this call's protocol revision."""
    return jsonrpc.tool_error_result(ctx.protocol_version, text, data)


def decision_data(ctx: CallContext, **extra: Any) -> dict[str, Any]:
    """What a client is told about a decision: the audit request id and the reasons."""
    return {"request_id": ctx.request_id, "reasons": ctx.reasons, **extra}


async def finish(recorder: Recorder, ctx: CallContext, event: str, out: bytes) -> None:
    """Record the outcome with the response exactly as it will leave."""
    recorder.keep_response(ctx, out)
    await recorder.record(ctx, event)


async def refuse(recorder: Recorder, ctx: CallContext, send: Send, verdict: Verdict) -> None:
    """Answer a refusal as an HTTP error carrying a JSON-RPC error; recorded as mcp.rejected."""
    ctx.settle(verdict)
    reason = verdict.reason
    out = jsonrpc.dumps_compact(jsonrpc.error(
        ctx.jsonrpc_id, verdict.code, reason.message,
        jsonrpc.refusal_data(reason.rule, ctx.request_id)))
    recorder.keep_response(ctx, out)
    await recorder.record(ctx, "mcp.rejected")
    await send_bytes(send, verdict.status, out,
                     {"content-type": "application/json", **verdict.headers})


async def answer(recorder: Recorder, ctx: CallContext, send: Send,
                 payload: dict[str, Any]) -> None:
    """Answer with a JSON-RPC message the gateway wrote itself (200), outcome recorded."""
    out = jsonrpc.dumps_compact(payload)
    await finish(recorder, ctx, "mcp.outcome", out)
    await send_bytes(send, 200, out, {"content-type": "application/json"})


async def answer_in_stream(recorder: Recorder, ctx: CallContext, send: Send, out: bytes,
                           event: str = "mcp.outcome") -> None:
    """Record, then send as the last event of an SSE stream already open, and end it."""
    await finish(recorder, ctx, event, out)
    await stream_chunk(send, SseEvent(data=out.decode(), event="message").encode())
    await stream_chunk(send, b"", more=False)


async def upstream_failed(recorder: Recorder, ctx: CallContext, send: Send, exc: UpstreamError,
                          event: str, in_stream: bool = False) -> None:
    """The upstream could not be reached or failed: a tool call sees a tool error (so the
    model reads why), anything else a 502."""
    ctx.settle(Verdict.of("error", exc.reason, exc.message))
    if ctx.jsonrpc_method == "tools/call":
        payload = jsonrpc.result(ctx.jsonrpc_id, tool_error(
            ctx, f"The upstream MCP server failed: {exc.message}", decision_data(ctx)))
        status = 200
    else:
        payload = jsonrpc.error(ctx.jsonrpc_id, jsonrpc.GATEWAY_ERROR, exc.message,
                                jsonrpc.refusal_data(exc.reason, ctx.request_id))
        status = 502
    out = jsonrpc.dumps_compact(payload)
    if in_stream:
        await answer_in_stream(recorder, ctx, send, out, event)
        return
    await finish(recorder, ctx, event, out)
    await send_bytes(send, status, out, {"content-type": "application/json"})


async def cancelled(recorder: Recorder, ctx: CallContext, rule: str, message: str) -> None:
    # Only reached while the call was still running: whatever was recorded before (even
    # an outcome about to be released) never reached the client, and this record says so.
    ctx.settle(Verdict.of("cancelled", rule, message))
    ctx.response_body = ctx.response_sha256 = ""
    await recorder.record(ctx, "mcp.outcome")


async def record_quietly(recorder: Recorder, ctx: CallContext, reason: str) -> None:
    """Best effort: an internal error is recorded too (the caller is failing closed)."""
    ctx.settle(Verdict.of("error", reason, "internal gateway error"))
    try:
        await recorder.record(ctx, "mcp.error")
    except Exception:
        log.exception("could not record the gateway error")


async def send_quietly(send: Send, status: int, payload: dict[str, Any],
                       headers: dict[str, str] | None = None) -> None:
    try:
        await send_json(send, status, payload, headers)
    except Exception:  # the response had already started; nothing more can be said
        log.debug("could not send the error response", exc_info=True)
