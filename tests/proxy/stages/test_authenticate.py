"""Stage authenticate: bearer tokens to identities, refusals carry their reason and owner."""

from __future__ import annotations

import asyncio
import hashlib
from types import MappingProxyType

import pytest

from proxy.authenticate import Authenticator, AuthFailure
from proxy.oidc import TokenRejected, VerifiedIdentity
from tests.proxy.store_memory import MemoryGatewayStore

TOKEN = "wgp_" + "a" * 40
JWT = "aaaa.bbbb.cccc"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize("headers, reason", [
    ({}, "auth.missing_token"),
    ({"authorization": "Basic abc"}, "auth.malformed"),
    ({"authorization": "Bearer "}, "auth.malformed"),
    ({"authorization": "Bearer " + "x" * 20000}, "auth.malformed"),
    (_bearer("not-a-known-kind"), "auth.invalid_token"),
    (_bearer(JWT), "auth.invalid_token"),  # no OIDC issuer configured: a JWT is not valid here
    (_bearer("wgp_unknown"), "auth.unknown_token"),
])
async def test_bad_credentials_are_refused(store: MemoryGatewayStore, headers: dict[str, str],
                                           reason: str) -> None:
    with pytest.raises(AuthFailure) as failure:
        await Authenticator(store, None).authenticate(headers)
    assert failure.value.reason == reason
    assert failure.value.owner == ""


@pytest.mark.parametrize("user_kwargs, token_kwargs, reason", [
    ({}, {"revoked": True}, "auth.revoked_token"),
    ({}, {"expires_in": -1}, "auth.expired_token"),
    ({"active": False}, {}, "auth.account_disabled"),
    ({"quarantined": True}, {}, "auth.quarantined"),
])
async def test_known_token_refused_names_its_owner(store: MemoryGatewayStore, user_kwargs: dict,
                                                   token_kwargs: dict, reason: str) -> None:
    user = store.add_user("ana", **user_kwargs)
    token = store.add_token(_hash(TOKEN), user, **token_kwargs)
    with pytest.raises(AuthFailure) as failure:
        await Authenticator(store, None).authenticate(_bearer(TOKEN))
    assert (failure.value.reason, failure.value.owner, failure.value.token_id) == (
        reason, "ana", token.token_id)
    assert failure.value.auth_method == "personal_token"
    assert token.last_used_at is None  # a refused token is not marked used


async def test_personal_token_identity_and_cache(store: MemoryGatewayStore) -> None:
    user = store.add_user("ana", groups={"zeta", "analysts"})
    token = store.add_token(_hash(TOKEN), user, connection_ids=frozenset({7}))
    auth = Authenticator(store, None)
    identity = await auth.authenticate(_bearer(TOKEN))
    assert (identity.user_id, identity.username, identity.groups, identity.auth_method,
            identity.token_id, identity.token_connections) == (
        user.user_id, "ana", ("analysts", "zeta"), "personal_token", token.token_id,
        frozenset({7}))
    assert token.last_used_at is not None
    # Cached: a revocation is seen only once the revision moves (invalidate).
    token.revoked = True
    assert await auth.authenticate(_bearer(TOKEN)) == identity
    assert store.calls.count("personal_token_find") == 1
    auth.invalidate()
    with pytest.raises(AuthFailure, match="revoked"):
        await auth.authenticate(_bearer(TOKEN))


async def test_cached_identity_never_outlives_its_token(store: MemoryGatewayStore) -> None:
    user = store.add_user("ana")
    store.add_token(_hash(TOKEN), user, expires_in=0.2)
    auth = Authenticator(store, None)
    await auth.authenticate(_bearer(TOKEN))
    await asyncio.sleep(0.3)
    with pytest.raises(AuthFailure) as failure:
        await auth.authenticate(_bearer(TOKEN))
    assert failure.value.reason == "auth.expired_token"


class _Verifier:
    def __init__(self, subject: str = "sub-1", error: TokenRejected | None = None) -> None:
        self.subject = subject
        self.error = error

    async def verify(self, token: str) -> VerifiedIdentity:
        if self.error is not None:
            raise self.error
        return VerifiedIdentity(subject=self.subject, username="bo", groups=("eng",),
                                issuer="https://issuer", expires_at=2**31,
                                claims=MappingProxyType({"email": "bo@example.com"}))


def _oidc(store: MemoryGatewayStore, verifier: _Verifier) -> Authenticator:
    auth = Authenticator(store, None)
    auth.verifier = verifier  # type: ignore[assignment]  # stands in for the issuer's JWKS
    return auth


async def test_oidc_identity_is_provisioned(store: MemoryGatewayStore) -> None:
    identity = await _oidc(store, _Verifier()).authenticate(_bearer(JWT))
    assert identity.auth_method == "oidc" and identity.groups == ("eng",)
    assert identity.token_id is None and identity.token_connections is None
    again = await _oidc(store, _Verifier()).authenticate(_bearer(JWT))
    assert again.user_id == identity.user_id  # same issuer + subject: same account


@pytest.mark.parametrize("verifier, setup, reason", [
    (_Verifier(error=TokenRejected("token.expired", "expired")), None, "token.expired"),
    (_Verifier(subject=""), None, "auth.bad_subject"),
    (_Verifier(), "quarantine", "auth.quarantined"),
    (_Verifier(), "disable", "auth.account_disabled"),
])
async def test_oidc_refusals(store: MemoryGatewayStore, verifier: _Verifier, setup: str | None,
                             reason: str) -> None:
    if setup:
        await _oidc(store, _Verifier()).authenticate(_bearer(JWT))
        user = next(iter(store.users.values()))
        if setup == "quarantine":
            user.quarantined = True
        else:
            user.active = False
    with pytest.raises(AuthFailure) as failure:
        await _oidc(store, verifier).authenticate(_bearer(JWT))
    assert failure.value.reason == reason
    assert failure.value.auth_method == "oidc"
