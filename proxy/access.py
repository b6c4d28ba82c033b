"""The gateway's access plans: an identity's grants on a connection, compiled and cached until
the security revision moves, so the per-call checks only match precompiled patterns."""

from __future__ import annotations

from policy.roles import AccessPlan, compile_role_rules


def load_access_plan(user_id: int, groups: tuple[str, ...], connection_id: int,
                     token_key: bytes) -> tuple[AccessPlan, float]:
    """The identity's live grants on the connection, compiled; and until when that holds
    (the earliest grant expiry), so a cached plan never outlives a grant."""
    from django.db.models import Q
    from django.utils import timezone

    from portal.models import Grant

    now = timezone.now()
    grants = (
        Grant.objects.filter(connection_id=connection_id, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .filter(Q(user_id=user_id) | Q(group__name__in=groups))
        .select_related("role")
    )
    roles = {}
    valid_until = float("inf")
    for grant in grants:
        roles[grant.role.name] = grant.role
        if grant.expires_at is not None:
            valid_until = min(valid_until, grant.expires_at.timestamp())
    compiled = tuple(compile_role_rules(name, roles[name].rules, token_key=token_key)
                     for name in sorted(roles))
    from portal.services.approvals import policy_version_current

    return AccessPlan(roles=compiled, policy_version=policy_version_current()), valid_until


class AccessCache:
    """Compiled plans per (user, connection), dropped when the security revision moves."""

    def __init__(self, token_key: bytes, ttl_seconds: float = 60.0) -> None:
        self.token_key = token_key
        self.ttl = ttl_seconds
        self._plans: dict[tuple[int, tuple[str, ...], int], tuple[AccessPlan, float]] = {}

    def invalidate(self) -> None:
        self._plans.clear()

    async def plan_for(self, user_id: int, groups: tuple[str, ...], connection_id: int) -> AccessPlan:
        import time

        from proxy.db import run_db

        key = (user_id, groups, connection_id)  # groups: a group change is a new plan at once
        now = time.time()
        hit = self._plans.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        plan, valid_until = await run_db(load_access_plan, user_id, groups, connection_id,
                                         self.token_key)
        self._plans[key] = (plan, min(valid_until, now + self.ttl))
        return plan
