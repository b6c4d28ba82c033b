"""`manage.py serve`: the production server, started as a real process with two workers on the
test database; a tool call end to end, `--only`, drain on SIGTERM, and /readyz."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bigquery_mcp.emulator import free_port
from tests.conftest import DATASET, ROOT, database_url_for_children, wait_http

pytestmark = pytest.mark.django_db(transaction=True)

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {}}}}
MCP_HEADERS = {"accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}


class Served:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.base = f"http://127.0.0.1:{port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def serve(tmp_path: Path):  # type: ignore[no-untyped-def]
    """`serve(*args, wait="/readyz", **env)`: `manage.py serve --workers 2 <args>` on a free
    port and the test database."""
    started: list[Served] = []

    def start(*args: str, wait: str = "/readyz", **env: str) -> Served:
        port = free_port()
        log = tmp_path / f"serve-{len(started)}.log"
        full = {**os.environ, "DATABASE_URL": database_url_for_children(),
                "WARDGATE_VAR_DIR": str(tmp_path), **env}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--workers", "2", "--port", str(port),
                 "--log-level", "warning", *args],
                cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT)
        served = Served(proc, port, log)
        started.append(served)
        wait_http(f"{served.base}{wait}", proc, timeout=120)  # a loaded machine
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.terminate()
            try:
                served.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                served.proc.kill()
                served.proc.wait()


def _workers(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def test_two_workers_serve_readyz_portal_and_a_real_tool_call(serve, engineer_token) -> None:  # type: ignore[no-untyped-def]
    from wardgate.mcp_client import call_tool

    served = serve()
    ready = httpx.get(f"{served.base}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "down": [], "checks": {"database": "ok"}}
    # A probe from a load balancer or kubelet carries a Host that is not an allowed host.
    assert httpx.get(f"{served.base}/readyz", headers={"host": "10.0.0.7:8000"},
                     timeout=10).status_code == 200
    assert httpx.get(f"{served.base}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{served.base}/accounts/login/", timeout=10).status_code == 200
    # Two uvicorn workers (plus multiprocessing's resource tracker) under the supervisor.
    assert len(_workers(served.proc.pid)) >= 2, _workers(served.proc.pid)

    sql = f"SELECT customer_id, country FROM {DATASET}.customers ORDER BY customer_id LIMIT 2"
    result = asyncio.run(call_tool(f"{served.base}/mcp/demo-bigquery", engineer_token,
                                   "execute_sql", {"sql": sql}))
    assert not result.is_error, result.content
    assert len(result.structured_content["rows"]) == 2


def test_only_gateway_and_only_portal(serve, engineer_token) -> None:  # type: ignore[no-untyped-def]
    gateway = serve("--only", "gateway")
    portal = serve("--only", "portal")
    auth = {**MCP_HEADERS, "authorization": f"Bearer {engineer_token}"}

    for path in ("/accounts/login/", "/", "/api/v1/", "/static/portal/htmx.min.js"):
        assert httpx.get(f"{gateway.base}{path}", timeout=10).status_code == 404, path
    assert httpx.post(f"{gateway.base}/mcp/demo-bigquery", json=LIST, headers=auth,
                      timeout=30).status_code == 200
    assert httpx.post(f"{portal.base}/mcp/demo-bigquery", json=LIST, headers=auth,
                      timeout=30).status_code == 404
    assert httpx.get(f"{portal.base}/accounts/login/", timeout=10).status_code == 200
    for served in (gateway, portal):
        assert httpx.get(f"{served.base}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{served.base}/readyz", timeout=10).status_code == 200


def test_sigterm_drains_a_request_in_flight_then_refuses_new_ones(serve, engineer_token) -> None:  # type: ignore[no-untyped-def]
    served = serve("--grace-seconds", "20")
    body = json.dumps(LIST).encode()
    head = (f"POST /mcp/demo-bigquery HTTP/1.1\r\nhost: 127.0.0.1:{served.port}\r\n"
            f"authorization: Bearer {engineer_token}\r\ncontent-type: application/json\r\n"
            f"accept: application/json, text/event-stream\r\n"
            f"mcp-protocol-version: 2026-07-28\r\nmcp-method: tools/list\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode()
    in_flight = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    in_flight.sendall(head + body[:10])  # the request has started: half its body is here
    time.sleep(1.0)
    served.proc.send_signal(signal.SIGTERM)
    time.sleep(3.0)  # every worker has stopped listening

    with pytest.raises(httpx.ConnectError):  # refused at once, not left waiting
        httpx.get(f"{served.base}/healthz", timeout=3)

    in_flight.sendall(body[10:])
    response = b""
    while chunk := in_flight.recv(65536):
        response += chunk
    in_flight.close()
    assert response.startswith(b"HTTP/1.1 200"), response[:300]
    assert b'"tools"' in response  # and then the worker closed the connection (recv ended)
    assert served.proc.wait(timeout=30) == 0, served.output()


def test_readyz_names_what_is_down(serve) -> None:  # type: ignore[no-untyped-def]
    dead = free_port()
    # The portal alone starts without touching the database, so the process is up to say so.
    served = serve("--only", "portal", wait="/healthz",
                   DATABASE_URL=f"postgres://wardgate@127.0.0.1:{dead}/wardgate",
                   CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    ready = httpx.get(f"{served.base}/readyz", timeout=15)
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/json"
    assert ready.json()["status"] == "unavailable"
    assert sorted(ready.json()["down"]) == ["broker", "database"]
    assert "127.0.0.1" not in ready.text  # only the error's class, never a driver's message


async def test_readiness_report_with_a_live_redis() -> None:
    from wardgate.readiness import _redis_ping, readiness_report

    url = os.environ.get("WARDGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    try:
        await _redis_ping(url)
    except Exception:
        pytest.skip(f"no Redis at {url}")

    async def fails() -> None:
        raise ConnectionRefusedError("secret-host:5432")

    status, body = await readiness_report({"broker": lambda: _redis_ping(url)})
    assert (status, body["down"]) == (200, [])
    status, body = await readiness_report({"broker": lambda: _redis_ping(url), "database": fails})
    assert status == 503
    assert body == {"status": "unavailable", "down": ["database"],
                    "checks": {"broker": "ok", "database": "down: ConnectionRefusedError"}}
