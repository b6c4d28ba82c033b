"""Stage hold: approvals bound to the exact call, proposed once, used once, waited for."""

from __future__ import annotations

import datetime as dt

import pytest

from policy.roles import ApprovalRule
from proxy.context import CallContext, Identity
from proxy.hold import (
    HoldSettings,
    binding_for,
    canonical_arguments_sha256,
    denial_note,
    last_denial,
    propose,
    use_existing_approval,
    wait_for_decision,
)
from tests.proxy.store_memory import MemoryGatewayStore

RULE = ApprovalRule(id="big", tools=None, tables=None, statement_classes=None, bytes_over=None,
                    approver_groups=("dpo",), required=1)
FAST = HoldSettings(timeout_seconds=0.2, poll_seconds=0.01)


def _ctx(arguments: object, tool: str = "execute_sql") -> CallContext:
    ctx = CallContext(connection_slug="bq", source_ip="127.0.0.1", user_agent="t",
                      mcp_session_id="", protocol_version="2025-06-18")
    ctx.identity = Identity(user_id=1, username="ana", groups=(), auth_method="oidc")
    ctx.tool = tool
    ctx.arguments = arguments
    return ctx


@pytest.mark.parametrize("a, b, same", [
    ({"sql": "SELECT 1", "x": 1}, {"x": 1, "sql": "SELECT 1"}, True),  # key order is not the call
    ({"sql": "SELECT 1"}, {"sql": "SELECT 2"}, False),
    (None, {}, True),
    ({"n": 1}, {"n": "1"}, False),
])
def test_binding_digest_is_canonical(a: object, b: object, same: bool) -> None:
    assert (canonical_arguments_sha256(a) == canonical_arguments_sha256(b)) is same
    assert (binding_for(_ctx(a), 5, 3).arguments_sha256
            == binding_for(_ctx(b), 5, 3).arguments_sha256) is same


async def test_propose_once_then_approved_call_runs_once(store: MemoryGatewayStore) -> None:
    ctx = _ctx({"sql": "SELECT 1"})
    binding = binding_for(ctx, 5, 3)
    assert await use_existing_approval(store, binding, ctx.request_id) is None
    approval_id, created = await propose(store, binding, ctx, RULE, HoldSettings())
    assert created
    assert await propose(store, binding, ctx, RULE, HoldSettings()) == (approval_id, False)
    assert await use_existing_approval(store, binding, ctx.request_id) is None  # still pending
    store.decide(approval_id, "approved")
    assert await use_existing_approval(store, binding, ctx.request_id) == approval_id
    assert await use_existing_approval(store, binding, ctx.request_id) is None  # used once


@pytest.mark.parametrize("change", ["arguments", "policy_version", "tool"])
async def test_approval_is_for_the_exact_call(store: MemoryGatewayStore, change: str) -> None:
    ctx = _ctx({"sql": "SELECT 1"})
    approval_id, _ = await propose(store, binding_for(ctx, 5, 3), ctx, RULE, HoldSettings())
    store.decide(approval_id, "approved")
    other = {"arguments": binding_for(_ctx({"sql": "SELECT 2"}), 5, 3),
             "policy_version": binding_for(ctx, 5, 4),
             "tool": binding_for(_ctx({"sql": "SELECT 1"}, tool="other"), 5, 3)}[change]
    assert await use_existing_approval(store, other, ctx.request_id) is None


async def test_expired_approval_is_not_used(store: MemoryGatewayStore) -> None:
    ctx = _ctx({"sql": "SELECT 1"})
    binding = binding_for(ctx, 5, 3)
    settings = HoldSettings(approval_ttl=dt.timedelta(seconds=-1))
    approval_id, _ = await propose(store, binding, ctx, RULE, settings)
    store.decide(approval_id, "approved")
    assert await use_existing_approval(store, binding, ctx.request_id) is None


@pytest.mark.parametrize("decision, expected", [
    ("approved", "approved"), ("denied", "denied"), (None, "timeout"),
])
async def test_wait_for_decision(store: MemoryGatewayStore, decision: str | None,
                                 expected: str) -> None:
    ctx = _ctx({"sql": "SELECT 1"})
    approval_id, _ = await propose(store, binding_for(ctx, 5, 3), ctx, RULE, HoldSettings())
    ticks: list[float] = []

    async def tick(waited: float) -> None:
        ticks.append(waited)
        if decision is not None and len(ticks) == 2:
            store.decide(approval_id, decision)

    assert await wait_for_decision(store, approval_id, FAST, tick) == expected
    assert ticks


async def test_wait_for_missing_approval(store: MemoryGatewayStore) -> None:
    async def tick(waited: float) -> None:
        raise AssertionError("never held")

    assert await wait_for_decision(store, 404, FAST, tick) == "missing"


async def test_denial_reason_reaches_the_caller(store: MemoryGatewayStore) -> None:
    ctx = _ctx({"sql": "SELECT 1"})
    binding = binding_for(ctx, 5, 3)
    assert await last_denial(store, binding) == ""
    approval_id, _ = await propose(store, binding, ctx, RULE, HoldSettings())
    store.decide(approval_id, "denied", 'denied by bo: "too wide"')
    assert await denial_note(store, approval_id) == 'denied by bo: "too wide"'
    assert await last_denial(store, binding) == f'#{approval_id} denied by bo: "too wide"'
    _, created = await propose(store, binding, ctx, RULE, HoldSettings())
    assert created  # a denied approval is not pending: a re-run asks again
