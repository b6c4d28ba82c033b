"""The gateway's ASGI application: MCP Streamable HTTP at /mcp/<connection-slug>, and its
Prometheus metrics at /metrics (proxy.metrics; who may scrape: `GatewayConfig.metrics`).

This module only speaks HTTP; what happens to each MCP message is decided by the pipeline
(`proxy.pipeline`): the stages of `proxy.stages.default_stages()`, in order, then the handler
for the request's method (`proxy.handlers`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from urllib.parse import urlsplit

from proxy import jsonrpc, metrics
from proxy.asgi_io import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    read_body,
    repeated_headers,
    request_headers,
    send_bytes,
    send_json,
)
from proxy.config import GatewayConfig, gateway_config
from proxy.pipeline import Pipeline
from proxy.store import GatewayStore

log = logging.getLogger("wardgate.gateway")
PATH = re.compile(r"^/mcp/(?P<slug>[a-z0-9][a-z0-9_-]{0,49})/?$")
METRICS_PATH = "/metrics"


class GatewayApp:
    def __init__(self, config: GatewayConfig | None = None, *, store: GatewayStore) -> None:
        self.config = config or gateway_config()
        self.store = store  # what the gateway reads and writes (the portal's, in production)
        self.pipeline: Pipeline | None = None

    async def startup(self) -> None:
        if self.pipeline is None:
            self.pipeline = Pipeline(self.config, store=self.store)
            await self.pipeline.start()

    async def shutdown(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.stop()
        self.pipeline = None
        metrics.flush()
        metrics.process_exiting()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == METRICS_PATH:
            await self._scrape(scope, send)
            return
        await self.startup()
        assert self.pipeline is not None
        match = PATH.match(scope["path"])
        if match is None:
            await send_json(send, 404, jsonrpc.error(None, jsonrpc.INVALID_REQUEST,
                                                     "Unknown gateway endpoint"))
            return
        headers = request_headers(scope)
        repeated = repeated_headers(scope)
        if repeated:
            await self.pipeline.reject_bad_request(
                scope, headers, match["slug"], send, status=400,
                reason="request.repeated_header",
                message=f"Send each of these headers once: {', '.join(repeated)}")
            return
        refused = self._host_or_origin_refused(headers)
        if refused is not None:
            await self.pipeline.reject_bad_request(
                scope, headers, match["slug"], send, status=403, reason=refused,
                message="Host or Origin not allowed (DNS rebinding protection)")
            return
        method = scope["method"]
        if method not in ("POST", "GET", "DELETE"):
            await self.pipeline.reject_bad_request(
                scope, headers, match["slug"], send, status=405, reason="request.bad_method",
                message=f"HTTP method {method[:16]!r} is not allowed",
                response_headers={"allow": "GET, POST, DELETE"})
            return
        body = b""
        if method == "POST":
            try:
                async with asyncio.timeout(self.config.admission.body_timeout_seconds):
                    body = await read_body(receive, self.config.max_body_bytes)
            except TimeoutError:  # a slow or stalled client: its body never came
                await self.pipeline.reject_bad_request(
                    scope, headers, match["slug"], send, status=408,
                    reason="request.body_timeout",
                    message=f"The request body did not arrive within "
                            f"{self.config.admission.body_timeout_seconds:g} s",
                    response_headers={"connection": "close"})
                return
            except BodyTooLarge:
                await self.pipeline.reject_bad_request(
                    scope, headers, match["slug"], send, status=413,
                    reason="request.too_large",
                    message=f"Request body exceeds {self.config.max_body_bytes} bytes",
                )
                return
            except ClientGone:
                return
        await self.pipeline.handle(scope, headers, match["slug"], method, body, receive, send)

    async def _scrape(self, scope: Scope, send: Send) -> None:
        """/metrics: served without the Host check (scrapers address workers by IP); the
        token, when set, is what keeps it private."""
        authorization = ""
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                authorization = value.decode("latin-1")
        refusal = self.config.metrics.refusal(authorization)
        if refusal is not None or scope["method"] != "GET":
            status = refusal or 405
            await send_bytes(send, status, b"", {"content-type": "text/plain"}
                             | ({"www-authenticate": 'Bearer realm="wardgate-metrics"'}
                                if status == 401 else {}))
            return
        body, content_type = metrics.exposition()
        await send_bytes(send, 200, body, {"content-type": content_type})

    def _host_or_origin_refused(self, headers: dict[str, str]) -> str | None:
        from django.http.request import split_domain_port, validate_host

        host, _ = split_domain_port(headers.get("host", ""))
        if not host or not validate_host(host, list(self.config.allowed_hosts)):
            return "request.bad_host"
        origin = headers.get("origin")
        if origin is not None:
            name = (urlsplit(origin).hostname or "").lower()
            name = f"[{name}]" if ":" in name else name
            if not name or not validate_host(name, list(self.config.allowed_origins)):
                return "request.bad_origin"
        return None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # start-up failure must stop the server, loudly
                    log.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
