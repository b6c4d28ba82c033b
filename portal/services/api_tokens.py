"""Portal API tokens (`wga_…`): issued once, stored hashed, expiring, revocable."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from portal.config import portal_config
from portal.models import ApiToken
from portal.services.errors import InvalidServiceInput, ServiceError
from portal.services.events import SYSTEM, RequestMeta, portal_event

API_TOKEN_PREFIX = "wga_"


class ApiTokenInvalid(ServiceError):
    """The presented API token is unknown, revoked, expired or its account disabled."""

    default_code = "api_token_invalid"
    status = 401


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@transaction.atomic
def api_token_issue(*, user: Any, name: str, by: Any, meta: RequestMeta = SYSTEM,
                    ttl: dt.timedelta | None = None) -> tuple[ApiToken, str]:
    ttl = ttl or dt.timedelta(days=portal_config().api_token_days)
    if ttl <= dt.timedelta(0) or ttl > dt.timedelta(days=365):
        raise InvalidServiceInput("token lifetime must be between 1 second and 365 days")
    if not user.is_active:
        raise InvalidServiceInput("a disabled account cannot hold tokens")
    plaintext = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name[:200] or "API token",
                                    prefix=plaintext[:12], token_hash=_hash(plaintext),
                                    expires_at=timezone.now() + ttl)
    portal_event("api_token_issued", by=by, meta=meta,
                 detail={"account": user.get_username(), "token_id": token.pk,
                         "prefix": token.prefix, "expires_at": token.expires_at.isoformat()})
    return token, plaintext


def api_token_resolve(plaintext: str) -> ApiToken:
    token = ApiToken.objects.select_related("user").filter(token_hash=_hash(plaintext)).first()
    now = timezone.now()
    if token is None or token.revoked_at is not None:
        raise ApiTokenInvalid("Unknown or revoked API token")
    if token.expires_at <= now:
        raise ApiTokenInvalid("This API token has expired")
    if not token.user.is_active:
        raise ApiTokenInvalid("This account is disabled")
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


@transaction.atomic
def api_token_revoke(*, token: ApiToken, by: Any, meta: RequestMeta = SYSTEM) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        portal_event("api_token_revoked", by=by, meta=meta,
                     detail={"account": token.user.get_username(), "token_id": token.pk})
    return token
