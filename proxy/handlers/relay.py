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
from proxy.record import PendingRecord
from proxy.server_messages import (
    Unrelayable,
    carries_strings,
    message_texts,
    method_name,
    public_notification,
    public_params,
)
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
                   event: str = "mcp.outcome", in_stream: bool = False,
                   decision: PendingRecord | None = None) -> None:
    """Forward the request and relay the answer (see the module docstring).
    `in_stream`: an SSE response to the client is already open (a held call).
    `decision`: the call's decision record, queued but perhaps not yet durable (read-only
    calls only, proxy.handlers.tool_call): the request is forwarded meanwhile, nothing reaches
    the client before the record is durable, and if it cannot be written the upstream call is
    cancelled and the call fails closed.
    Cancelled (the client left, access revoked): the upstream is told to cancel too."""
    session = _masked_session(call.ctx)
    if session is not None:
        gw.masked_calls[session] += 1
    try:
        await _forward(gw, call, transform, event, in_stream, decision)
    except asyncio.CancelledError:
        if call.ctx.jsonrpc_id is not None:
            gw.keep_task(asyncio.get_running_loop().create_task(
                _cancel_upstream(call.ctx, call.upstream, call.headers)))
        raise
    finally:
        if session is not None:
            gw.masked_calls[session] -= 1
            if gw.masked_calls[session] <= 0:
                del gw.masked_calls[session]


def _masked_session(ctx: CallContext) -> tuple[str, str] | None:
    """The session of a call that reads masked columns (None: it does not, or no session)."""
    texts = ctx.error_texts
    if isinstance(texts, ErrorTextPolicy) and texts.withhold and ctx.mcp_session_id:
        return (ctx.connection_slug, ctx.mcp_session_id)
    return None


def _server_message_texts(gw: Pipeline, ctx: CallContext) -> ErrorTextPolicy:
    """How texts the upstream sends on ``ctx``'s stream leave: the call's policy, withheld
    too while another call of the same session reads masked columns."""
    texts = message_texts(ctx)
    if not texts.withhold and ctx.mcp_session_id and \
            gw.masked_calls.get((ctx.connection_slug, ctx.mcp_session_id), 0) > 0:
        return ErrorTextPolicy(ctx.request_id, withhold=True, masking=texts.masking)
    return texts


async def _cancel_upstream(ctx: CallContext, upstream: Any, headers: dict[str, str],
                           reason: str = "client went away") -> None:
    if ctx.jsonrpc_method == "initialize":  # the one request MCP forbids cancelling
        return
    note = jsonrpc.notification("notifications/cancelled",
                                {"requestId": ctx.jsonrpc_id, "reason": reason})
    out_headers = {k: v for k, v in headers.items() if k not in ("mcp-method", "mcp-name")}
    try:
        reply = await upstream.send("POST", out_headers, jsonrpc.dumps(note), timeout=5.0)
        await reply.aclose()
    except (UpstreamError, TimeoutError, OSError):
        log.info("could not tell the upstream that request %s was cancelled", ctx.request_id)


def _cancel_on_timeout(gw: Pipeline, call: Call, failure: UpstreamError) -> None:
    """The gateway gave up waiting: the upstream is told to stop working on the call too (the
    client is answered with the timeout, so nothing it does later reaches anyone)."""
    if failure.reason == "upstream.timeout" and call.ctx.jsonrpc_id is not None:
        gw.keep_task(asyncio.get_running_loop().create_task(_cancel_upstream(
            call.ctx, call.upstream, call.headers, "the gateway's upstream timeout passed")))


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


async def _send_upstream(gw: Pipeline, call: Call, decision: PendingRecord | None) -> Any:
    """The upstream's response to the request, returned only once `decision` (if any) is
    durable: the upstream works on the call while its decision record is written."""
    sending = call.upstream.send("POST", call.headers, call.body,
                                 timeout=gw.config.upstream_timeout_seconds)
    if decision is None:
        return await sending
    task = asyncio.ensure_future(sending)
    try:
        await decision.written()
    except BaseException as exc:
        task.cancel()
        await _discard(task)
        if not isinstance(exc, asyncio.CancelledError) and call.ctx.jsonrpc_id is not None:
            # RecordFailed: the call is refused; the upstream may already be working on it.
            gw.keep_task(asyncio.get_running_loop().create_task(
                _cancel_upstream(call.ctx, call.upstream, call.headers)))
        raise
    return await task


