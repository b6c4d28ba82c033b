"""Stage authenticate (proxy.stages): every request carries a bearer token (AC-2, IA-2).

Two kinds: OIDC JWTs, verified against the issuer's JWKS (proxy.oidc), and portal-issued
personal tokens (`wgp_…`, looked up by SHA-256). A disabled or quarantined identity is refused
even with a valid token. Results are cached per token until the security revision moves.
"""

from __future__ import annotations

import hashlib
import time

from proxy.context import Identity
from proxy.db import run_db
from proxy.oidc import JwksVerifier, OidcConfig, TokenRejected, VerifiedIdentity
from proxy.store import GatewayStore, IdentityRefused
from proxy.ttl_cache import TtlCache

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


def _check_user(store: GatewayStore, user_id: int, method: str, *, owner: str,
                token_id: int | None = None) -> None:
    standing = store.user_standing(user_id)
    if not standing.active:
        raise AuthFailure("auth.account_disabled", "This account is disabled", method,
                          owner=owner, token_id=token_id)
    if standing.quarantined:
        raise AuthFailure("auth.quarantined", "This identity is quarantined", method,
                          owner=owner, token_id=token_id)


def _resolve_personal_token(store: GatewayStore, token_hash: str) -> tuple[Identity, float]:
    token = store.personal_token_find(token_hash)
    if token is None:
        raise AuthFailure("auth.unknown_token", "Unknown or revoked token", "personal_token")
    owner = {"owner": token.username, "token_id": token.token_id}
    if token.revoked:
        raise AuthFailure("auth.revoked_token", "This token has been revoked", "personal_token",
                          **owner)
    if token.expires_at <= time.time():
        raise AuthFailure("auth.expired_token", "This token has expired", "personal_token",
                          **owner)
    _check_user(store, token.user_id, "personal_token", **owner)
    store.personal_token_mark_used(token.token_id)
    identity = Identity(
        user_id=token.user_id,
        username=token.username,
        groups=token.groups,
        auth_method="personal_token",
        token_id=token.token_id,
        token_connections=token.connection_ids,
    )
    return identity, token.expires_at


def _provision_oidc_user(store: GatewayStore, verified: VerifiedIdentity) -> Identity:
    """The account of a verified OIDC identity, keyed by issuer + subject, with its groups
    synced through the configured group map (the store uses the same path as portal single
    sign-on; a name in the token never selects an existing account)."""
    email = verified.claims.get("email")
    try:
        user = store.oidc_identity_resolve(
            issuer=verified.issuer, subject=verified.subject,
            username_hint=verified.username, email=email if isinstance(email, str) else "",
            claims=verified.claims, raw_groups=verified.groups)
    except IdentityRefused as exc:
        raise AuthFailure("auth.bad_subject", f"This identity cannot be used: {exc}",
                          "oidc") from None
    _check_user(store, user.user_id, "oidc", owner=user.username)
    return Identity(user_id=user.user_id, username=user.username, groups=user.groups,
                    auth_method="oidc")


class Authenticator:
    def __init__(self, store: GatewayStore, oidc: OidcConfig | None, *,
                 cache_seconds: float = 30.0) -> None:
        self.store = store
        self.verifier = JwksVerifier(oidc) if oidc else None
        self.cache_seconds = cache_seconds
        # Identities per token hash, for at most `cache_seconds` and never past the token.
        self._cache: TtlCache[str, Identity] = TtlCache(cache_seconds, max_entries=50_000,
                                                         clock=time.time)

    def invalidate(self) -> None:
        self._cache.clear()

    async def authenticate(self, headers: dict[str, str]) -> Identity:
        token = bearer_token(headers)
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.time()
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if token.startswith(PERSONAL_TOKEN_PREFIX):
            identity, expires = await run_db(_resolve_personal_token, self.store, key)
        elif self.verifier is not None and JwksVerifier.looks_like_jwt(token):
            try:
                verified = await self.verifier.verify(token)
            except TokenRejected as exc:
                raise AuthFailure(exc.code, exc.message, "oidc") from None
            identity = await run_db(_provision_oidc_user, self.store, verified)
            expires = float(verified.expires_at)
        else:
            raise AuthFailure("auth.invalid_token", "The bearer token is not valid here")
        self._cache.put(key, identity, until=min(expires, now + self.cache_seconds))
        return identity
