"""Dependency faults, through a real gateway process: every outbound call has a timeout; a call
whose client went away is cancelled upstream and recorded as cancelled; a database outage
fails closed and recovers, losing no audit record."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from django.db import connection

from bigquery_mcp.emulator import free_port
from proxy.asgi_io import read_body
from proxy.db import run_db
from tests.conftest import ROOT, RunningGateway
from tests.proxy.faults import Blackhole, Relay
from tests.proxy.mcp_http import call_headers, call_sql, decision_rules, sql_call

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
QUICK = "SELECT customer_id FROM shop.customers LIMIT 1"


def outcomes(**filters: object) -> list:
    from audit.models import AuditRecord

    return list(AuditRecord.objects.filter(**filters).order_by("seq"))


async def test_a_hung_bigquery_is_timed_out_and_the_denial_recorded(
        gateway_process, engineer_token, demo_connection, demo_policy) -> None:  # type: ignore[no-untyped-def]
    hung = Blackhole()
    try:
        demo_connection.bigquery_endpoint = f"http://127.0.0.1:{hung.port}"
        await run_db(demo_connection.save)
        gw = gateway_process(WARDGATE_BIGQUERY_TIMEOUT="2")
        async with httpx.AsyncClient() as http:
            started = time.monotonic()
            status, answer = await call_sql(http, gw.url("demo-bigquery"), engineer_token,
                                            QUICK, timeout=60)
            took = time.monotonic() - started
    finally:
        hung.close()
    assert status == 200 and answer["result"]["isError"]
    assert decision_rules(answer) in (["bigquery.timeout"], ["bigquery.schema_unavailable"])
    assert took < 20, f"the denial took {took:.1f}s"  # without a timeout: minutes
    decisions = await run_db(outcomes, event="mcp.decision", decision="deny")
    assert [r.reasons[0]["rule"] for r in decisions] == decision_rules(answer)


async def test_a_hung_jwks_is_timed_out(gateway_process, oidc_issuer, demo_policy) -> None:  # type: ignore[no-untyped-def]
    hung = Blackhole()
    try:
        gw = gateway_process(WARDGATE_OIDC_ISSUER=oidc_issuer.issuer,
                             WARDGATE_OIDC_JWKS_URL=f"http://127.0.0.1:{hung.port}/jwks.json",
                             WARDGATE_OIDC_AUDIENCE="wardgate", WARDGATE_OIDC_HTTP_TIMEOUT="1")
        token = oidc_issuer.token("engineer", ["engineer"])
        async with httpx.AsyncClient() as http:
            started = time.monotonic()
            status, _ = await call_sql(http, gw.url("demo-bigquery"), token, QUICK)
            took = time.monotonic() - started
    finally:
        hung.close()
    assert status == 401 and took < 15, (status, took)
    assert len(await run_db(outcomes, event="mcp.rejected")) == 1


class SlowUpstream:
    """An MCP upstream that answers tools/call only after `delay` seconds, and notes what it
    was told (cancellations) and whether the caller hung up on it."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received: list[dict] = []
        self.hung_up = threading.Event()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        request = json.loads(await read_body(receive, 1_000_000))
        self.received.append(request)
        if "id" not in request:
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            async with asyncio.timeout(self.delay):
                while (await receive())["type"] != "http.disconnect":
                    pass
            self.hung_up.set()
            return
        except TimeoutError:
            pass
        out = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {
            "content": [{"type": "text", "text": "late"}], "isError": False}}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out})


async def serve_slow_upstream(demo_connection, delay: float) -> tuple[SlowUpstream, RunningGateway]:  # type: ignore[no-untyped-def]
    upstream = SlowUpstream(delay=delay)
    server = RunningGateway(upstream, free_port()).start()
    demo_connection.upstream_url = f"{server.base_url}/mcp"
    await run_db(demo_connection.save)
    return upstream, server



