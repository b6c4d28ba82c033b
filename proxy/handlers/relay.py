"""Stages forward, mask and record (the outcome), shared by the handlers that forward a
request: send it upstream, relay what comes back, transform (mask / filter) the response to
this request, record the outcome with the response exactly as it leaves, then release it.

Server-to-client requests on the way (sampling, elicitation) reach the client only where the
connection allows them, and are recorded either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from proxy import jsonrpc
from proxy.asgi_io import send_bytes, start_stream, stream_chunk
from proxy.call import Call
from proxy.context import CallContext
from proxy.error_texts import ErrorTextPolicy
from proxy.handlers.respond import answer_in_stream, finish, tool_error, upstream_failed
from proxy.mask import UnmaskableResult
from proxy.sse import SseEvent
from proxy.transports.http import UpstreamError
from proxy.verdict import Reason, Verdict

if TYPE_CHECKING:
    from proxy.pipeline import Pipeline

log = logging.getLogger("wardgate.gateway")

# Requests whose results carry data: a decision record before forwarding, an outcome after.
DATA_METHODS = {"tools/call", "resources/read", "prompts/get"}
# Server-to-client requests that need the connection's permission to reach the client.
GUARDED_SERVER_REQUESTS = {"sampling/createMessage": "allow_sampling",
                           "elicitation/create": "allow_elicitation"}

# What a handler does to the result before it leaves (mask, filter); may be async.
Transform = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


async def exchange(gw: Pipeline, call: Call, transform: Transform | None,
                   event: str = "mcp.outcome", in_stream: bool = False) -> None:
    """Forward the request and relay the answer (see the module docstring).
    `in_stream`: an SSE response to the client is already open (a held call).
    Cancelled (the client left, access revoked): the upstream is told to cancel too."""
    try:
        await _forward(gw, call, transform, event, in_stream)
    except asyncio.CancelledError:
        if call.ctx.jsonrpc_id is not None:
            gw.keep_task(asyncio.get_running_loop().create_task(
                _cancel_upstream(call.ctx, call.upstream, call.headers)))
        raise


async def _cancel_upstream(ctx: CallContext, upstream: Any, headers: dict[str, str]) -> None:
    note = jsonrpc.notification("notifications/cancelled",
                                {"requestId": ctx.jsonrpc_id, "reason": "client went away"})
    out_headers = {k: v for k, v in headers.items() if k not in ("mcp-method", "mcp-name")}
    try:
        reply = await upstream.send("POST", out_headers, jsonrpc.dumps(note), timeout=5.0)
        await reply.aclose()
    except (UpstreamError, TimeoutError, OSError):
        log.info("could not tell the upstream that request %s was cancelled", ctx.request_id)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


async def _forward(gw: Pipeline, call: Call, transform: Transform | None, event: str,
                   in_stream: bool) -> None:
    ctx, send = call.ctx, call.send
    started = time.perf_counter()
    try:
        response = await call.upstream.send("POST", call.headers, call.body,
                                             timeout=gw.config.upstream_timeout_seconds)
    except UpstreamError as exc:
        ctx.upstream_latency_ms = _elapsed_ms(started)
        await upstream_failed(gw.recorder, ctx, send, exc, event, in_stream=in_stream)
        return
    session_key = response.headers.get("mcp-session-id")
    if ctx.jsonrpc_method == "initialize" and session_key and ctx.identity is not None:
        spec = await gw.directory.get(ctx.connection_slug)
        if spec is not None:
            gw.admission.session_opened(session_key, ctx.identity.user_id)
            await gw.live.session_opened(session_key, ctx.identity, spec.connection_id,
                                         ctx.source_ip, ctx.user_agent)
    if not response.is_stream:
        ctx.upstream_latency_ms = _elapsed_ms(started)
        out = await _final_message(gw, ctx, response.body, transform, response.status)
        if in_stream:
            await answer_in_stream(gw.recorder, ctx, send, out, event)
            return
        await finish(gw.recorder, ctx, event, out)
        await send_bytes(send, response.status, out,
                         {**response.headers, "content-length": str(len(out))})
        return
    try:
        if not in_stream:
            await start_stream(send, response.status, response.headers)
        assert response.events is not None
        failure: UpstreamError | None = None
        try:
            async for sse in response.events:
                message = jsonrpc.loads_or_none(sse.data)
                if isinstance(message, dict) and message.get("id") == ctx.jsonrpc_id and (
                        "result" in message or "error" in message) and "method" not in message:
                    ctx.upstream_latency_ms = _elapsed_ms(started)
                    out = await _final_message(gw, ctx, sse.data.encode(), transform, 200)
                    await finish(gw.recorder, ctx, event, out)
                    sse.data = out.decode()
                    await stream_chunk(send, sse.encode())
                    break
                await relay_server_message(gw, call, sse, message)
            else:
                failure = UpstreamError("upstream.stream_ended",
                                        "The upstream closed the stream without a response")
        except UpstreamError as exc:
            failure = exc
        if failure is not None:
            # Say so on the stream rather than leave the client waiting, and record it.
            ctx.settle(Verdict.of("error", failure.reason, failure.message))
            out = jsonrpc.dumps(jsonrpc.error(
                ctx.jsonrpc_id, jsonrpc.GATEWAY_ERROR, failure.message,
                jsonrpc.refusal_data(failure.reason, ctx.request_id)))
            await finish(gw.recorder, ctx, event, out)
            await stream_chunk(send, SseEvent(data=out.decode(), event="message").encode())
        await stream_chunk(send, b"", more=False)
    finally:
        await response.aclose()


async def _final_message(gw: Pipeline, ctx: CallContext, raw: bytes,
                         transform: Transform | None, status: int) -> bytes:
    """The response to this request as it will leave the gateway."""
    message = jsonrpc.loads_or_none(raw)
    if not isinstance(message, dict):
        if transform is None and status >= 400:
            return raw  # an upstream HTTP error body (e.g. unknown session): relay it
        ctx.settle(Verdict.of("error", "upstream.bad_response",
                              "The upstream answered with something that is not JSON-RPC"))
        return jsonrpc.dumps(jsonrpc.error(
            ctx.jsonrpc_id, jsonrpc.GATEWAY_ERROR, "Bad upstream response",
            jsonrpc.refusal_data("upstream.bad_response", ctx.request_id)))
    if ctx.jsonrpc_method in DATA_METHODS and isinstance(message.get("result"), dict) \
            and "inputRequests" in message["result"]:
        refusal = await _police_input_requests(gw, ctx, message["result"])
        if refusal is not None:
            return refusal
    if "error" in message and ctx.jsonrpc_method in DATA_METHODS:
        message = {**message, "error": upstream_error(message["error"], ctx)}
        ctx.detail["upstream_error"] = message["error"]
        return jsonrpc.dumps_compact(message, ensure_ascii=False)
    if "error" in message or transform is None or not isinstance(message.get("result"), dict):
        if "error" in message:
            ctx.detail["upstream_error"] = message["error"]
        return raw
    try:
        result = transform(message["result"])
        if hasattr(result, "__await__"):
            result = await result
    except UnmaskableResult as exc:
        ctx.settle(Verdict.of("withheld", "mask.unmaskable", str(exc)))
        data = {"request_id": ctx.request_id, "reasons": ctx.reasons}
        if ctx.jsonrpc_method != "tools/call":
            return jsonrpc.dumps(jsonrpc.error(ctx.jsonrpc_id, jsonrpc.POLICY_DENIED,
                                               "Result withheld", data))
        result = tool_error(
            ctx, "Wardgate withheld this result: it may hold sensitive data in a shape that "
                 "cannot be masked safely.", data)
    assert isinstance(result, dict)
    if result.get("isError") and ctx.decision == "allow":
        ctx.detail["tool_error"] = True
    return jsonrpc.dumps_compact({**message, "result": result}, ensure_ascii=False)


def upstream_error(error: Any, ctx: CallContext) -> dict[str, Any]:
    """A JSON-RPC error from the upstream to a data request, as it may leave: code kept, text
    through the call's error-text policy, upstream data dropped (it may quote values)."""
    texts = ctx.error_texts or ErrorTextPolicy(ctx.request_id, withhold=False)
    code = error.get("code") if isinstance(error, dict) else None
    text = error.get("message", "") if isinstance(error, dict) else error
    return {"code": code if type(code) is int else jsonrpc.GATEWAY_ERROR,
            "message": texts.public(text),
            "data": jsonrpc.refusal_data("upstream.error", ctx.request_id)}


