"""Stage authenticate (proxy.stages): every request carries a bearer token (AC-2, IA-2).

Two kinds: OIDC JWTs, verified against the issuer's JWKS (proxy.oidc), and portal-issued
personal tokens (`wgp_…`, looked up by SHA-256). A disabled or quarantined identity is refused
even with a valid token. Results are cached per token until the security revision moves.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from proxy.context import Identity
from proxy.db import run_db
from proxy.oidc import JwksVerifier, OidcConfig, TokenRejected, VerifiedIdentity

PERSONAL_TOKEN_PREFIX = "wgp_"
MAX_TOKEN_LENGTH = 16384


class AuthFailure(Exception):
    """A refused credential. `owner` names the account a known credential belongs to (a revoked
    or expired token, a disabled account), so the refusal is recorded against that person."""

    def __init__(self, reason: str, message: str, auth_method: str = "none", *,
                 owner: str = "", token_id: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.auth_method = auth_method
        self.owner = owner
        self.token_id = token_id


def bearer_token(headers: dict[str, str]) -> str:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if not value:
        raise AuthFailure("auth.missing_token", "A bearer token is required")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthFailure("auth.malformed", "Authorization must be 'Bearer <token>'")
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthFailure("auth.malformed", "Bearer token is too long")
    return token


def _active_user(user_id: int) -> tuple[bool, bool]:
    """(is_active, is_quarantined) for a user, read from the database."""
    from django.contrib.auth import get_user_model

    from portal.models import Quarantine

    active = get_user_model().objects.filter(pk=user_id, is_active=True).exists()
    quarantined = Quarantine.objects.filter(user_id=user_id, lifted_at__isnull=True).exists()
    return active, quarantined


def _resolve_personal_token(token_hash: str) -> tuple[Identity, float]:
    from django.utils import timezone

    from portal.models import PersonalToken

    token = (PersonalToken.objects.select_related("user")
             .filter(token_hash=token_hash).first())
    if token is None:
        raise AuthFailure("auth.unknown_token", "Unknown or revoked token", "personal_token")
    owner = {"owner": token.user.get_username(), "token_id": token.pk}
    if token.revoked_at is not None:
        raise AuthFailure("auth.revoked_token", "This token has been revoked", "personal_token",
                          **owner)
    now = timezone.now()
    if token.expires_at <= now:
        raise AuthFailure("auth.expired_token", "This token has expired", "personal_token",
                          **owner)
    user = token.user
    _check_user(user.pk, "personal_token", **owner)
    PersonalToken.objects.filter(pk=token.pk).update(last_used_at=now)
    identity = Identity(
        user_id=user.pk,
        username=user.get_username(),
        groups=tuple(sorted(user.groups.values_list("name", flat=True))),
        auth_method="personal_token",
        token_id=token.pk,
        token_connections=frozenset(token.connections.values_list("pk", flat=True)),
    )
    return identity, token.expires_at.timestamp()


def _check_user(user_id: int, method: str, *, owner: str,
                token_id: int | None = None) -> None:
    active, quarantined = _active_user(user_id)
    if not active:
        raise AuthFailure("auth.account_disabled", "This account is disabled", method,
                          owner=owner, token_id=token_id)
    if quarantined:
        raise AuthFailure("auth.quarantined", "This identity is quarantined", method,
                          owner=owner, token_id=token_id)


def _provision_oidc_user(verified: VerifiedIdentity) -> Identity:
    """The account of a verified OIDC identity, keyed by issuer + subject, with its groups
    synced through the configured group map (portal.services.identity: the same path as
    portal single sign-on; a name in the token never selects an existing account)."""
    from portal.services.events import RequestMeta
    from portal.services.identity import (
        ExternalIdentityRefused,
        external_identity_resolve,
        provider_for_issuer,
    )

    email = verified.claims.get("email")
    try:
        user = external_identity_resolve(
            provider=provider_for_issuer(verified.issuer), subject=verified.subject,
            username_hint=verified.username, email=email if isinstance(email, str) else "",
            claims=verified.claims, raw_groups=verified.groups,
            meta=RequestMeta(auth_method="oidc"))
    except ExternalIdentityRefused as exc:
        raise AuthFailure("auth.bad_subject", f"This identity cannot be used: {exc}",
                          "oidc") from None
    _check_user(user.pk, "oidc", owner=user.get_username())
    return Identity(user_id=user.pk, username=user.get_username(),
                    groups=tuple(sorted(user.groups.values_list("name", flat=True))),
                    auth_method="oidc")


@dataclass(slots=True)
class _Cached:
    identity: Identity
    valid_until: float


class Authenticator:
    def __init__(self, oidc: OidcConfig | None, *, cache_seconds: float = 30.0) -> None:
        self.verifier = JwksVerifier(oidc) if oidc else None
        self.cache_seconds = cache_seconds
        self._cache: dict[str, _Cached] = {}

    def invalidate(self) -> None:
        self._cache.clear()

    async def authenticate(self, headers: dict[str, str]) -> Identity:
        token = bearer_token(headers)
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.time()
        hit = self._cache.get(key)
        if hit is not None and hit.valid_until > now:
            return hit.identity
        if token.startswith(PERSONAL_TOKEN_PREFIX):
            identity, expires = await run_db(_resolve_personal_token, key)
        elif self.verifier is not None and JwksVerifier.looks_like_jwt(token):
            try:
                verified = await self.verifier.verify(token)
            except TokenRejected as exc:
                raise AuthFailure(exc.code, exc.message, "oidc") from None
            identity = await run_db(_provision_oidc_user, verified)
            expires = float(verified.expires_at)
        else:
            raise AuthFailure("auth.invalid_token", "The bearer token is not valid here")
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = _Cached(identity, min(expires, now + self.cache_seconds))
        return identity
