"""DELETE: the client ends its MCP session; relayed, recorded, and the session closed here
too (admission counts, live registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.asgi_io import send_bytes
from proxy.call import Call
from proxy.handlers.respond import upstream_failed
from proxy.transports.http import UpstreamError
from proxy.verdict import Verdict

if TYPE_CHECKING:
    from proxy.pipeline import Pipeline


async def handle_delete(gw: Pipeline, call: Call) -> None:
    ctx = call.ctx
    ctx.jsonrpc_method = "DELETE"
    ctx.settle(Verdict.allow())
    try:
        response = await call.upstream.send("DELETE", call.headers)
    except UpstreamError as exc:
        await upstream_failed(gw.recorder, ctx, call.send, exc, "mcp.session_closed")
        return
    await gw.recorder.record(ctx, "mcp.session_closed")
    if ctx.mcp_session_id:
        gw.admission.session_closed(ctx.mcp_session_id)
        await gw.live.session_closed(ctx.mcp_session_id, "closed by the client")
    await send_bytes(call.send, response.status, response.body, response.headers)
