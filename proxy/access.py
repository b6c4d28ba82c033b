"""The gateway's access plans: an identity's grants on a connection, compiled and cached until
the security revision moves, so the per-call checks only match precompiled patterns."""

from __future__ import annotations

import time

from policy.roles import AccessPlan, compile_role_rules
from proxy.db import run_db
from proxy.store import GatewayStore
from proxy.ttl_cache import TtlCache


def load_access_plan(store: GatewayStore, user_id: int, groups: tuple[str, ...],
                     connection_id: int, token_key: bytes) -> tuple[AccessPlan, float]:
    """The identity's live grants on the connection, compiled; and until when that holds
    (the earliest grant expiry), so a cached plan never outlives a grant."""
    grants = store.access_grants(user_id, groups, connection_id)
    compiled = tuple(compile_role_rules(role.name, role.rules, token_key=token_key)
                     for role in sorted(grants.roles, key=lambda r: r.name))
    return AccessPlan(roles=compiled, policy_version=grants.policy_version), grants.valid_until


class AccessCache:
    """Compiled plans per (user, connection), dropped when the security revision moves."""

    def __init__(self, store: GatewayStore, token_key: bytes, ttl_seconds: float = 60.0) -> None:
        self.store = store
        self.token_key = token_key
        self.ttl = ttl_seconds
        self._plans: TtlCache[tuple[int, tuple[str, ...], int], AccessPlan] = TtlCache(
            ttl_seconds, clock=time.time)

    def invalidate(self) -> None:
        self._plans.clear()

    async def plan_for(self, user_id: int, groups: tuple[str, ...], connection_id: int) -> AccessPlan:
        key = (user_id, groups, connection_id)  # groups: a group change is a new plan at once
        now = time.time()
        hit = self._plans.get(key)
        if hit is not None:
            return hit
        plan, valid_until = await run_db(load_access_plan, self.store, user_id, groups,
                                         connection_id, self.token_key)
        self._plans.put(key, plan, until=min(valid_until, now + self.ttl))
        return plan
