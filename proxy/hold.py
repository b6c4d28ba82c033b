"""Stage hold (proxy.stages): calls a role marks as risky wait for a just-in-time approval (IR-4).

The approval is bound to the exact call (identity, connection, tool, SHA-256 of the canonical
arguments, policy version) and is single-use. A client that sent a progress token keeps the
call open: the gateway holds it, sending progress notifications, until the approval is
decided or the hold times out (then it is told the approval is still pending and how to re-run,
as is any client that cannot be held); re-running the identical call later runs it once
approved. A denial carries the approver's reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from policy.roles import ApprovalRule
from proxy.context import CallContext
from proxy.db import run_db
from proxy.store import GatewayStore


@dataclass(frozen=True, slots=True)
class HoldSettings:
    timeout_seconds: float = 120.0
    poll_seconds: float = 1.0
    approval_ttl: dt.timedelta = dt.timedelta(hours=24)
    # Empty: the address the request came in at (gateway and portal are one application, and
    # the Host header was checked against the allowed hosts), so `demo --port` links work.
    portal_url: str = ""

    def approval_url(self, approval_id: int, request_base: str) -> str:
        base = self.portal_url or request_base
        return f"{base.rstrip('/')}/approvals/queries/{approval_id}/"


@dataclass(slots=True)
class HoldBinding:
    """The exact call an approval is for."""

    user_id: int
    username: str
    connection_id: int
    connection_slug: str
    tool: str
    arguments: Any
    arguments_sha256: str
    policy_version: int


def canonical_arguments_sha256(arguments: Any) -> str:
    canonical = json.dumps(arguments if arguments is not None else {}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def binding_for(ctx: CallContext, connection_id: int, policy_version: int) -> HoldBinding:
    assert ctx.identity is not None
    return HoldBinding(ctx.identity.user_id, ctx.identity.username, connection_id,
                       ctx.connection_slug, ctx.tool, ctx.arguments,
                       canonical_arguments_sha256(ctx.arguments), policy_version)


def _use_existing(store: GatewayStore, b: HoldBinding, request_id: str) -> int | None:
    return store.approval_consume_usable(
        user_id=b.user_id, username=b.username, connection_id=b.connection_id, tool=b.tool,
        arguments_sha256=b.arguments_sha256, policy_version=b.policy_version,
        request_id=request_id)


async def use_existing_approval(store: GatewayStore, b: HoldBinding,
                                request_id: str) -> int | None:
    """An approved, unused approval for this exact call, consumed now; else None."""
    return await run_db(_use_existing, store, b, request_id)


def _propose(store: GatewayStore, b: HoldBinding, ctx: CallContext, rule: ApprovalRule,
             ttl: dt.timedelta) -> tuple[int, bool]:
    sql = ctx.sql
    return store.approval_propose(
        user_id=b.user_id, username=b.username, connection_id=b.connection_id,
        connection_slug=b.connection_slug, tool=b.tool, arguments=b.arguments,
        arguments_sha256=b.arguments_sha256, policy_version=b.policy_version,
        sql_text=sql.text if sql else "", bytes_estimate=sql.bytes_processed if sql else None,
        rule=rule.id, reason=f"approval rule {rule.id!r} matches this call",
        approver_groups=list(rule.approver_groups), required_approvals=rule.required,
        request_id=ctx.request_id, ttl=ttl)


async def propose(store: GatewayStore, b: HoldBinding, ctx: CallContext, rule: ApprovalRule,
                  settings: HoldSettings) -> tuple[int, bool]:
    return await run_db(_propose, store, b, ctx, rule, settings.approval_ttl)


async def denial_note(store: GatewayStore, approval_id: int) -> str:
    """Who denied the approval and why (their comment), for the agent's result."""
    return await run_db(store.approval_denial_note, approval_id)


def _last_denial(store: GatewayStore, b: HoldBinding) -> str:
    return store.approval_last_denial(
        user_id=b.user_id, connection_id=b.connection_id, tool=b.tool,
        arguments_sha256=b.arguments_sha256, policy_version=b.policy_version)


async def last_denial(store: GatewayStore, b: HoldBinding) -> str:
    """Why the caller's last request for this exact call was denied ("" if it was not)."""
    return await run_db(_last_denial, store, b)


async def wait_for_decision(store: GatewayStore, approval_id: int, settings: HoldSettings,
                            on_tick: Callable[[float], Awaitable[None]]) -> str:
    """Poll until the approval leaves 'pending' or the hold times out ('timeout')."""
    start = time.monotonic()
    while True:
        status = await run_db(store.approval_status, approval_id)
        if status != "pending":
            return status or "missing"
        waited = time.monotonic() - start
        if waited >= settings.timeout_seconds:
            return "timeout"
        await on_tick(waited)
        await asyncio.sleep(settings.poll_seconds)
