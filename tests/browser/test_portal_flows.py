"""The portal in a real browser (headless Chromium), against the real ASGI app (portal and
gateway) with the BigQuery emulator behind our MCP server.

1. An engineer requests access; the approver's queue shows it without a reload; the approver
   approves; the engineer's page turns "approved" without a reload; the engineer's MCP client
   can now call execute_sql through the gateway.
2. An admin disables the engineer: its open MCP session closes within 1 s; the next call is refused.
3. An auditor searches the trail and exports it (the export is itself recorded).
Every action is in the audit chain, which still verifies."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from audit.models import AuditRecord
from audit.verify import verify_chain
from portal.models import AccessRequest, Grant
from portal.services.events import SYSTEM
from portal.services.security import security_revision_bump
from portal.services.tokens import token_issue
from tests.browser.conftest import screenshot, sign_in
from tests.portal.conftest import TOTP_SECRET, portal_user

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "x-test-pass-123"


async def _call(url: str, token: str) -> Any:
    from wardgate.mcp_client import gateway_client

    async with gateway_client(url, token) as client:
        return await client.call_tool(
            "execute_sql", {"sql": "SELECT customer_id, email FROM shop.customers "
                                   "ORDER BY customer_id LIMIT 2"})


def call_tool(url: str, token: str) -> Any:
    """The official MCP client, on its own thread and loop (Playwright owns this thread's)."""

    def run() -> Any:
        try:
            return asyncio.run(_call(url, token))
        except Exception as exc:  # refused at the HTTP level (401/403) surfaces as an error
            return exc

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=60)


def _text(result: Any) -> str:
    if isinstance(result, Exception):
        return repr(result)
    return json.dumps([getattr(c, "text", "") for c in result.content])


