"""GET: the client's stream of server-initiated messages, relayed (sampling and elicitation
only where the connection allows them) until either side leaves or the stream reaches its
maximum lifetime; recorded when it opens and when it closes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from proxy import jsonrpc, metrics
from proxy.asgi_io import send_bytes, start_stream, stream_chunk
from proxy.call import Call
from proxy.handlers.disconnect import until_client_leaves
from proxy.handlers.relay import relay_server_message
from proxy.handlers.respond import upstream_failed
from proxy.transports.http import UpstreamError
from proxy.verdict import Verdict

if TYPE_CHECKING:
    from proxy.pipeline import Pipeline


async def handle_stream(gw: Pipeline, call: Call) -> None:
    ctx, send = call.ctx, call.send
    ctx.jsonrpc_method = "GET"
    ctx.settle(Verdict.allow())
    await gw.recorder.record(ctx, "mcp.stream_opened")
    try:
        response = await call.upstream.send("GET", call.headers, timeout=None)
    except UpstreamError as exc:
        await upstream_failed(gw.recorder, ctx, send, exc, "mcp.stream_closed")
        return
    try:
        if not response.is_stream:
            await send_bytes(send, response.status, response.body, response.headers)
            return
        await start_stream(send, response.status, response.headers)
        closed = metrics.stream_opened(metrics.connection_label(ctx.connection_slug, True))
        call.exits.callback(closed)
        events = response.events
        assert events is not None

        async def relay() -> None:
            async for sse in events:
                await relay_server_message(gw, call, sse, jsonrpc.loads_or_none(sse.data))

        lifetime = gw.config.admission.stream_max_seconds
        try:
            async with asyncio.timeout(lifetime):
                client_left = await until_client_leaves(call.receive, relay())
        except UpstreamError as exc:  # the upstream broke the stream off
            ctx.settle(Verdict.of("error", exc.reason, exc.message))
            client_left = False
        except TimeoutError:  # streams do not live forever; the client may reopen one
            ctx.detail["closed_after_max_lifetime_s"] = lifetime
            client_left = False
        ctx.detail["client_left"] = client_left
        await gw.recorder.record(ctx, "mcp.stream_closed")
        if not client_left:
            await stream_chunk(send, b"", more=False)
    finally:
        await response.aclose()