async def test_a_client_that_gives_up_gets_its_call_cancelled_upstream_and_recorded(
        gateway_process, engineer_token, demo_connection, demo_policy) -> None:  # type: ignore[no-untyped-def]
    upstream, server = await serve_slow_upstream(demo_connection, delay=20)
    try:
        gw = gateway_process()
        call = sql_call(QUICK)
        async with httpx.AsyncClient() as http:
            client = asyncio.create_task(http.post(
                gw.url("demo-bigquery"), json=call, timeout=60,
                headers={**call_headers(engineer_token, "tools/call"), "mcp-name": "execute_sql"}))
            deadline = time.monotonic() + 60
            while not any(r.get("method") == "tools/call" for r in upstream.received):
                assert time.monotonic() < deadline and not client.done()
                await asyncio.sleep(0.05)
            client.cancel()  # the client gives up while the upstream works on it
            await asyncio.gather(client, return_exceptions=True)
        assert await asyncio.to_thread(upstream.hung_up.wait, 10), "the upstream call went on"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                r.get("method") == "notifications/cancelled" for r in upstream.received):
            await asyncio.sleep(0.1)
    finally:
        server.stop()
    cancel = [r for r in upstream.received if r.get("method") == "notifications/cancelled"]
    assert [c["params"]["requestId"] for c in cancel] == [call["id"]]
    await asyncio.sleep(0.5)
    records = await run_db(outcomes, tool="execute_sql")
    assert [(r.event, r.decision) for r in records] == [
        ("mcp.decision", "allow"), ("mcp.outcome", "cancelled")]
    assert records[1].reasons[0]["rule"] == "client.gone"


async def test_a_hung_upstream_is_timed_out_told_to_cancel_and_the_outcome_recorded(
        gateway_process, engineer_token, demo_connection, demo_policy) -> None:  # type: ignore[no-untyped-def]
    upstream, server = await serve_slow_upstream(demo_connection, delay=30)
    try:
        gw = gateway_process(WARDGATE_GATEWAY_UPSTREAM_TIMEOUT="2")
        async with httpx.AsyncClient() as http:
            started = time.monotonic()
            status, answer = await call_sql(http, gw.url("demo-bigquery"), engineer_token,
                                            QUICK, timeout=60)
            took = time.monotonic() - started
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
                r.get("method") == "notifications/cancelled" for r in upstream.received):
            await asyncio.sleep(0.1)
    finally:
        server.stop()
    assert status == 200 and answer["result"]["isError"], answer
    assert decision_rules(answer) == ["upstream.timeout"]
    assert took < 20, f"the answer took {took:.1f}s"  # the upstream would have taken 30
    call_id = next(r["id"] for r in upstream.received if r.get("method") == "tools/call")
    cancel = [r for r in upstream.received if r.get("method") == "notifications/cancelled"]
    assert [c["params"]["requestId"] for c in cancel] == [call_id]
    records = await run_db(outcomes, tool="execute_sql")
    assert [(r.event, r.decision) for r in records] == [
        ("mcp.decision", "allow"), ("mcp.outcome", "error")]
    assert records[1].reasons[0]["rule"] == "upstream.timeout"


# An MCP upstream in a process of its own, to be killed: with "hang" it notes a tools/call in
# the marker file and never answers it; with "answer" it answers every request.
KILLABLE_UPSTREAM = """
import asyncio, json, pathlib, sys
import uvicorn
from proxy.asgi_io import read_body
port, marker, mode = int(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    request = json.loads(await read_body(receive, 1_000_000) or b"{}")
    if request.get("method") == "tools/call" and mode == "hang":
        marker.write_text("called")
        await asyncio.sleep(600)
    out = json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "result": {
        "content": [{"type": "text", "text": "fine"}], "isError": False}}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
"""


def _start_upstream(port: int, marker: object, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE_UPSTREAM, str(port), str(marker),
                             mode], cwd=ROOT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "upstream did not start"
            time.sleep(0.05)