class OpenMcpSession:
    """An MCP session (2025-06-18, with its GET stream) held open in a thread."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.streaming = threading.Event()
        self.closed_at: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> OpenMcpSession:
        self.thread.start()
        assert self.streaming.wait(10), "the MCP session's stream did not open"
        return self

    def _run(self) -> None:
        headers = {"authorization": f"Bearer {self.token}", "content-type": "application/json",
                   "accept": "application/json, text/event-stream"}
        with httpx.Client(timeout=30) as http:
            init = http.post(self.url, headers=headers, json={
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "browser-test", "version": "1"}}})
            headers |= {"mcp-session-id": init.headers["mcp-session-id"],
                        "mcp-protocol-version": "2025-06-18"}
            http.post(self.url, headers=headers,
                      json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            try:
                with http.stream("GET", self.url, headers=headers) as response:
                    self.streaming.set()
                    for _ in response.iter_bytes():
                        pass
            except (httpx.RemoteProtocolError, httpx.ReadError):
                pass
        self.closed_at = time.time()

    def wait_closed(self, timeout: float) -> float:
        self.thread.join(timeout)
        assert self.closed_at is not None, "the MCP session stayed open"
        return self.closed_at


def test_request_approve_call_disable_audit(gateway, demo_connection, demo_policy,
                                            new_page) -> None:
    base = gateway.base_url
    url = gateway.url(demo_connection.slug)
    engineer = portal_user("erin", "engineer")
    portal_user("avery", "approver")
    portal_user("alice", "admin")
    portal_user("aud", "auditor")
    # Only the access request may give erin access: no standing group grant.
    Grant.objects.filter(group__name="engineer").update(revoked_at=timezone.now())
    security_revision_bump()
    _, token = token_issue(user=engineer, connections=[demo_connection], by=None, meta=SYSTEM)
    before = call_tool(url, token)
    assert isinstance(before, Exception) or before.is_error, _text(before)

    approver_page = new_page()
    sign_in(approver_page, base, "avery", PASSWORD, TOTP_SECRET)
    approver_page.goto(f"{base}/approvals/")
    assert "Nothing waiting" in approver_page.inner_text("#queues")

    eng_page = new_page()
    sign_in(eng_page, base, "erin", PASSWORD)
    eng_page.goto(f"{base}/requests/")
    eng_page.select_option("select[name=connection]", demo_connection.slug)
    eng_page.select_option("select[name=role]", "analyst")
    eng_page.fill("input[name=duration_hours]", "4")
    eng_page.fill("textarea[name=justification]", "Churn analysis for the Q3 review")
    eng_page.click("#request-form button[type=submit]")
    eng_page.wait_for_selector('#my-requests [data-status="pending"]')
    screenshot(eng_page, "01-engineer-request-pending")

    # The approver's queue shows it in place (htmx polling), no reload.
    approver_page.wait_for_selector("text=Churn analysis for the Q3 review", timeout=10_000)
    screenshot(approver_page, "02-approver-queue")
    req = AccessRequest.objects.get()
    row = approver_page.locator(f"#access-request-{req.pk}")
    row.locator("textarea[name=comment]").fill("OK for the quarter")
    row.locator("button[value=approve]").click()
    approver_page.wait_for_selector(f"text=Access request #{req.pk} approved")

    # The engineer's list turns approved in place.
    eng_page.wait_for_selector('#my-requests [data-status="approved"]', timeout=10_000)
    screenshot(eng_page, "03-engineer-request-approved")

    deadline = time.monotonic() + 3
    result = call_tool(url, token)
    while (isinstance(result, Exception) or result.is_error) and time.monotonic() < deadline:
        time.sleep(0.2)
        result = call_tool(url, token)
    assert not isinstance(result, Exception) and not result.is_error, _text(result)
    rows = result.structured_content["rows"]
    assert len(rows) == 2 and "***" in rows[0]["email"]  # masked by the analyst role

    # erin holds an MCP session open (session-based revision, GET stream) ...
    stream = OpenMcpSession(url, token).start()
    # ... and an admin disables erin: the open session is closed within a second, and the next
    # call is refused.
    admin_page = new_page()
    sign_in(admin_page, base, "alice", PASSWORD, TOTP_SECRET)
    admin_page.goto(f"{base}/users/{engineer.pk}/")
    screenshot(admin_page, "04-admin-account-page")
    admin_page.fill("#disable-form textarea[name=reason]", "Laptop reported stolen")
    admin_page.click("#disable-form button[type=submit]")
    admin_page.wait_for_selector("text=erin disabled")
    engineer.refresh_from_db()
    assert not engineer.is_active
    disabled_at = AuditRecord.objects.get(event="portal.account_disabled").at.timestamp()
    closed_at = stream.wait_closed(timeout=10)
    assert closed_at - disabled_at < 1.0, f"session open {closed_at - disabled_at:.2f}s after"
    after = call_tool(url, token)
    assert isinstance(after, Exception) or after.is_error, _text(after)

    # An auditor searches the trail and exports it.
    auditor_page = new_page()
    sign_in(auditor_page, base, "aud", PASSWORD)
    auditor_page.goto(f"{base}/audit/")
    auditor_page.fill("#audit-filter input[name=actor]", "erin")
    auditor_page.fill("#audit-filter input[name=table]", "shop.customers")
    auditor_page.click("#audit-filter button[type=submit]")
    auditor_page.wait_for_selector("#audit-results")
    assert "mcp.outcome" in auditor_page.inner_text("#audit-results")
    screenshot(auditor_page, "05-auditor-search")
    auditor_page.locator("#audit-results a").first.click()
    auditor_page.wait_for_selector("text=Response as it left")
    screenshot(auditor_page, "06-audit-record")
    auditor_page.go_back()
    with auditor_page.expect_download() as download:
        auditor_page.click("text=Export JSON lines")
    lines = open(download.value.path(), encoding="utf-8").read().splitlines()  # noqa: SIM115
    exported = [json.loads(line) for line in lines]
    assert exported and all(r["actor"] == "erin" for r in exported)
    assert any(r["event"] == "mcp.outcome" and r["decision"] == "allow" for r in exported)

    # Every action is in the trail, and the chain verifies.
    events = set(AuditRecord.objects.values_list("event", flat=True))
    assert {"portal.login", "portal.access_requested", "portal.grant_created",
            "portal.access_request_decided", "portal.account_disabled",
            "portal.audit_exported", "mcp.outcome"} <= events
    disabled = AuditRecord.objects.get(event="portal.account_disabled")
    assert disabled.actor == "alice" and disabled.detail["reason"] == "Laptop reported stolen"
    assert disabled.source_ip == "127.0.0.1" and "Chrome" in disabled.user_agent
    assert verify_chain().ok


def test_pages_render_for_admin(gateway, demo_connection, demo_policy, new_page) -> None:
    """Key admin pages render (and are screenshotted for review)."""
    portal_user("alice", "admin")
    page = new_page()
    sign_in(page, gateway.base_url, "alice", PASSWORD, TOTP_SECRET)
    for path, name in [("/connections/demo-bigquery/", "07-connection"), ("/roles/", "08-roles"),
                       ("/incidents/", "09-incidents"), ("/grants/", "10-grants"),
                       ("/users/", "11-accounts")]:
        response = page.goto(f"{gateway.base_url}{path}")
        assert response is not None and response.status == 200, path
        screenshot(page, name)
    page.goto(f"{gateway.base_url}/policy/try/")
    page.select_option("select[name=role]", "analyst")
    page.select_option("select[name=connection]", demo_connection.slug)
    page.fill("textarea[name=sql]", "SELECT full_name, email, ssn FROM shop.customers "
                                    "ORDER BY customer_id LIMIT 3")
    page.check("input[name=run_sample]")
    page.click("form button[type=submit] >> text=Evaluate")
    page.wait_for_selector("#try-result")
    text = page.inner_text("#try-result")
    assert "allow" in text and "Masked sample" in text
    screenshot(page, "12-try-it")
    assert get_user_model().objects.filter(username="alice").exists()
