"""Streamable HTTP upstream: one pooled aiohttp session, requests relayed per MCP message.

aiohttp rather than httpx on the data path: on this hardware a relayed request costs ~0.2 ms
of CPU with aiohttp against ~0.9 ms with httpx, and the gateway's budget is 1 ms in all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from proxy.sse import SseEvent, parse_sse

# Every `Mcp-*` header is protocol (session id, protocol version, and from 2026-07-28 the
# Mcp-Method / Mcp-Name / Mcp-Param-* routing headers the upstream checks against the body).
# The caller's Authorization is for the gateway only and is never passed on: the upstream
# gets the gateway's own credentials instead.
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
    _close: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)

    @property
    def is_stream(self) -> bool:
        return self.events is not None

    async def aclose(self) -> None:
        if self._close is not None:
            await self._close()


def pick_headers(headers: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k in names or k.startswith("mcp-")}


def new_session(*, max_connections: int = 200) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )


async def _chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise UpstreamError("upstream.broken_response", "The upstream stream broke off") from exc


class HttpUpstream:
    def __init__(self, session: aiohttp.ClientSession, url: str,
                 credentials_headers: dict[str, str] | None = None) -> None:
        self.session = session
        self.url = url
        self.credentials_headers = credentials_headers or {}

    async def send(
        self, method: str, headers: dict[str, str], body: bytes = b"", *,
        timeout: float | None = None,
    ) -> UpstreamResponse:
        out_headers = pick_headers(headers, FORWARDED_REQUEST_HEADERS) | self.credentials_headers
        # The read timeout bounds each wait for data, so a long stream that keeps talking
        # (progress) stays open while a silent upstream is cut off.
        client_timeout = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=timeout)
        try:
            response = await self.session.request(
                method, self.url, headers=out_headers, data=body or None, timeout=client_timeout)
        except TimeoutError as exc:
            raise UpstreamError("upstream.timeout", "The upstream MCP server timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                "upstream.unreachable",
                f"The upstream MCP server is unreachable ({type(exc).__name__})",
            ) from exc
        resp_headers = pick_headers({k.lower(): v for k, v in response.headers.items()},
                                    FORWARDED_RESPONSE_HEADERS)
        if resp_headers.get("content-type", "").startswith("text/event-stream"):
            async def close() -> None:
                response.close()

            return UpstreamResponse(response.status, resp_headers,
                                    events=parse_sse(_chunks(response)), _close=close)
        try:
            data = await response.read()
        except TimeoutError as exc:
            raise UpstreamError("upstream.timeout", "The upstream MCP server timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError("upstream.broken_response", "The upstream response broke off") from exc
        finally:
            response.release()
        return UpstreamResponse(response.status, resp_headers, body=data)
