"""Account lifecycle (AC-2): create, disable, re-enable, disable when inactive (SSO provisioning:
portal.services.identity).
Every change is an audit event naming who did it and why."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from portal.config import portal_config
from portal.models import ApiToken, PersonalToken, PortalSession
from portal.permissions import ALL_ROLES
from portal.services.errors import ServiceError
from portal.services.events import SYSTEM, RequestMeta, portal_event
from portal.services.security import security_revision_bump
from portal.services.sessions import sessions_close_for
from portal.services.tokens import token_revoke


class AccountError(ServiceError):
    """An account lifecycle change a rule refuses."""

    default_code = "account_refused"


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise AccountError("Give a reason: lifecycle changes are recorded with who and why.")
    return reason


@transaction.atomic
def account_create(*, username: str, password: str | None, roles: list[str], by: Any,
                   reason: str, email: str = "", meta: RequestMeta = SYSTEM) -> Any:
    reason = _require_reason(reason)
    user_model = get_user_model()
    username = username.strip()
    if not username:
        raise AccountError("A username is required.")
    if user_model.objects.filter(username__iexact=username).exists():
        raise AccountError(f"An account named {username!r} already exists.")
    unknown = set(roles) - ALL_ROLES
    if unknown:
        raise AccountError(f"Unknown roles: {', '.join(sorted(unknown))}")
    user = user_model(username=username, email=email)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    for name in sorted(set(roles)):
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    portal_event("account_created", by=by, meta=meta,
                 detail={"account": username, "roles": sorted(set(roles)), "reason": reason,
                         "local_password": bool(password)})
    return user


def _end_portal_sessions(user: Any) -> int:
    keys = list(PortalSession.objects.filter(user=user).values_list("session_key", flat=True))
    deleted, _ = Session.objects.filter(session_key__in=keys).delete()
    PortalSession.objects.filter(user=user).delete()
    return deleted


@transaction.atomic
def account_disable(*, account: Any, by: Any, reason: str, meta: RequestMeta = SYSTEM,
                    event: str = "account_disabled") -> Any:
    """Disable at once: no sign-in, every token revoked, portal sessions ended, and every
    gateway process told (security revision) so live MCP sessions are cut within a second."""
    reason = _require_reason(reason)
    if by is not None and by.pk == account.pk:
        raise AccountError("You cannot disable your own account.")
    user_model = get_user_model()
    account = user_model.objects.select_for_update().get(pk=account.pk)
    was_active = account.is_active
    account.is_active = False
    account.save(update_fields=["is_active"])
    revoked = []
    for token in PersonalToken.objects.filter(user=account, revoked_at__isnull=True):
        token_revoke(token=token, by=by, meta=meta, reason=f"account disabled: {reason}")
        revoked.append(token.pk)
    api_revoked = ApiToken.objects.filter(user=account, revoked_at__isnull=True).update(
        revoked_at=timezone.now())
    sessions = _end_portal_sessions(account)
    mcp_sessions = sessions_close_for(user=account, reason=f"account disabled: {reason}")
    security_revision_bump()
    portal_event(event, by=by, meta=meta,
                 detail={"account": account.get_username(), "reason": reason,
                         "was_active": was_active, "tokens_revoked": revoked,
                         "api_tokens_revoked": api_revoked, "portal_sessions_ended": sessions,
                         "mcp_sessions_closed": len(mcp_sessions)})
    return account


@transaction.atomic
def account_enable(*, account: Any, by: Any, reason: str, meta: RequestMeta = SYSTEM) -> Any:
    reason = _require_reason(reason)
    account.is_active = True
    # Re-enabling starts a new inactivity period (otherwise the next sweep disables it again).
    account.last_login = timezone.now()
    account.save(update_fields=["is_active", "last_login"])
    security_revision_bump()
    portal_event("account_enabled", by=by, meta=meta,
                 detail={"account": account.get_username(), "reason": reason,
                         "note": "tokens revoked at disable stay revoked; issue new ones"})
    return account


@transaction.atomic
def account_roles_set(*, account: Any, roles: list[str], by: Any, reason: str,
                      meta: RequestMeta = SYSTEM) -> Any:
    reason = _require_reason(reason)
    unknown = set(roles) - ALL_ROLES
    if unknown:
        raise AccountError(f"Unknown roles: {', '.join(sorted(unknown))}")
    if by is not None and by.pk == account.pk and "admin" not in roles:
        raise AccountError("You cannot remove your own admin role.")
    before = sorted(account.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
    account.groups.remove(*account.groups.filter(name__in=ALL_ROLES))
    for name in sorted(set(roles)):
        account.groups.add(Group.objects.get_or_create(name=name)[0])
    security_revision_bump()
    portal_event("account_roles_changed", by=by, meta=meta,
                 detail={"account": account.get_username(), "before": before,
                         "after": sorted(set(roles)), "reason": reason})
    return account


def accounts_disable_inactive(*, now: dt.datetime | None = None,
                              days: int | None = None) -> list[Any]:
    """Disable every active account with no activity for `days` (WARDGATE_INACTIVE_ACCOUNT_DAYS)."""
    from portal.selectors.accounts import accounts_with_activity

    now = now or timezone.now()
    days = portal_config().inactive_account_days if days is None else days
    if days <= 0:
        return []
    cutoff = now - dt.timedelta(days=days)
    disabled = []
    for row in accounts_with_activity(active_only=True):
        if row.last_activity < cutoff:
            account_disable(account=row.user, by=None, event="account_disabled_inactive",
                            reason=f"no activity for {days} days "
                                   f"(last: {row.last_activity.isoformat()})")
            disabled.append(row.user)
    return disabled
