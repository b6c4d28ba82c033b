"""A held query in the browser: a call the role marks for approval is held; the approver
opens the link the caller was given, sees the exact SQL, approves; the identical call then
runs once. The requester never sees an approve button for their own query."""

from __future__ import annotations

import re

import pytest

from audit.verify import verify_chain
from portal.models import QueryApproval
from portal.services.events import SYSTEM
from portal.services.security import security_revision_bump
from portal.services.tokens import token_issue
from tests.browser.conftest import screenshot, sign_in
from tests.browser.test_portal_flows import PASSWORD, call_tool
from tests.portal.conftest import TOTP_SECRET, portal_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_held_query_approved_in_the_portal(gateway, demo_connection, demo_policy,
                                           new_page) -> None:
    demo_policy.rules = {**demo_policy.rules, "approval": [
        {"id": "customers-pii", "tables": ["*.shop.customers"], "approver_groups": ["approver"]}]}
    demo_policy.save()
    security_revision_bump()
    engineer = portal_user("erin", "engineer", "approver")  # an approver too: still not her own
    portal_user("avery", "approver")
    _, token = token_issue(user=engineer, connections=[demo_connection], by=None, meta=SYSTEM)
    url = gateway.url(demo_connection.slug)

    held = call_tool(url, token)
    assert not isinstance(held, Exception) and held.is_error, held
    text = " ".join(getattr(c, "text", "") for c in held.content)
    assert "Approval pending" in text
    approval = QueryApproval.objects.get()
    assert f"/approvals/queries/{approval.pk}/" in text

    own = new_page()
    sign_in(own, gateway.base_url, "erin", PASSWORD, TOTP_SECRET)
    own.goto(f"{gateway.base_url}/approvals/queries/{approval.pk}/")
    assert "your own query" in own.inner_text("main")
    assert own.locator("button[value=approve]").count() == 0

    page = new_page()
    sign_in(page, gateway.base_url, "avery", PASSWORD, TOTP_SECRET)
    page.goto(f"{gateway.base_url}/approvals/queries/{approval.pk}/")
    assert re.search(r"SELECT customer_id, email\s+FROM shop.customers", page.inner_text("main"))
    screenshot(page, "13-held-query")
    page.fill("textarea[name=comment]", "one-off for the churn review")
    page.click("button[value=approve]")
    page.wait_for_selector(f"text=Query #{approval.pk} approved")
    approval.refresh_from_db()
    assert approval.status == "approved"

    ran = call_tool(url, token)
    assert not isinstance(ran, Exception) and not ran.is_error, ran
    assert len(ran.structured_content["rows"]) == 2
    again = call_tool(url, token)  # single use: the next identical call is held again
    assert not isinstance(again, Exception) and again.is_error
    assert verify_chain().ok


def test_the_engineer_follows_the_link_and_learns_why_it_was_denied(gateway, demo_connection,
                                                                     demo_policy, new_page) -> None:
    demo_policy.rules = {**demo_policy.rules, "approval": [
        {"id": "customers-pii", "tables": ["*.shop.customers"], "approver_groups": ["approver"]}]}
    demo_policy.save()
    security_revision_bump()
    engineer = portal_user("dev", "engineer")
    portal_user("avery", "approver")
    _, token = token_issue(user=engineer, connections=[demo_connection], by=None, meta=SYSTEM)
    url = gateway.url(demo_connection.slug)

    held = call_tool(url, token)
    link = held.meta["io.wardgate/approval"]["url"]
    # The link points where the portal is actually served (this test's port, not :8000).
    assert link.startswith(f"{gateway.base_url}/approvals/queries/"), link

    own = new_page()
    sign_in(own, gateway.base_url, "dev", PASSWORD)
    response = own.goto(link)
    assert response is not None and response.status == 200  # not a bare 403
    assert "waits for an approver" in own.inner_text("#own-query-status")

    page = new_page()
    sign_in(page, gateway.base_url, "avery", PASSWORD, TOTP_SECRET)
    page.goto(link)
    page.fill("textarea[name=comment]", "no PII exports this quarter")
    page.click("button[value=deny]")
    page.wait_for_selector("text=denied")

    own.goto(link)
    assert "no PII exports this quarter" in own.inner_text("#own-query-status")
    own.goto(f"{gateway.base_url}/requests/")
    assert "no PII exports this quarter" in own.inner_text("main")
    screenshot(own, "14-held-query-denied")
    # The agent re-running the identical call is told why the last one was refused.
    again = call_tool(url, token)
    text = " ".join(getattr(c, "text", "") for c in again.content)
    assert "no PII exports this quarter" in text and "denied by avery" in text
