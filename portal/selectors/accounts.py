"""Reading accounts: last activity, grants, tokens, sessions, lifecycle history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Max, Min, Q, QuerySet
from django.utils import timezone

from audit.models import AuditRecord
from portal.models import ApiToken, Grant, PersonalToken, PortalSession
from portal.permissions import ALL_ROLES


@dataclass(frozen=True, slots=True)
class AccountRow:
    user: Any
    roles: tuple[str, ...]
    last_activity: dt.datetime


def accounts_with_activity(*, active_only: bool = False) -> list[AccountRow]:
    """Every account with its portal roles and last activity (login, token use, audit)."""
    users = get_user_model().objects.order_by("username").annotate(
        last_token_use=Max("tokens__last_used_at")).prefetch_related("groups")
    if active_only:
        users = users.filter(is_active=True)
    users = list(users)
    last_audit = dict(
        AuditRecord.objects.filter(actor__in=[u.get_username() for u in users])
        .values("actor").annotate(m=Max("at")).values_list("actor", "m")
    )
    rows = []
    for user in users:
        moments = [user.date_joined, user.last_login, user.last_token_use,
                   last_audit.get(user.get_username())]
        roles = tuple(sorted(g.name for g in user.groups.all() if g.name in ALL_ROLES))
        rows.append(AccountRow(user, roles, max(m for m in moments if m is not None)))
    return rows


def account_grants(user: Any) -> QuerySet[Grant]:
    """Grants held directly or through a group, live and past (expired/revoked shown as such)."""
    return (Grant.objects.filter(Q(user=user) | Q(group__in=user.groups.all()))
            .select_related("role", "connection", "group", "created_by").order_by("-created_at"))


def grant_state(grant: Grant, now: dt.datetime | None = None, *, holder: Any = None) -> str:
    """revoked, expired, suspended (a live grant of a disabled account: it gives nothing until
    the account is enabled again) or active."""
    now = now or timezone.now()
    if grant.revoked_at is not None:
        return "revoked"
    if grant.expires_at is not None and grant.expires_at <= now:
        return "expired"
    if holder is not None and not holder.is_active:
        return "suspended"
    return "active"


def account_tokens(user: Any) -> QuerySet[PersonalToken]:
    return PersonalToken.objects.filter(user=user).prefetch_related("connections")


def account_api_tokens(user: Any) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)


def account_portal_sessions(user: Any) -> QuerySet[PortalSession]:
    return PortalSession.objects.filter(user=user)


@dataclass(frozen=True, slots=True)
class GatewaySession:
    session_id: str
    connection: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    calls: int


def account_gateway_sessions(user: Any, *, within: dt.timedelta = dt.timedelta(hours=1),
                             limit: int = 50) -> list[GatewaySession]:
    """MCP sessions the identity used recently, from the audit trail (session-based clients;
    stateless clients carry no session id)."""
    since = timezone.now() - within
    rows = (AuditRecord.objects.filter(actor=user.get_username(), at__gte=since)
            .exclude(mcp_session_id="")
            .values("mcp_session_id", "connection")
            .annotate(first=Min("at"), last=Max("at"))
            .order_by("-last")[:limit])
    out = []
    for row in rows:
        calls = AuditRecord.objects.filter(actor=user.get_username(),
                                           mcp_session_id=row["mcp_session_id"],
                                           event="mcp.outcome").count()
        out.append(GatewaySession(row["mcp_session_id"], row["connection"], row["first"],
                                  row["last"], calls))
    return out


LIFECYCLE_EVENTS = ("portal.account_created", "portal.account_disabled",
                    "portal.account_disabled_inactive", "portal.account_enabled",
                    "portal.account_roles_changed", "portal.account_provisioned",
                    "portal.account_groups_synced", "portal.grant_created",
                    "portal.grant_revoked", "portal.quarantine_created",
                    "portal.quarantine_lifted", "portal.incident_raised",
                    "portal.incident_lifted")


def account_history(user: Any, *, limit: int = 100) -> QuerySet[AuditRecord]:
    """Lifecycle events about this account (who did what, when and why)."""
    return (AuditRecord.objects.filter(event__in=LIFECYCLE_EVENTS,
                                       detail__account=user.get_username())
            .order_by("-seq")[:limit])


def account_list() -> QuerySet[Any]:
    """Every account by username, with its groups (its portal roles)."""
    return get_user_model().objects.order_by("username").prefetch_related("groups")


def account_get_by_username(username: str) -> Any | None:
    return get_user_model().objects.filter(username=username).first()