async def relay_server_message(gw: Pipeline, call: Call, sse: SseEvent, message: Any) -> None:
    """A message from the upstream that is not our response: progress, logs, and
    server-to-client requests. Sampling and elicitation reach the client only where the
    connection allows them; either way they are recorded."""
    if isinstance(message, dict) and message.get("method") in GUARDED_SERVER_REQUESTS \
            and "id" in message:
        allowed = await server_request_allowed(gw, call.ctx, message["method"],
                                               message.get("params"))
        if not allowed:
            refusal = jsonrpc.error(message["id"], jsonrpc.POLICY_DENIED,
                                    f"{message['method']} is not allowed on this connection")
            try:
                reply = await call.upstream.send("POST", call.headers, jsonrpc.dumps(refusal),
                                                 timeout=gw.config.upstream_timeout_seconds)
                await reply.aclose()
            except UpstreamError:
                log.warning("could not tell the upstream its %s was refused", message["method"])
            return
    await stream_chunk(call.send, sse.encode())


async def server_request_allowed(gw: Pipeline, ctx: CallContext, method: str,
                                 params: Any) -> bool:
    """Whether this connection lets a sampling/elicitation request reach the client;
    recorded either way."""
    spec = await gw.directory.get(ctx.connection_slug)
    allowed = spec is not None and bool(getattr(spec, GUARDED_SERVER_REQUESTS[method]))
    note = CallContext(ctx.connection_slug, ctx.source_ip, ctx.user_agent,
                       ctx.mcp_session_id, ctx.protocol_version,
                       request_id=ctx.request_id, identity=ctx.identity,
                       auth_method=ctx.auth_method, jsonrpc_method=method,
                       decision="allow" if allowed else "deny", arguments=params)
    await gw.recorder.record(note, "mcp.server_request")
    return allowed


