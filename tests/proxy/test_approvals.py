"""Just-in-time query approval: a risky call is held, approved in the portal, and completes —
bound to the exact call, single-use, separation of duties, every step recorded."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from proxy.db import run_db
from proxy.hold import HoldSettings
from tests.conftest import make_user
from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
SQL = "SELECT customer_id, email FROM shop.customers ORDER BY customer_id LIMIT 3"


@pytest.fixture
def approval_policy(demo_policy):  # type: ignore[no-untyped-def]
    from portal.services.security import security_revision_bump

    demo_policy.rules = {**demo_policy.rules, "approval": [
        {"id": "customers-pii", "tables": ["*.shop.customers"], "approver_groups": ["approver"]}]}
    demo_policy.save()
    security_revision_bump()
    return demo_policy


@pytest.fixture
def approver(transactional_db):  # type: ignore[no-untyped-def]
    return make_user("approver", "approver")


def approve(approval_id: int, user, ok: bool = True, comment: str = "looks fine") -> None:  # type: ignore[no-untyped-def]
    from portal.models import QueryApproval
    from portal.services.approvals import query_approval_decide

    query_approval_decide(approval=QueryApproval.objects.get(pk=approval_id), approver=user,
                          approve=ok, comment=comment)


def events() -> list[str]:
    from audit.models import AuditRecord

    return [r.event for r in AuditRecord.objects.order_by("seq")]


async def call(gateway, token, sql=SQL, **kw):  # type: ignore[no-untyped-def]
    async with gateway_client(gateway.url("demo-bigquery"), token) as client:
        return await client.call_tool("execute_sql", {"sql": sql}, **kw)


async def call_while_deciding(gateway, token, on_progress, approver, *, ok: bool,  # type: ignore[no-untyped-def]
                              comment: str = "looks fine"):
    """A held call (progress token) while an approver, on another thread, decides it."""
    from portal.models import QueryApproval

    def decide_when_pending() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pending = QueryApproval.objects.filter(status="pending").first()
            if pending is not None:
                time.sleep(0.6)
                approve(pending.pk, approver, ok=ok, comment=comment)
                return
            time.sleep(0.1)

    approver_thread = threading.Thread(target=lambda: _closing(decide_when_pending))
    approver_thread.start()
    try:
        return await call(gateway, token, progress_callback=on_progress)
    finally:
        approver_thread.join()


def pending_id(result) -> int:  # type: ignore[no-untyped-def]
    assert result.is_error, result
    approval = result.meta["io.wardgate/approval"]
    assert approval["status"] == "pending" and "/approvals/queries/" in approval["url"]
    return approval["approval_id"]


async def test_held_call_runs_once_approved_and_only_once(gateway, engineer_token, approval_policy, approver) -> None:  # type: ignore[no-untyped-def]
    first = await call(gateway, engineer_token)
    approval_id = pending_id(first)
    assert "Approval pending" in first.content[0].text
    # Re-running before a decision finds the same request, not a new one.
    assert pending_id(await call(gateway, engineer_token)) == approval_id
    # Orders are not covered by the rule: no approval needed.
    assert not (await call(gateway, engineer_token, "SELECT order_id FROM shop.orders LIMIT 1")).is_error

    await run_db(approve, approval_id, approver)
    done = await call(gateway, engineer_token)
    assert not done.is_error and len(done.structured_content["rows"]) == 3
    assert "***@" in done.structured_content["rows"][0]["email"]  # still masked
    # Single use: the identical call needs a new approval.
    assert pending_id(await call(gateway, engineer_token)) != approval_id
    # A different argument is a different call.
    other = await call(gateway, engineer_token, SQL.replace("LIMIT 3", "LIMIT 4"))
    assert pending_id(other) != approval_id

    recorded = await run_db(events)
    for needed in ("approval.proposed", "portal.approval_decided", "approval.consumed"):
        assert needed in recorded
    from audit.models import AuditRecord
    from audit.verify import verify_chain

    holds = await run_db(lambda: list(AuditRecord.objects.filter(decision="hold",
                                                                  event="mcp.decision")))
    assert holds and holds[0].detail["approval_id"] == approval_id
    assert (await run_db(verify_chain)).ok


async def test_nobody_approves_their_own_query(gateway, engineer, engineer_token, approval_policy) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Group

    from portal.services.approvals import ApprovalError

    await run_db(lambda: engineer.groups.add(Group.objects.get_or_create(name="approver")[0]))
    approval_id = pending_id(await call(gateway, engineer_token))
    with pytest.raises(ApprovalError, match="Separation of duties"):
        await run_db(approve, approval_id, engineer)

    def refused():  # type: ignore[no-untyped-def]
        from audit.models import AuditRecord

        return AuditRecord.objects.filter(event="portal.approval_refused").order_by("-seq").first()

    blocked = await run_db(refused)  # the blocked self-approval is on record, by its author
    assert blocked.actor == engineer.username and blocked.decision == "deny"
    assert blocked.detail["approval_id"] == approval_id
    outsider = await run_db(make_user, "someone", "engineer")
    with pytest.raises(ApprovalError, match="not in an approver group"):
        await run_db(approve, approval_id, outsider)


async def test_approval_is_void_under_a_new_policy_version(gateway, engineer_token, approval_policy, approver) -> None:  # type: ignore[no-untyped-def]
    from portal.services.approvals import policy_version_create

    approval_id = pending_id(await call(gateway, engineer_token))
    await run_db(approve, approval_id, approver)
    await run_db(lambda: policy_version_create(by=None, reason="tightened masking"))
    await gateway.refresh()
    assert pending_id(await call(gateway, engineer_token)) != approval_id


async def test_open_call_is_held_with_progress_until_approved(gateway, engineer_token, approval_policy, approver) -> None:  # type: ignore[no-untyped-def]
    progress: list[str] = []

    async def on_progress(done, total, message) -> None:  # type: ignore[no-untyped-def]
        progress.append(message or "")

    result = await call_while_deciding(gateway, engineer_token, on_progress, approver, ok=True)
    assert not result.is_error, result.content
    assert len(result.structured_content["rows"]) == 3
    assert progress and "Waiting for approval" in progress[0]


@pytest.mark.single_process_gateway("shortens this gateway's hold timeout")
async def test_a_hold_that_times_out_says_the_approval_is_still_pending(gateway, engineer_token, approval_policy, approver) -> None:  # type: ignore[no-untyped-def]
    gateway.gateway.pipeline.hold = HoldSettings(timeout_seconds=0.8, poll_seconds=0.2)

    async def on_progress(done, total, message) -> None:  # type: ignore[no-untyped-def]
        pass

    result = await call(gateway, engineer_token, progress_callback=on_progress)
    text = result.content[0].text
    assert result.is_error and "Approval pending" in text and "not been decided yet" in text
    assert "denied" not in text and "Re-run the identical call" in text
    approval_id = pending_id(result)
    # The link is the address this gateway (and portal) is served at.
    assert result.meta["io.wardgate/approval"]["url"] == \
        f"{gateway.base_url}/approvals/queries/{approval_id}/"
    from audit.models import AuditRecord

    outcome = await run_db(lambda: AuditRecord.objects.filter(event="mcp.outcome").last())
    assert outcome.decision == "hold" and outcome.reasons[0]["rule"] == "approval.pending"
    # Still pending, so approving it now and re-running works, as the agent was told.
    await run_db(approve, approval_id, approver)
    assert not (await call(gateway, engineer_token)).is_error


async def test_a_denied_held_call_carries_the_approvers_reason(gateway, engineer_token, approval_policy, approver) -> None:  # type: ignore[no-untyped-def]
    async def on_progress(done, total, message) -> None:  # type: ignore[no-untyped-def]
        pass

    result = await call_while_deciding(gateway, engineer_token, on_progress, approver, ok=False,
                                       comment="use the aggregated view")
    assert result.is_error
    assert 'denied by approver: "use the aggregated view"' in result.content[0].text


async def test_n_of_m_approvals(gateway, engineer_token, demo_policy, approver) -> None:  # type: ignore[no-untyped-def]
    from portal.services.security import security_revision_bump

    def two_needed() -> None:
        demo_policy.rules = {**demo_policy.rules, "approval": [
            {"id": "dual", "tables": ["*.shop.customers"], "approver_groups": ["approver", "dba"],
             "required": 2}]}
        demo_policy.save()
        security_revision_bump()

    await run_db(two_needed)
    await gateway.refresh()
    approval_id = pending_id(await call(gateway, engineer_token))
    await run_db(approve, approval_id, approver)
    assert pending_id(await call(gateway, engineer_token)) == approval_id  # one of two
    dba = await run_db(make_user, "dba-1", "dba")
    await run_db(approve, approval_id, dba)
    assert not (await call(gateway, engineer_token)).is_error


def _closing(fn) -> None:  # type: ignore[no-untyped-def]
    from django.db import connections

    try:
        fn()
    finally:
        connections.close_all()


_ = asyncio
