"""Protocol requests (initialize, discover, ping, lists, ...): relayed and recorded as
mcp.request; listings filtered (proxy.handlers.listing). An initialize beyond the identity's
session limit is refused (429)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.call import Call
from proxy.handlers.listing import listing_filter
from proxy.handlers.relay import exchange
from proxy.handlers.respond import refuse
from proxy.stages import rate_limited
from proxy.verdict import Verdict

if TYPE_CHECKING:
    from proxy.pipeline import Pipeline


async def handle_plain_request(gw: Pipeline, call: Call) -> None:
    ctx = call.ctx
    if ctx.jsonrpc_method == "initialize" and ctx.identity is not None:
        refusal = gw.admission.session_refusal(ctx.identity.user_id)
        if refusal is not None:
            await refuse(gw.recorder, ctx, call.send, rate_limited(ctx, refusal))
            return
    ctx.settle(Verdict.allow())
    await exchange(gw, call, listing_filter(gw, call), event="mcp.request")
