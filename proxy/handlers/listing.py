"""tools/list, resources/list, prompts/list results, filtered to what the caller may use;
tools also to what the catalogue has accepted (a new or changed tool is recorded and hidden
until an admin accepts it, proxy.tool_catalog)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from policy.roles import AccessPlan
from proxy.call import Call
from proxy.context import CallContext
from proxy.handlers.relay import Transform
from proxy.mask import UnmaskableResult

if TYPE_CHECKING:
    from proxy.pipeline import Pipeline


def listing_filter(gw: Pipeline, call: Call) -> Transform | None:
    """The filter for a listing method's result; None for any other method."""
    plan = call.plan
    assert plan is not None
    method = call.ctx.jsonrpc_method
    if method == "tools/list":
        async def tools(result: dict[str, Any]) -> dict[str, Any]:
            return await _filter_tools(gw, call, plan, result)
        return tools
    if method == "resources/list":
        return lambda result: _filter_list(
            result, "resources", lambda r: plan.resource_role(str(r.get("uri"))) is not None)
    if method == "prompts/list":
        return lambda result: _filter_list(
            result, "prompts", lambda p: plan.prompt_role(str(p.get("name"))) is not None)
    return None


async def _filter_tools(gw: Pipeline, call: Call, plan: AccessPlan,
                        result: dict[str, Any]) -> dict[str, Any]:
    ctx, spec = call.ctx, call.spec
    assert spec is not None
    tools = result.get("tools")
    if not isinstance(tools, list):
        raise UnmaskableResult("tools/list result without a tools list")
    review = await gw.catalog.review(spec.connection_id, tools)
    if review.newly_seen:
        note = CallContext(ctx.connection_slug, ctx.source_ip, ctx.user_agent,
                           ctx.mcp_session_id, ctx.protocol_version, request_id=ctx.request_id,
                           identity=ctx.identity, auth_method=ctx.auth_method,
                           jsonrpc_method="tools/list", decision="info")
        note.detail = {"new_or_changed_tools": review.newly_seen,
                       "hidden_until_accepted": review.hidden}
        await gw.recorder.record(note, "catalog.changed")
    if review.hidden:
        ctx.detail["hidden_tools"] = review.hidden
    visible = [t for t in review.visible if plan.visible(t["name"])]
    return {**result, "tools": visible}


def _filter_list(result: dict[str, Any], key: str, keep: Callable[[dict], bool]) -> dict[str, Any]:
    items = result.get(key)
    if not isinstance(items, list):
        raise UnmaskableResult(f"{key} list result without a {key} list")
    return {**result, key: [i for i in items if isinstance(i, dict) and keep(i)]}
