"""Personal bearer tokens: issue (shown once), resolve by hash, revoke."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from portal.models import Connection, PersonalToken
from portal.services.security import security_revision_bump

TOKEN_PREFIX = "wgp_"


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@transaction.atomic
def token_issue(
    *,
    user: AbstractBaseUser,
    connections: Iterable[Connection],
    name: str = "personal token",
    ttl: dt.timedelta = dt.timedelta(days=7),
) -> tuple[PersonalToken, str]:
    """Create a token; the plaintext is returned once and never stored."""
    if ttl <= dt.timedelta(0) or ttl > dt.timedelta(days=365):
        raise ValueError("token lifetime must be between 1 second and 365 days")
    connections = list(connections)
    if not connections:
        raise ValueError("a token must be scoped to at least one connection")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = PersonalToken.objects.create(
        user=user,
        name=name,
        prefix=plaintext[:12],
        token_hash=hash_token(plaintext),
        expires_at=timezone.now() + ttl,
    )
    token.connections.set(connections)
    return token, plaintext


def token_revoke(*, token: PersonalToken) -> PersonalToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        security_revision_bump()
    return token


# --- portal actions (recorded) ------------------------------------------------------------

@transaction.atomic
def token_issue_recorded(
    *, user: AbstractBaseUser, connections: Iterable[Connection], name: str, ttl: dt.timedelta,
    by: AbstractBaseUser | None, meta: object = None,
) -> tuple[PersonalToken, str]:
    """`token_issue` from the portal or API, as an audit event (the plaintext never is)."""
    from portal.services.events import SYSTEM, portal_event

    if not user.is_active:
        raise ValueError("a disabled account cannot hold tokens")
    connections = list(connections)
    token, plaintext = token_issue(user=user, connections=connections, name=name, ttl=ttl)
    portal_event("token_issued", by=by, meta=meta or SYSTEM,  # type: ignore[arg-type]
                 detail={"account": user.get_username(), "token_id": token.pk,
                         "prefix": token.prefix, "connections": [c.slug for c in connections],
                         "expires_at": token.expires_at.isoformat()})
    return token, plaintext


@transaction.atomic
def token_revoke_recorded(*, token: PersonalToken, by: AbstractBaseUser | None,
                          meta: object = None) -> PersonalToken:
    from portal.services.events import SYSTEM, portal_event

    if token.revoked_at is None:
        token_revoke(token=token)
        portal_event("token_revoked", by=by, meta=meta or SYSTEM,  # type: ignore[arg-type]
                     detail={"account": token.user.get_username(), "token_id": token.pk})
    return token
