"""Streamable HTTP upstream: one pooled async HTTP client, requests relayed per MCP message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from proxy.sse import SseEvent, parse_sse

# Request headers the upstream needs to keep the MCP session; the caller's Authorization is
# for the gateway only and is never passed on (the upstream gets the gateway's credentials).
# Every `Mcp-*` header is protocol (session id, protocol version, and from 2026-07-28 the
# Mcp-Method / Mcp-Name / Mcp-Param-* routing headers the upstream checks against the body).
FORWARDED_REQUEST_HEADERS = ("accept", "content-type", "last-event-id")
FORWARDED_RESPONSE_HEADERS = ("content-type", "cache-control")


class UpstreamError(Exception):
    """The upstream could not be reached or broke the protocol; `.reason` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    events: AsyncIterator[SseEvent] | None = None
    _response: httpx.Response | None = field(default=None, repr=False)

    @property
    def is_stream(self) -> bool:
        return self.events is not None

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()


def pick_headers(headers: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k in names or k.startswith("mcp-")}


class HttpUpstream:
    def __init__(
        self, client: httpx.AsyncClient, url: str, credentials_headers: dict[str, str] | None = None
    ) -> None:
        self.client = client
        self.url = url
        self.credentials_headers = credentials_headers or {}

    async def send(
        self, method: str, headers: dict[str, str], body: bytes = b"", *, timeout: float | None = None
    ) -> UpstreamResponse:
        out_headers = pick_headers(headers, FORWARDED_REQUEST_HEADERS) | self.credentials_headers
        request = self.client.build_request(
            method, self.url, headers=out_headers, content=body or None,
            timeout=httpx.Timeout(timeout) if timeout else httpx.USE_CLIENT_DEFAULT,
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamError("upstream.timeout", "The upstream MCP server timed out") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(
                "upstream.unreachable", f"The upstream MCP server is unreachable ({type(exc).__name__})"
            ) from exc
        resp_headers = pick_headers(
            {k.lower(): v for k, v in response.headers.items()}, FORWARDED_RESPONSE_HEADERS
        )
        if resp_headers.get("content-type", "").startswith("text/event-stream"):
            return UpstreamResponse(
                response.status_code, resp_headers,
                events=parse_sse(response.aiter_bytes()), _response=response,
            )
        try:
            body = await response.aread()
        except httpx.HTTPError as exc:
            raise UpstreamError("upstream.broken_response", "The upstream response broke off") from exc
        finally:
            await response.aclose()
        return UpstreamResponse(response.status_code, resp_headers, body=body)
