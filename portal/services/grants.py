"""Grants (AC-2, AC-3): identity or group -> role -> connection, optionally until a time."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from portal.models import Connection, Grant, Role
from portal.services.errors import ServiceError
from portal.services.events import SYSTEM, RequestMeta, portal_event
from portal.services.security import security_revision_bump


class GrantError(ServiceError):
    """A grant or revocation a rule refuses."""

    default_code = "grant_refused"


def _grant_detail(grant: Grant) -> dict[str, Any]:
    expires = grant.expires_at.isoformat() if grant.expires_at else None
    detail: dict[str, Any] = {"grant_id": grant.pk, "role": grant.role.name,
                              "connection": grant.connection.slug, "expires_at": expires}
    if grant.user_id is not None:
        detail["account"] = grant.user.get_username()
    else:
        detail["group"] = grant.group.name
    return detail


@transaction.atomic
def grant_create(*, role: Role, connection: Connection, by: Any, reason: str, user: Any = None,
                 group: Any = None, expires_at: dt.datetime | None = None,
                 meta: RequestMeta = SYSTEM) -> Grant:
    if (user is None) == (group is None):
        raise GrantError("A grant goes to exactly one account or one group.")
    if not (reason or "").strip():
        raise GrantError("Give a reason for the grant.")
    if expires_at is not None and expires_at <= timezone.now():
        raise GrantError("The expiry must be in the future.")
    if user is not None and not user.is_active:
        raise GrantError("A disabled account cannot receive grants.")
    grant = Grant.objects.create(role=role, connection=connection, user=user, group=group,
                                 expires_at=expires_at, reason=reason.strip(), created_by=by)
    security_revision_bump()
    portal_event("grant_created", by=by, meta=meta, connection=connection.slug,
                 detail={**_grant_detail(grant), "reason": reason.strip()})
    return grant


@transaction.atomic
def grant_revoke(*, grant: Grant, by: Any, reason: str, meta: RequestMeta = SYSTEM) -> Grant:
    if not (reason or "").strip():
        raise GrantError("Give a reason for revoking the grant.")
    grant = (Grant.objects.select_for_update(of=("self",))
             .select_related("role", "connection", "user", "group").get(pk=grant.pk))
    if grant.revoked_at is not None:
        raise GrantError("This grant is already revoked.")
    grant.revoked_at = timezone.now()
    grant.save(update_fields=["revoked_at"])
    security_revision_bump()
    portal_event("grant_revoked", by=by, meta=meta, connection=grant.connection.slug,
                 detail={**_grant_detail(grant), "reason": reason.strip()})
    return grant
