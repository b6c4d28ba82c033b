"""Several gateway processes share one database: an access decision taken anywhere reaches
every process within a second, and their audit records form one unbroken chain."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from django.db import connection

from bigquery_mcp.emulator import free_port
from tests.conftest import ROOT, wait_http

pytestmark = pytest.mark.django_db(transaction=True)

META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
           "mcp-method": "tools/list"}


@pytest.fixture
def two_gateways(transactional_db, tmp_path):  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        pytest.skip("several gateway processes need a shared database server (PostgreSQL)")
    s = connection.settings_dict
    url = f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "WARDGATE_VAR_DIR": str(tmp_path)}
    procs, bases = [], []
    for _ in range(2):
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "wardgate.asgi:application", "--port", str(port),
             "--log-level", "warning"], cwd=ROOT, env=env))
        bases.append(f"http://127.0.0.1:{port}")
    for base, proc in zip(bases, procs, strict=True):
        wait_http(f"{base}/healthz", proc)
    yield bases
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=15)


def status(base: str, token: str) -> int:
    return httpx.post(f"{base}/mcp/demo-bigquery", json=LIST,
                      headers={**HEADERS, "authorization": f"Bearer {token}"}, timeout=30).status_code


def wait_until_all(bases: list[str], token: str, code: int, limit: float = 5.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if all(status(b, token) == code for b in bases):
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not every gateway answered {code} within {limit}s")


def test_revocation_and_quarantine_reach_every_gateway_process(two_gateways, engineer_token, engineer, demo_connection) -> None:  # type: ignore[no-untyped-def]
    from audit.verify import verify_chain
    from portal.models import PersonalToken, Quarantine
    from portal.services.events import SYSTEM
    from portal.services.security import security_revision_bump
    from portal.services.tokens import token_issue, token_revoke

    assert [status(b, engineer_token) for b in two_gateways] == [200, 200]
    token_revoke(token=PersonalToken.objects.get(user=engineer), by=None, meta=SYSTEM)
    took = wait_until_all(two_gateways, engineer_token, 401)
    assert took < 1.0, f"revocation took {took:.2f}s to reach both processes"

    _, fresh = token_issue(user=engineer, connections=[demo_connection], by=None, meta=SYSTEM)
    assert [status(b, fresh) for b in two_gateways] == [200, 200]
    Quarantine.objects.create(connection=demo_connection, reason="incident drill")
    security_revision_bump()
    took = wait_until_all(two_gateways, fresh, 403)
    assert took < 1.0, f"quarantine took {took:.2f}s to reach both processes"

    result = verify_chain()
    assert result.ok and result.records_checked >= 8