async def _discard(task: asyncio.Future[Any]) -> None:
    """Wait for a cancelled upstream send to end; close the response if it had arrived."""
    try:
        response = await task
    except (asyncio.CancelledError, Exception):
        return
    await response.aclose()


async def _forward(gw: Pipeline, call: Call, transform: Transform | None, event: str,
                   in_stream: bool, decision: PendingRecord | None) -> None:
    ctx, send = call.ctx, call.send
    started = time.perf_counter()
    try:
        response = await _send_upstream(gw, call, decision)
    except UpstreamError as exc:
        ctx.upstream_latency_ms = _elapsed_ms(started)
        _cancel_on_timeout(gw, call, exc)
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
            _cancel_on_timeout(gw, call, failure)
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
    server-to-client requests, relayed only in the form proxy.server_messages allows (their
    texts withheld or through the detectors). Sampling and elicitation reach the client only
    where the connection allows them and are recorded either way; what cannot be read or
    masked is dropped and recorded; a request that is not relayed is refused to the upstream."""
    ctx = call.ctx
    if not sse.data.strip():
        # An event without data (a stream's priming event, carrying only its id for a
        # resumption): nothing to mask.
        await stream_chunk(call.send, sse.encode())
        return
    method = method_name(message.get("method")) if isinstance(message, dict) else None
    if method is None:
        await _drop(gw, ctx, "", "not a JSON-RPC request or notification")
        return
    texts = _server_message_texts(gw, ctx)
    if "id" in message:
        request_id = message["id"]
        if isinstance(request_id, bool) or not isinstance(request_id, int | str) or (
                isinstance(request_id, str) and texts.withhold):
            # The client answers with the id, so it leaves as it is: only a number, or a
            # string outside a call whose texts are withheld (then through the detectors).
            await _drop(gw, ctx, method, "its id could quote a value")
            await _refuse_to_upstream(gw, call, request_id, method,
                                      f"{method} is not relayed during this call")
            return
        if method in GUARDED_SERVER_REQUESTS:
            allowed, params = await police_server_request(gw, ctx, method,
                                                          message.get("params"), texts)
            refusal = None if allowed else f"{method} is not allowed on this connection" \
                if params is not None else f"{method} is not relayed during this call"
        else:
            try:
                params, refusal = public_params(message.get("params"), texts), None
            except Exception as exc:  # Unrelayable, or the masking failed: fail closed
                params, refusal = None, f"{method} is not relayed during this call"
                await _drop(gw, ctx, method, _why(exc))
        if refusal is not None:
            await _refuse_to_upstream(gw, call, message["id"], method, refusal)
            return
        out: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id
                               if isinstance(request_id, int) else texts.public(request_id)}
        if "params" in message:
            out["params"] = params
    else:
        meta = call.params.get("_meta") if isinstance(call.params, dict) else None
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        try:
            out = public_notification(message, texts, token)
        except Exception as exc:  # Unrelayable, or the masking failed: fail closed
            await _drop(gw, ctx, method, _why(exc))
            return
    sse.data = jsonrpc.dumps_compact(out, ensure_ascii=False).decode()
    await stream_chunk(call.send, sse.encode())
    if "id" not in message:  # a server request has a record of its own; a notification is
        _count_relayed(ctx, method)  # counted on the call's outcome record


def _count_relayed(ctx: CallContext, method: str) -> None:
    relayed = ctx.detail.setdefault("notifications_relayed", {})
    key = method if method in relayed or len(relayed) < 16 else "other"  # bounded
    relayed[key] = relayed.get(key, 0) + 1


def _why(exc: Exception) -> str:
    """Why a message was not relayed, for the record: our own words, never the exception's
    text unless we wrote it (a failed masker could quote what it was masking)."""
    if isinstance(exc, Unrelayable):
        return str(exc)
    log.error("could not mask a message from the upstream: %s", type(exc).__name__)
    return "it could not be masked"


async def _refuse_to_upstream(gw: Pipeline, call: Call, id_: Any, method: str,
                              text: str) -> None:
    refusal = jsonrpc.error(id_, jsonrpc.POLICY_DENIED, text)
    try:
        reply = await call.upstream.send("POST", call.headers, jsonrpc.dumps(refusal),
                                         timeout=gw.config.upstream_timeout_seconds)
        await reply.aclose()
    except UpstreamError:
        log.warning("could not tell the upstream its %s was refused", method)


async def _drop(gw: Pipeline, ctx: CallContext, method: str, why: str) -> None:
    """Record a server message that is not relayed (its content is not stored: it could not
    be masked)."""
    note = _server_note(ctx, method or "unparseable")
    note.settle(Verdict.of("withheld", "server_message.dropped",
                           f"A message from the upstream was not relayed: {why}"))
    await gw.recorder.record(note, "mcp.server_request")


def _server_note(ctx: CallContext, method: str) -> CallContext:
    return CallContext(ctx.connection_slug, ctx.source_ip, ctx.user_agent,
                       ctx.mcp_session_id, ctx.protocol_version,
                       request_id=ctx.request_id, identity=ctx.identity,
                       auth_method=ctx.auth_method, jsonrpc_method=method)


async def police_server_request(gw: Pipeline, ctx: CallContext, method: str, params: Any,
                                texts: ErrorTextPolicy | None = None) -> tuple[bool, Any]:
    """Whether this connection lets a sampling/elicitation request reach the client, and its
    params as they would leave (None: withheld, it carried text during a call that reads
    masked columns, or could not be masked); recorded either way, with those params."""
    texts = texts or _server_message_texts(gw, ctx)
    reason: Reason | None = None
    public: Any = None
    if texts.withhold and carries_strings(params):
        reason = Reason("server_request.masked_call",
                        f"{method} is not relayed during a call that reads columns masked for "
                        "your role: it could quote their values")
    else:
        try:
            public = public_params(params, texts)
        except Exception as exc:  # Unrelayable, or the masking failed: fail closed
            reason = Reason("server_request.unmaskable",
                            f"{method} was not relayed: {_why(exc)}")
    spec = await gw.directory.get(ctx.connection_slug)
    if reason is None and not (spec is not None and
                               bool(getattr(spec, GUARDED_SERVER_REQUESTS[method]))):
        reason = Reason("server_request.not_allowed", f"{method} is not allowed on this "
                        "connection")
    note = _server_note(ctx, method)
    note.arguments = public
    note.settle(Verdict.allow() if reason is None else Verdict.deny(reason))
    await gw.recorder.record(note, "mcp.server_request")
    return reason is None, public


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
    texts = _server_message_texts(gw, ctx)
    for key, request in list(requests.items()):
        if not isinstance(request, dict):
            refused.append(Reason("upstream.bad_response", "an input request is not an object"))
            continue
        method = method_name(request.get("method"))
        if method is None:
            refused.append(Reason("upstream.bad_response", "an input request has no method"))
            continue
        if method in GUARDED_SERVER_REQUESTS:
            allowed, params = await police_server_request(gw, ctx, method,
                                                          request.get("params"), texts)
            if not allowed:
                refused.append(Reason(
                    "server_request.not_allowed" if params is not None
                    else "server_request.masked_call",
                    f"{method} is not allowed on this connection" if params is not None
                    else f"{method} is not relayed during this call"))
                continue
        else:  # roots/list: relayed, as on the legacy stream, its texts masked
            try:
                params = public_params(request.get("params"), texts)
            except Exception as exc:  # Unrelayable, or the masking failed: fail closed
                refused.append(Reason("server_request.unmaskable",
                                      f"{method} was not relayed: {_why(exc)}"))
                continue
        if "params" in request:
            requests[key] = {**request, "params": params}
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
