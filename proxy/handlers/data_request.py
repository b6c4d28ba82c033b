"""resources/read and prompts/get: authorize (a role allows the resource / prompt) -> record
the decision -> forward -> mask (content detectors; no SQL lineage here) -> record the
outcome -> release."""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from proxy import jsonrpc, metrics
from proxy.call import Call
from proxy.handlers.relay import exchange
from proxy.handlers.respond import answer, decision_data, denial_text
from proxy.mask import mask_call_result
from proxy.verdict import Reason, Verdict

if TYPE_CHECKING:
    from proxy.pipeline import Pipeline


async def handle_data_request(gw: Pipeline, call: Call) -> None:
    ctx, plan, params = call.ctx, call.plan, call.params
    assert plan is not None
    # authorize
    started = perf_counter()
    if ctx.jsonrpc_method == "resources/read":
        target = params.get("uri")
        role = plan.resource_role(target) if isinstance(target, str) else None
        what = "resource"
    else:
        target = params.get("name")
        role = plan.prompt_role(target) if isinstance(target, str) else None
        what = "prompt"
    ctx.tool = str(target)[:200] if target is not None else ""
    ctx.arguments = params.get("arguments") if what == "prompt" else None
    metrics.observe_authorize(perf_counter() - started)
    if role is None:
        ctx.settle(Verdict.deny(Reason(f"{what}.not_granted",
                                       f"No role of yours allows this {what}")))
        await gw.recorder.record(ctx, "mcp.decision")
        await answer(gw.recorder, ctx, call.send, jsonrpc.error(
            ctx.jsonrpc_id, jsonrpc.POLICY_DENIED, denial_text(ctx.reasons), decision_data(ctx)))
        return
    ctx.role = role.name
    ctx.settle(Verdict.allow())
    # record the decision before anything is forwarded
    await gw.recorder.record(ctx, "mcp.decision")
    policy = role.masking

    def mask(result: dict[str, Any]) -> dict[str, Any]:
        masked, summary = mask_call_result(_as_tool_shape(result), None, policy)
        ctx.masking = summary.as_list()
        return _from_tool_shape(result, masked)

    # forward, mask, record the outcome, release
    await exchange(gw, call, mask)


def _as_tool_shape(result: dict[str, Any]) -> dict[str, Any]:
    """resources/read and prompts/get results, put in CallToolResult shape for the masker."""
    if "contents" in result:  # resources/read
        blocks = []
        for item in result.get("contents") or []:
            if isinstance(item, dict) and "text" in item:
                blocks.append({"type": "text", "text": item["text"]})
            elif isinstance(item, dict) and "blob" in item:
                blocks.append({"type": "resource", "resource": item})
            else:
                blocks.append(item)
        return {"content": blocks}
    blocks = [m.get("content") for m in result.get("messages") or [] if isinstance(m, dict)]
    return {"content": blocks}


def _from_tool_shape(original: dict[str, Any], masked: dict[str, Any]) -> dict[str, Any]:
    blocks = masked.get("content") or []
    if "contents" in original:
        contents = []
        for item, block in zip(original.get("contents") or [], blocks, strict=False):
            if isinstance(item, dict) and "text" in item and isinstance(block, dict):
                contents.append({**item, "text": block.get("text", "")})
            else:
                contents.append(item)
        return {**original, "contents": contents}
    messages = []
    for message, block in zip(original.get("messages") or [], blocks, strict=False):
        messages.append({**message, "content": block} if isinstance(message, dict) else message)
    return {**original, "messages": messages}
