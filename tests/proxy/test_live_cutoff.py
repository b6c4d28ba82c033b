"""Access taken away reaches what is already open: a disabled account's live MCP session is
closed within a second, and an admin can kill one session."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from proxy.db import run_db

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
LEGACY = "2025-06-18"


async def open_legacy_session(http: httpx.AsyncClient, url: str, token: str) -> dict[str, str]:
    headers = {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream",
               "content-type": "application/json"}
    init = await http.post(url, headers=headers, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {},
                   "clientInfo": {"name": "cutoff-test", "version": "1"}}})
    assert init.status_code == 200, init.text
    session = init.headers["mcp-session-id"]
    headers |= {"mcp-session-id": session, "mcp-protocol-version": LEGACY}
    done = await http.post(url, headers=headers,
                           json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert done.status_code == 202
    return headers


async def stream_until_closed(http: httpx.AsyncClient, url: str, headers: dict[str, str],
                              opened: asyncio.Event) -> float:
    """Hold the session's GET stream open; return the time it was closed by the server."""
    try:
        async with http.stream("GET", url, headers=headers, timeout=30) as response:
            assert response.status_code == 200
            opened.set()
            async for _ in response.aiter_bytes():
                pass
    except (httpx.RemoteProtocolError, httpx.ReadError):
        pass
    return time.monotonic()


async def run_cutoff(gateway, token: str, cut) -> tuple[float, dict[str, str]]:  # type: ignore[no-untyped-def]
    url = gateway.url("demo-bigquery")
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await open_legacy_session(http, url, token)
        opened = asyncio.Event()
        stream = asyncio.create_task(stream_until_closed(http, url, headers, opened))
        await asyncio.wait_for(opened.wait(), 10)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await run_db(cut)
        closed_at = await asyncio.wait_for(stream, 10)
        after = await http.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {}})
    return closed_at - started, {"status": str(after.status_code), "body": after.text}


async def test_disabling_an_account_closes_its_open_session_within_a_second(gateway, engineer, engineer_token) -> None:  # type: ignore[no-untyped-def]
    from portal.services.security import security_revision_bump

    def disable() -> None:
        engineer.is_active = False
        engineer.save()
        security_revision_bump()

    took, after = await run_cutoff(gateway, engineer_token, disable)
    assert took < 1.0, f"the session stayed open {took:.2f}s"
    assert after["status"] == "401" and "auth.account_disabled" in after["body"]
    from portal.models import GatewaySession

    # The gateway cuts the stream first and records the close just after (the cut must not wait
    # for a database write): the record follows within moments, not necessarily before the
    # client's next request is answered.
    deadline = time.monotonic() + 5
    session = await run_db(lambda: GatewaySession.objects.get())
    while session.closed_at is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        session = await run_db(lambda: GatewaySession.objects.get())
    assert session.closed_at is not None and session.close_reason.startswith("killed")


async def test_an_admin_can_kill_one_session(gateway, engineer, engineer_token) -> None:  # type: ignore[no-untyped-def]
    from portal.models import GatewaySession
    from portal.services.sessions import session_kill

    def kill() -> None:
        session_kill(session=GatewaySession.objects.get(), by=None, reason="suspicious queries")

    took, after = await run_cutoff(gateway, engineer_token, kill)
    assert took < 1.0, f"the session stayed open {took:.2f}s"
    assert after["status"] == "404" and "session.closed" in after["body"]
    # The account itself still works: a new session may be opened.
    async with httpx.AsyncClient(timeout=30) as http:
        await open_legacy_session(http, gateway.url("demo-bigquery"), engineer_token)
    from audit.models import AuditRecord

    assert await run_db(lambda: AuditRecord.objects.filter(event="portal.session_killed").exists())
