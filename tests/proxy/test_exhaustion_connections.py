"""Connection exhaustion with one valid token, and slow clients, against a real gateway process.

Once, 200 GET streams opened with one token took the whole shared upstream pool and every other
caller's tools/call timed out. Now each identity has caps on requests in flight, open streams
and sessions (429 + Retry-After, recorded), streams have a maximum lifetime, each connection
has its own upstream pool with a fair share per identity, and half-sent requests time out.
"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from proxy.db import run_db
from tests.conftest import make_user
from tests.proxy.mcp_http import call_sql
from tests.proxy.test_live_cutoff import open_legacy_session

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
QUICK = "SELECT customer_id FROM shop.customers LIMIT 1"


def rejected(reason: str) -> int:
    from audit.models import AuditRecord

    return sum(r.reasons[0].get("rule") == reason
               for r in AuditRecord.objects.filter(event="mcp.rejected"))


@pytest.fixture
def other_token(demo_connection, demo_policy) -> str:  # type: ignore[no-untyped-def]
    from portal.services.events import SYSTEM
    from portal.services.tokens import token_issue

    _, plaintext = token_issue(user=make_user("analyst2", "engineer"),
                               connections=[demo_connection], by=None, meta=SYSTEM)
    return plaintext


async def hold_stream(http: httpx.AsyncClient, url: str, headers: dict[str, str],
                      statuses: list[int], opened: asyncio.Event) -> float:
    """Open a GET stream and hold it until the server ends it; when that happened."""
    try:
        async with http.stream("GET", url, headers=headers, timeout=60) as response:
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["retry-after"] == "2"
            opened.set()
            async for _ in response.aiter_bytes():
                pass
    except (httpx.RemoteProtocolError, httpx.ReadError):
        pass
    return time.monotonic()


@pytest.mark.single_process_gateway(
    "admission caps are per process: two workers admit up to twice the cap (README)")
async def test_one_identitys_streams_are_capped_and_others_are_served(
        gateway_process, engineer_token, other_token) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_process(WARDGATE_GATEWAY_MAX_STREAMS_PER_IDENTITY="3",
                         WARDGATE_GATEWAY_UPSTREAM_POOL_SIZE="8")
    url = gw.url("demo-bigquery")
    async with httpx.AsyncClient(timeout=60) as http:
        sessions = [await open_legacy_session(http, url, engineer_token) for _ in range(10)]
        statuses: list[int] = []
        events = [asyncio.Event() for _ in sessions]
        streams = [asyncio.create_task(hold_stream(http, url, h, statuses, e))
                   for h, e in zip(sessions, events, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 30)
        assert sorted(statuses) == [200] * 3 + [429] * 7, statuses
        # Another caller, and the same caller's own calls, are served meanwhile (not left
        # waiting for a pool slot until they time out).
        for token in (other_token, engineer_token):
            status, answer = await call_sql(http, url, token, QUICK, timeout=30)
            assert status == 200 and not answer["result"].get("isError"), answer
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    assert await run_db(rejected, "limit.streams") == 7


async def open_streams(http: httpx.AsyncClient, url: str, token: str, count: int
                       ) -> tuple[list[int], list[asyncio.Task]]:
    """`count` sessions of `token`, each holding its GET stream; the streams' statuses."""
    sessions = [await open_legacy_session(http, url, token) for _ in range(count)]
    statuses: list[int] = []
    events = [asyncio.Event() for _ in sessions]
    tasks = [asyncio.create_task(hold_stream(http, url, h, statuses, e))
             for h, e in zip(sessions, events, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 30)
    return sorted(statuses), tasks


@pytest.mark.single_process_gateway(
    "admission caps are per process: two workers admit up to twice the cap (README)")
async def test_each_identity_holds_at_most_its_fair_share_of_a_connections_upstream_pool(
        gateway_process, engineer_token, other_token, demo_connection) -> None:  # type: ignore[no-untyped-def]
    """Streams are held, not taken back: an identity alone must not take the whole pool, or
    whoever comes next is locked out until it lets go."""
    from portal.services.events import SYSTEM
    from portal.services.tokens import token_issue

    _, third_token = await run_db(lambda: token_issue(
        user=make_user("analyst3", "engineer"), connections=[demo_connection], by=None,
        meta=SYSTEM))
    gw = gateway_process(WARDGATE_GATEWAY_UPSTREAM_POOL_SIZE="6",
                         WARDGATE_GATEWAY_MAX_STREAMS_PER_IDENTITY="10")
    url = gw.url("demo-bigquery")
    async with httpx.AsyncClient(timeout=60) as http:
        # Alone, the first identity gets half the pool (3 of 6), not all of it.
        statuses, first = await open_streams(http, url, engineer_token, 4)
        assert statuses == [200, 200, 200, 429], statuses
        # The second gets its share of the rest; the pool (sized from the setting) is full.
        statuses, second = await open_streams(http, url, other_token, 3)
        assert statuses == [200, 200, 200], statuses
        status, answer = await call_sql(http, url, third_token, QUICK, timeout=30)
        assert status == 429 and answer["error"]["data"]["reason"] == "limit.connection_saturated"
        for task in first:
            task.cancel()
        await asyncio.gather(*first, return_exceptions=True)
        deadline = time.monotonic() + 20
        while True:  # the gateway sees the first identity's streams close: room again
            status, answer = await call_sql(http, url, third_token, QUICK, timeout=30)
            if status == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert status == 200 and not answer["result"].get("isError"), answer
        for task in second:
            task.cancel()
        await asyncio.gather(*second, return_exceptions=True)
    assert await run_db(rejected, "limit.fair_share") == 1
    assert await run_db(rejected, "limit.connection_saturated") >= 1


async def test_requests_in_flight_and_sessions_are_capped_per_identity(
        gateway_process, engineer_token, other_token) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_process(WARDGATE_GATEWAY_MAX_REQUESTS_PER_IDENTITY="2",
                         WARDGATE_GATEWAY_MAX_SESSIONS_PER_IDENTITY="2")
    url = gw.url("demo-bigquery")
    async with httpx.AsyncClient(timeout=60) as http:
        answers = await asyncio.gather(*(call_sql(http, url, engineer_token, f"{QUICK} OFFSET {i}")
                                         for i in range(24)))
        codes = [status for status, _ in answers]
        assert set(codes) == {200, 429} and codes.count(200) >= 2, codes
        limited = [a for s, a in answers if s == 429]
        assert all(a["error"]["data"]["reason"] == "limit.requests" for a in limited)
        # The other identity is untouched by the first one's cap.
        status, _ = await call_sql(http, url, other_token, QUICK)
        assert status == 200

        first = await open_legacy_session(http, url, engineer_token)
        await open_legacy_session(http, url, engineer_token)
        with pytest.raises(AssertionError):
            await open_legacy_session(http, url, engineer_token)  # the third is refused
        assert (await http.delete(url, headers=first)).status_code < 300
        await open_legacy_session(http, url, engineer_token)  # room again
    assert await run_db(rejected, "limit.requests") == codes.count(429)
    assert await run_db(rejected, "limit.sessions") == 1


async def test_streams_end_at_their_maximum_lifetime(
        gateway_process, engineer_token, demo_policy) -> None:  # type: ignore[no-untyped-def]
    from audit.models import AuditRecord

    gw = gateway_process(WARDGATE_GATEWAY_STREAM_MAX_SECONDS="1")
    url = gw.url("demo-bigquery")
    async with httpx.AsyncClient(timeout=60) as http:
        headers = await open_legacy_session(http, url, engineer_token)
        opened, statuses = asyncio.Event(), []
        started = time.monotonic()
        ended = await asyncio.wait_for(hold_stream(http, url, headers, statuses, opened), 15)
    assert statuses == [200]
    assert 0.9 < ended - started < 15  # generous: a loaded machine
    closed = await run_db(lambda: list(AuditRecord.objects.filter(event="mcp.stream_closed")))
    assert [r.detail.get("closed_after_max_lifetime_s") for r in closed] == [1.0]


def _slow_send(port: int, pieces: list[bytes], pause: float) -> tuple[float, bytes]:
    """Send `pieces` with pauses; return when the server closed the socket and what it said."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:
                break
            time.sleep(pause)
        sock.settimeout(30)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    return time.monotonic() - started, received


async def test_half_sent_requests_time_out(gateway_process, engineer_token, demo_policy) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_process(WARDGATE_GATEWAY_HEADER_TIMEOUT="1", WARDGATE_GATEWAY_BODY_TIMEOUT="1")
    head = (f"POST /mcp/demo-bigquery HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {engineer_token}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\n").encode()
    # Slowloris: the headers one byte every 0.2 s, never finished.
    took, said = await asyncio.to_thread(_slow_send, gw.port, [bytes([b]) for b in head], 0.2)
    assert took < 15 and said == b"", (took, said)  # without the timeout: never
    # Headers complete, body promised but stalled.
    took, said = await asyncio.to_thread(
        _slow_send, gw.port, [head + b"Content-Length: 100\r\n\r\n{\"jsonrpc\":"], 0.1)
    assert took < 15 and said.startswith(b"HTTP/1.1 408"), (took, said[:200])
    assert await run_db(rejected, "request.body_timeout") == 1
