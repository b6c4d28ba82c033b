"""uvicorn's h11 protocol with a header-read timeout (slowloris).

uvicorn times out idle keep-alive connections, but any byte received cancels that timer, so a
client that sends its request line and headers one byte at a time held a connection (and a
file descriptor) forever. Here the headers of each request must be complete within
WARDGATE_GATEWAY_HEADER_TIMEOUT seconds of its first byte (or of the connection opening),
or the connection is closed. Bodies are timed by the gateway (proxy.app).

Run with `uvicorn wardgate.asgi:application --http proxy.http_protocol:GuardedH11Protocol`
(the demo does).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("wardgate.gateway")


def header_timeout_seconds() -> float:
    from proxy.config import gateway_config

    return gateway_config().header_timeout_seconds


class GuardedH11Protocol(H11Protocol):
    _header_timer: asyncio.TimerHandle | None = None
    _cycle_seen: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first byte of the next request
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._cycle_seen:
            self._cycle_seen = self.cycle  # its headers are complete
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(header_timeout_seconds(), self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.cycle is None or self.cycle.response_complete:
            log.warning("closed a connection from %s: request headers not complete in time",
                        self.client)
            self.transport.close()