async def _police_input_requests(gw: Pipeline, ctx: CallContext,
                                 result: dict[str, Any]) -> bytes | None:
    """From 2026-07-28 sampling and elicitation travel inside an input_required result
    ({"resultType": "input_required", "inputRequests": {key: {"method", "params"}}}); the
    client answers by retrying the call with inputResponses. The legacy rule applies: each
    is recorded, and if any is not allowed the whole result is replaced by a refusal, so
    the client never sees it (the upstream keeps no state: it lives in requestState)."""
    requests = result.get("inputRequests")
    refused: list[Reason] = []
    if not isinstance(requests, dict):
        refused.append(Reason("upstream.bad_response", "inputRequests is not an object"))
        requests = {}
    for request in requests.values():
        method = request.get("method") if isinstance(request, dict) else None
        if method not in GUARDED_SERVER_REQUESTS:
            continue  # roots/list: relayed, as on the legacy stream
        if not await server_request_allowed(gw, ctx, method, request.get("params")):
            refused.append(Reason("server_request.not_allowed",
                                  f"{method} is not allowed on this connection"))
    if not refused:
        return None
    ctx.settle(Verdict.deny(*refused))
    text = "; ".join(r.message for r in refused)
    data = {"request_id": ctx.request_id, "reasons": ctx.reasons}
    if ctx.jsonrpc_method == "tools/call":
        payload = jsonrpc.result(ctx.jsonrpc_id, tool_error(ctx, text, data))
    else:
        payload = jsonrpc.error(ctx.jsonrpc_id, jsonrpc.POLICY_DENIED, text, data)
    return jsonrpc.dumps_compact(payload)
