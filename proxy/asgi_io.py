"""Small ASGI helpers: read a bounded body, send JSON / plain responses, stream events."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


def request_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


# Headers that decide who the caller is or which session it speaks in: sent twice, the
# gateway and the upstream could each read a different one.
SINGLE_HEADERS = frozenset({"authorization", "mcp-session-id", "host"})


def repeated_headers(scope: Scope) -> list[str]:
    """The identity-bearing headers (SINGLE_HEADERS) the request carries more than once."""
    seen: dict[str, int] = {}
    for key, _ in scope["headers"]:
        name = key.decode("latin-1").lower()
        if name in SINGLE_HEADERS:
            seen[name] = seen.get(name, 0) + 1
    return sorted(name for name, count in seen.items() if count > 1)


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_bytes(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    all_headers = {"content-length": str(len(body))} | headers
    await send({"type": "http.response.start", "status": status,
                "headers": _encode_headers(all_headers)})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, headers: dict[str, str] | None = None) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send_bytes(send, status, body, {"content-type": "application/json"} | (headers or {}))
    return body


async def start_stream(send: Send, status: int, headers: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": _encode_headers(headers)})


async def stream_chunk(send: Send, chunk: bytes, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": more})
