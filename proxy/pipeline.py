"""The order of the data path, in one place.

For every MCP request arriving at /mcp/<slug>:
  1. find the connection                       (proxy.directory)
  2. forward to the upstream                   (proxy.transports)
  3. relay the answer, message by message      (JSON body or SSE events)
"""

from __future__ import annotations

import json
import logging

import httpx

from proxy.asgi_io import Receive, Scope, Send, send_bytes, send_json, start_stream, stream_chunk
from proxy.config import GatewayConfig
from proxy.directory import ConnectionDirectory
from proxy.transports.http import HttpUpstream, UpstreamError

log = logging.getLogger("wardgate.gateway")


def _error(code: int, message: str, data: dict | None = None, id_: object = None) -> dict:
    err: dict = {"code": code, "message": message}
    if data:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": err}


class Pipeline:
    def __init__(self, config: GatewayConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        self.directory = ConnectionDirectory(config.connection_cache_seconds)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def reject_bad_request(
        self, scope: Scope, headers: dict[str, str], slug: str, send: Send, *,
        status: int, reason: str, message: str,
    ) -> None:
        await send_json(send, status, _error(-32600, message, {"reason": reason}))

    async def handle(
        self, scope: Scope, headers: dict[str, str], slug: str, method: str, body: bytes,
        receive: Receive, send: Send,
    ) -> None:
        spec = await self.directory.get(slug)
        if spec is None:
            await send_json(send, 404, _error(-32600, f"Unknown connection {slug!r}",
                                              {"reason": "connection.unknown"}))
            return
        if method == "POST":
            try:
                json.loads(body)
            except ValueError:
                await send_json(send, 400, _error(-32700, "Parse error: body is not JSON",
                                                  {"reason": "request.malformed_json"}))
                return
        upstream = HttpUpstream(self.http, spec.url, spec.credentials.get("headers"))
        try:
            response = await upstream.send(method, headers, body)
        except UpstreamError as exc:
            await send_json(send, 502, _error(-32603, exc.message, {"reason": exc.reason}))
            return
        if not response.is_stream:
            await send_bytes(send, response.status, response.body, response.headers)
            return
        try:
            await start_stream(send, response.status, response.headers)
            assert response.events is not None
            async for event in response.events:
                await stream_chunk(send, event.encode())
            await stream_chunk(send, b"", more=False)
        finally:
            await response.aclose()
