"""Stage hold, for a tools/call a role marks as risky: propose an approval and record the
call as held; then either answer "pending" at once, or (a client that sent a progress token
and accepts SSE) keep the call open with progress notes until an approver decides, and go
on to forward it once approved (proxy.hold)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxy import jsonrpc
from proxy.asgi_io import start_stream, stream_chunk
from proxy.call import Call
from proxy.handlers.relay import Transform, exchange
from proxy.handlers.respond import answer, answer_in_stream, decision_data, denial_text, tool_error
from proxy.hold import (
    HoldBinding,
    denial_note,
    last_denial,
    propose,
    use_existing_approval,
    wait_for_decision,
)
from proxy.sse import SseEvent
from proxy.verdict import Verdict

if TYPE_CHECKING:
    from proxy.pipeline import Pipeline


async def hold_for_approval(gw: Pipeline, call: Call, rule: Any, binding: HoldBinding,
                            mask: Transform) -> None:
    ctx, send, settings = call.ctx, call.send, gw.hold
    approval_id, created = await propose(gw.store, binding, ctx, rule, settings)
    url = settings.approval_url(approval_id, ctx.request_base)
    ctx.settle(Verdict.of("hold", "approval.required",
                          f"This call needs approval (rule {rule.id!r}): {url}"))
    ctx.detail.update(approval_id=approval_id, approval_url=url, approval_rule=rule.id)
    await gw.recorder.record(ctx, "mcp.decision")
    meta = call.params.get("_meta") if isinstance(call.params.get("_meta"), dict) else {}
    progress_token = meta.get("progressToken")
    pending = {"request_id": ctx.request_id, "approval_id": approval_id, "status": "pending",
               "url": url, "reasons": ctx.reasons}
    previous = await last_denial(gw.store, binding) if created else ""
    if previous:
        pending["previous_denial"] = previous
    if progress_token is None or "text/event-stream" not in call.headers.get("accept", ""):
        text = (f"Approval pending: this call needs approval (rule {rule.id!r}). "
                f"An approver can decide at {url}. Re-run the identical call once approved."
                + (f" Your previous request {previous}." if previous else ""))
        result = tool_error(ctx, text, pending)
        result["_meta"]["io.wardgate/approval"] = pending
        await answer(gw.recorder, ctx, send, jsonrpc.result(ctx.jsonrpc_id, result))
        return
    # The client keeps the call open: hold it, telling it we are waiting.
    await start_stream(send, 200, {"content-type": "text/event-stream",
                                   "cache-control": "no-cache"})

    async def tick(waited: float) -> None:
        note = jsonrpc.notification("notifications/progress", {
            "progressToken": progress_token, "progress": round(waited, 1),
            "total": settings.timeout_seconds,
            "message": f"Waiting for approval #{approval_id}: {url}"})
        await stream_chunk(send, SseEvent(data=jsonrpc.dumps(note).decode(),
                                          event="message").encode())

    status = await wait_for_decision(gw.store, approval_id, settings, tick)
    used = await use_existing_approval(gw.store, binding, ctx.request_id) if status == "approved" else None
    if used is not None:
        ctx.settle(Verdict.allow())
        ctx.detail["approval_id"] = used
        await gw.recorder.record(ctx, "mcp.decision")
        await exchange(gw, call, mask, in_stream=True)
        return
    if status == "timeout":
        # Nobody decided yet: the approval stays pending. Say so, and how to go on.
        ctx.settle(Verdict.of("hold", "approval.pending",
                              f"Approval #{approval_id} is still pending after "
                              f"{settings.timeout_seconds:g}s: {url}"))
        text = (f"Approval pending: approval #{approval_id} has not been decided yet (rule "
                f"{rule.id!r}). An approver can decide at {url}. Re-run the identical call "
                "once it is approved; it then runs once.")
        result = tool_error(ctx, text, {**pending, "reasons": ctx.reasons})
        result["_meta"]["io.wardgate/approval"] = {**pending, "reasons": ctx.reasons}
    else:
        # Denied (with the approver's reason), expired, or gone: not granted.
        note = await denial_note(gw.store, approval_id) if status == "denied" else ""
        ctx.settle(Verdict.of("deny", f"approval.{status}",
                              f"Approval #{approval_id} was not granted ({status})"
                              + (f": {note}" if note else "")))
        result = tool_error(ctx, denial_text(ctx.reasons),
                            decision_data(ctx, approval_id=approval_id))
    out = jsonrpc.dumps(jsonrpc.result(ctx.jsonrpc_id, result))
    await answer_in_stream(gw.recorder, ctx, send, out)
