"""Server-Sent Events: parse an upstream byte stream into events and write them back out.

The gateway has to see each JSON-RPC message inside an SSE stream (to mask a tool result or
police a server-to-client request), so it parses events rather than relaying raw bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(slots=True)
class SseEvent:
    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def encode(self) -> bytes:
        lines: list[str] = []
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.event is not None:
            lines.append(f"event: {self.event}")
        if self.retry is not None:
            lines.append(f"retry: {self.retry}")
        for line in self.data.split("\n"):
            lines.append(f"data: {line}")
        return ("\n".join(lines) + "\n\n").encode()


async def parse_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[SseEvent]:
    """Yield complete events; comments and keep-alives are dropped, as EventSource does."""
    buffer = b""
    current = SseEvent()
    data_lines: list[str] = []
    has_field = False
    async for chunk in chunks:
        buffer += chunk
        while True:
            idx = buffer.find(b"\n")
            if idx < 0:
                break
            raw, buffer = buffer[:idx], buffer[idx + 1 :]
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if line == "":
                if has_field:
                    current.data = "\n".join(data_lines)
                    yield current
                current, data_lines, has_field = SseEvent(), [], False
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            has_field = True
            if name == "data":
                data_lines.append(value)
            elif name == "event":
                current.event = value
            elif name == "id":
                current.id = value
            elif name == "retry" and value.isdigit():
                current.retry = int(value)
    if has_field:
        current.data = "\n".join(data_lines)
        yield current