async def test_an_http_upstream_killed_mid_call_fails_the_call_closed_and_recovers(
        gateway_process, engineer_token, demo_connection, demo_policy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port, marker = free_port(), tmp_path / "called"
    upstream = _start_upstream(port, marker, "hang")
    try:
        demo_connection.upstream_url = f"http://127.0.0.1:{port}/mcp"
        await run_db(demo_connection.save)
        gw = gateway_process()
        url = gw.url("demo-bigquery")
        async with httpx.AsyncClient() as http:
            calling = asyncio.ensure_future(call_sql(http, url, engineer_token, QUICK, timeout=60))
            deadline = time.monotonic() + 30
            while not marker.exists():  # the upstream is working on the call ...
                assert time.monotonic() < deadline and not calling.done()
                await asyncio.sleep(0.05)
            upstream.kill()  # ... and dies
            upstream.wait()
            status, answer = await asyncio.wait_for(calling, 30)
            # The call fails closed, with the upstream's failure as its reason.
            assert status == 200 and answer["result"]["isError"], answer
            [rule] = decision_rules(answer)
            assert rule in ("upstream.broken_response", "upstream.unreachable"), rule
            # While it is away, calls fail closed the same way; once it is back, they work.
            status, answer = await call_sql(http, url, engineer_token, QUICK, timeout=60)
            assert status == 200 and answer["result"]["isError"]
            upstream = _start_upstream(port, marker, "answer")
            deadline = time.monotonic() + 20
            while True:
                status, answer = await call_sql(http, url, engineer_token, QUICK, timeout=60)
                if not answer["result"].get("isError") or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert status == 200 and answer["result"]["content"][0]["text"] == "fine", answer
    finally:
        upstream.kill()
        upstream.wait()
    records = await run_db(outcomes, event="mcp.outcome", tool="execute_sql")
    assert records[0].decision == "error" and records[0].reasons[0]["rule"] == rule
    assert records[-1].decision == "allow"


async def test_a_database_outage_fails_closed_recovers_and_loses_no_record(
        gateway_process, engineer_token, demo_policy) -> None:  # type: ignore[no-untyped-def]
    from audit.verify import verify_chain

    if connection.vendor != "postgresql":
        pytest.skip("a database server to lose: PostgreSQL")
    s = connection.settings_dict
    relay = Relay(int(s["PORT"] or 5432))
    url = f"postgres://{s['USER']}@127.0.0.1:{relay.port}/{s['NAME']}"
    gw = gateway_process(DATABASE_URL=url)
    served, refused, after_outage = 0, 0, []
    async with httpx.AsyncClient() as http:
        async def one() -> int:
            status, answer = await call_sql(http, gw.url("demo-bigquery"), engineer_token,
                                            QUICK, timeout=30)
            ok = status == 200 and not answer["result"].get("isError")
            return 1 if ok else 0

        for _ in range(5):
            served += await one()
        relay.outage(3)
        back_at = relay.down_until
        while time.monotonic() < back_at:
            got = await one()
            served += got
            refused += 1 - got
            await asyncio.sleep(0.1)
        while True:
            got = await one()
            served += got
            if got:
                after_outage.append(time.monotonic() - back_at)
                break
            # The soak measures recovery times; here, generous for a loaded machine.
            assert time.monotonic() - back_at < 15, "not recovered within 15 s"
            await asyncio.sleep(0.1)
        for _ in range(5):
            served += await one()
    relay.close()
    assert refused > 0  # it failed closed while the database was away
    allowed = await run_db(outcomes, event="mcp.outcome", decision="allow", tool="execute_sql")
    assert len(allowed) == served  # every answer the client got has its record
    result = await run_db(verify_chain)
    assert result.ok


async def test_a_redis_outage_fails_closed_and_recovers(gateway_process, redis_url) -> None:  # type: ignore[no-untyped-def]
    """Redis holds the portal's shared cache (sign-in rate limits, TOTP replay protection):
    while it is away sign-in is refused rather than unthrottled, and it works again once
    Redis is back."""
    from urllib.parse import urlsplit

    from tests.conftest import make_user

    await run_db(make_user, "redis-user", "engineer")
    parts = urlsplit(redis_url)
    relay = Relay(parts.port or 6379)
    gw = gateway_process(REDIS_URL=f"redis://127.0.0.1:{relay.port}{parts.path or '/0'}")

    async def sign_in() -> int:
        async with httpx.AsyncClient(base_url=gw.base_url) as http:
            page = await http.get("/accounts/login/", timeout=30)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert token, page.text[:500]
            response = await http.post("/accounts/login/", timeout=30, data={
                "login": "redis-user", "password": "x-test-pass-123",
                "csrfmiddlewaretoken": token[1]}, headers={"referer": f"{gw.base_url}/"})
            return response.status_code

    try:
        assert await sign_in() == 302
        relay.outage(3)
        assert await sign_in() >= 500  # refused, never signed in unthrottled
        back = relay.down_until
        while time.monotonic() < back:
            await asyncio.sleep(0.1)
        while (status := await sign_in()) != 302:
            assert time.monotonic() - back < 15, f"sign-in still fails ({status}) 15 s after"
            await asyncio.sleep(0.2)
    finally:
        relay.close()
