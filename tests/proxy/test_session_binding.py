"""Sessions follow the person who opened them: an MCP session answers only to that identity,
disabling closes idle sessions too and re-enabling does not revive them, a killed session is
closed at once and its stdio subprocess ends. Sessions are opened with the official client."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest

from portal.services.events import SYSTEM
from proxy.db import run_db
from tests.conftest import make_user
from tests.proxy.test_gateway_stdio import stdio_connection  # noqa: F401 (fixture)
from tests.proxy.test_live_cutoff import LEGACY
from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.django_db(transaction=True)]


def session_key() -> str:
    from portal.models import GatewaySession

    return GatewaySession.objects.order_by("-opened_at").values_list("session_key", flat=True)[0]


async def list_on_session(url: str, token: str, key: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url, json={"jsonrpc": "2.0", "id": 7, "method": "tools/list",
                                          "params": {}},
                               headers={"authorization": f"Bearer {token}",
                                        "accept": "application/json, text/event-stream",
                                        "mcp-session-id": key, "mcp-protocol-version": LEGACY})


def last_rejection():  # type: ignore[no-untyped-def]
    from audit.models import AuditRecord

    return AuditRecord.objects.filter(event="mcp.rejected").order_by("-seq").first()


def second_engineer_token(demo_connection) -> str:  # type: ignore[no-untyped-def]
    from portal.services.tokens import token_issue

    other = make_user("mallory", "engineer")  # same grants as the owner: still not her session
    return token_issue(user=other, connections=[demo_connection], by=None, meta=SYSTEM)[1]


@pytest.mark.asyncio
async def test_a_session_answers_only_to_the_identity_that_opened_it(gateway, engineer_token, demo_connection) -> None:  # type: ignore[no-untyped-def]
    url = gateway.url("demo-bigquery")
    other_token = await run_db(second_engineer_token, demo_connection)
    async with gateway_client(url, engineer_token, mode="legacy") as client:
        await client.list_tools()
        key = await run_db(session_key)
        hijack = await list_on_session(url, other_token, key)
        assert hijack.status_code == 404, hijack.text
        assert hijack.json()["error"]["data"]["reason"] == "session.not_yours"
        record = await run_db(last_rejection)
        assert record.actor == "mallory" and record.mcp_session_id == key
        assert (await client.list_tools()).tools  # the owner is undisturbed


async def wait_for(check, timeout: float = 3.0) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not await run_db(check):
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.asyncio
async def test_disable_closes_idle_sessions_and_re_enable_does_not_revive_them(gateway, engineer, engineer_token, demo_connection) -> None:  # type: ignore[no-untyped-def]
    from portal.models import GatewaySession
    from portal.services.accounts import account_disable, account_enable
    from portal.services.tokens import token_issue

    url = gateway.url("demo-bigquery")
    async with gateway_client(url, engineer_token, mode="legacy") as client:
        await client.list_tools()
        key = await run_db(session_key)
    # The client closed politely; open one more and leave it idle (no call in flight).
    async with httpx.AsyncClient(timeout=30) as http:
        from tests.proxy.test_live_cutoff import open_legacy_session

        headers = await open_legacy_session(http, url, engineer_token)
    key = headers["mcp-session-id"]
    await run_db(lambda: account_disable(account=engineer, by=None, reason="left", meta=SYSTEM))
    session = await run_db(lambda: GatewaySession.objects.get(session_key=key))
    assert session.closed_at is not None and "account disabled" in session.close_reason
    await run_db(lambda: account_enable(account=engineer, by=None, reason="back", meta=SYSTEM))
    fresh = await run_db(lambda: token_issue(user=engineer, connections=[demo_connection],
                                             by=None, meta=SYSTEM)[1])
    await asyncio.sleep(0.5)  # the gateway's revision poll
    revived = await list_on_session(url, fresh, key)
    assert revived.status_code == 404 and revived.json()["error"]["data"]["reason"] == \
        "session.closed"


def test_the_account_page_shows_a_disabled_accounts_grants_as_suspended(engineer, demo_policy) -> None:  # type: ignore[no-untyped-def]
    from portal.services.accounts import account_disable
    from tests.portal.conftest import client_for, portal_user

    account_disable(account=engineer, by=None, reason="left", meta=SYSTEM)
    page = client_for(portal_user("root-admin", "admin")).get(f"/users/{engineer.pk}/")
    assert page.status_code == 200
    assert b'class="badge suspended"' in page.content and b'class="badge active"' not in page.content


@pytest.mark.asyncio
@pytest.mark.single_process_gateway("watches this gateway's stdio pool")
async def test_killing_a_session_closes_it_and_ends_its_stdio_subprocess_at_once(gateway, stdio_connection) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from portal.models import GatewaySession
    from portal.services.sessions import session_kill

    _, token = stdio_connection
    pool = gateway.gateway.pipeline.stdio
    async with gateway_client(gateway.url("bq-stdio"), token, mode="legacy") as client:
        await client.list_tools()
        key = await run_db(session_key)
        [process] = [p for p in pool.processes() if p.session_id == key]
        assert process.pid is not None
        started = time.monotonic()
        await run_db(lambda: session_kill(session=GatewaySession.objects.get(session_key=key),
                                          by=None, reason="credentials leaked"))
        session = await run_db(lambda: GatewaySession.objects.get(session_key=key))
        assert session.closed_at is not None  # closed, never left "closing"

        def gone() -> bool:
            try:
                os.kill(process.pid, 0)
            except ProcessLookupError:
                return True
            return key not in pool.session_ids() and _zombie(process.pid)

        while not gone():
            assert time.monotonic() - started < 2.0, "the stdio subprocess outlived its session"
            await asyncio.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def test_expired_approvals_are_expired_by_a_scheduled_task(engineer, demo_connection, settings) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    from django.utils import timezone

    from audit.models import AuditRecord
    from portal.models import QueryApproval
    from portal.tasks import expire_approvals

    approval = QueryApproval.objects.create(
        requester=engineer, connection=demo_connection, tool="execute_sql",
        arguments_sha256="a" * 64, sql_text="SELECT 1", policy_version=0, rule="r",
        reason="big", approver_groups=["approver"],
        expires_at=timezone.now() - dt.timedelta(minutes=1))
    scheduled = [e for e in settings.CELERY_BEAT_SCHEDULE.values()
                 if e["task"] == "portal.expire_approvals"]
    assert scheduled and scheduled[0]["schedule"] <= 300
    assert expire_approvals.apply().get() == 1
    approval.refresh_from_db()
    assert approval.status == "expired"
    assert AuditRecord.objects.get(event="portal.approvals_expired").detail["approval_ids"] == \
        [approval.pk]
