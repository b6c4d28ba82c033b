"""Personal bearer tokens: issue (shown once), revoke. Both are audit events."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from portal.models import Connection, PersonalToken
from portal.services.errors import InvalidServiceInput
from portal.services.events import RequestMeta, portal_event
from portal.services.security import security_revision_bump

TOKEN_PREFIX = "wgp_"


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@transaction.atomic
def token_issue(
    *, user: AbstractBaseUser, connections: Iterable[Connection], by: AbstractBaseUser | None,
    meta: RequestMeta, name: str = "personal token", ttl: dt.timedelta = dt.timedelta(days=7),
) -> tuple[PersonalToken, str]:
    """Create a token, as an audit event; the plaintext is returned once and never stored
    (nor recorded)."""
    if ttl <= dt.timedelta(0) or ttl > dt.timedelta(days=365):
        raise InvalidServiceInput("token lifetime must be between 1 second and 365 days")
    if not user.is_active:
        raise InvalidServiceInput("a disabled account cannot hold tokens")
    connections = list(connections)
    if not connections:
        raise InvalidServiceInput("a token must be scoped to at least one connection")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = PersonalToken.objects.create(
        user=user,
        name=name,
        prefix=plaintext[:12],
        token_hash=hash_token(plaintext),
        expires_at=timezone.now() + ttl,
    )
    token.connections.set(connections)
    portal_event("token_issued", by=by, meta=meta,
                 detail={"account": user.get_username(), "token_id": token.pk,
                         "prefix": token.prefix, "connections": [c.slug for c in connections],
                         "expires_at": token.expires_at.isoformat(), "name": name})
    return token, plaintext


@transaction.atomic
def token_revoke(*, token: PersonalToken, by: AbstractBaseUser | None, meta: RequestMeta,
                 reason: str = "") -> PersonalToken:
    """Revoke at once (every gateway process drops it within a second), as an audit event."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        security_revision_bump()
        portal_event("token_revoked", by=by, meta=meta,
                     detail={"account": token.user.get_username(), "token_id": token.pk,
                             **({"reason": reason} if reason else {})})
    return token
