"""Tests for proxy.oidc against a real JWKS HTTP endpoint on 127.0.0.1.

Tokens are minted with PyJWT from keys generated here and checked by the verifier, which
verifies signatures with PyJWT under our own policy (key fetching, algorithms, claims);
tests/proxy/test_oidc_attacks.py signs with cryptography directly as the independent side.
Nothing in the verification path is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from proxy.oidc import (
    SUPPORTED_ALGORITHMS,
    JwksVerifier,
    OidcConfig,
    TokenRejected,
    VerifiedIdentity,
)

ISSUER = "https://idp.example.test/realms/wardgate"
AUDIENCE = "wardgate-gateway"

aio = pytest.mark.asyncio

# --------------------------------------------------------------------------------------------
# Real JWKS server
# --------------------------------------------------------------------------------------------


class JwksServer:
    """ThreadingHTTPServer serving a mutable JWKS document at /jwks and counting requests."""

    def __init__(self, port: int = 0) -> None:
        self.document: Any = {"keys": []}
        self.status = 200
        self.raw_body: bytes | None = None
        self.delay = 0.0
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests += 1
                if server.delay:
                    time.sleep(server.delay)
                if self.path != "/jwks":
                    self.send_error(404)
                    return
                body = (
                    server.raw_body
                    if server.raw_body is not None
                    else json.dumps(server.document).encode()
                )
                self.send_response(server.status)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/jwks"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def serve(self, *keys: TestKey) -> None:
        self.document = {"keys": [k.jwk for k in keys]}

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@dataclass
class TestKey:
    __test__ = False  # not a pytest test class

    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        headers = {"kid": self.kid, **header}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=headers)

    def sign_raw(self, payload: bytes, **header: Any) -> str:
        headers = {"kid": self.kid, **header}
        return jwt.api_jws.encode(payload, self.private, algorithm=self.alg, headers=headers)


def make_key(
    kind: str, kid: str | None = None, *, alg: str | None = None, **jwk_extra: Any
) -> TestKey:
    kid = kid or f"{kind}-{secrets.token_hex(4)}"
    private: Any
    if kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = alg or "RS256"
    elif kind == "ec":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = alg or "ES256"
    elif kind == "ed":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = alg or "EdDSA"
    else:
        raise AssertionError(kind)
    jwk = {**jwk, "kid": kid, "use": "sig", **jwk_extra}
    return TestKey(kid=kid, alg=alg, private=private, jwk=jwk)


@pytest.fixture(scope="module")
def keys() -> dict[str, TestKey]:
    return {"rsa": make_key("rsa"), "ec": make_key("ec"), "ed": make_key("ed")}


@pytest.fixture
def server(keys: dict[str, TestKey]) -> Iterator[JwksServer]:
    srv = JwksServer()
    srv.serve(*keys.values())
    yield srv
    srv.close()


def config(server: JwksServer, **overrides: Any) -> OidcConfig:
    values: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": server.url}
    values.update(overrides)
    return OidcConfig(**values)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-123",
        "preferred_username": "alice",
        "email": "alice@example.test",
        "groups": ["mcp-users", "admins"],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def rejected(verifier: JwksVerifier, token: str) -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(token)
    exc = info.value
    # The token never leaks into the error (the header segment is shared by design across tokens
    # from one key, so check the payload and signature segments too).
    for part in [token, *token.split(".")[1:]]:
        if len(part) > 8:
            assert part not in str(exc)
            assert part not in exc.message
    return exc


# --------------------------------------------------------------------------------------------
# Happy paths
# --------------------------------------------------------------------------------------------


@aio
@pytest.mark.parametrize("kind", ["rsa", "ec", "ed"])
async def test_valid_tokens(server: JwksServer, keys: dict[str, TestKey], kind: str) -> None:
    verifier = JwksVerifier(config(server))
    body = claims()
    identity = await verifier.verify(keys[kind].sign(body))
    assert identity == VerifiedIdentity(
        subject="user-123",
        username="alice",
        groups=("mcp-users", "admins"),
        issuer=ISSUER,
        expires_at=body["exp"],
        claims=body,
    )
    with pytest.raises(TypeError):
        identity.claims["sub"] = "mallory"  # type: ignore[index]


@aio
async def test_ps256_and_rs512_with_unlabelled_rsa_key(server: JwksServer) -> None:
    key = make_key("rsa", "plain-rsa")
    del key.jwk["use"]  # neither 'use' nor 'alg': usable with any RSA algorithm allowed
    server.serve(key)
    verifier = JwksVerifier(config(server, allowed_algorithms=("PS256", "RS512")))
    for alg in ("PS256", "RS512"):
        token = jwt.encode(claims(), key.private, algorithm=alg, headers={"kid": key.kid})
        assert (await verifier.verify(token)).subject == "user-123"


@aio
async def test_external_http_client_is_used(server: JwksServer, keys: dict[str, TestKey]) -> None:
    async with httpx.AsyncClient() as client:
        verifier = JwksVerifier(config(server), http_client=client)
        assert (await verifier.verify(keys["ec"].sign(claims()))).username == "alice"
    assert server.requests == 1


@aio
async def test_token_without_kid_uses_the_single_fitting_key(server: JwksServer) -> None:
    only = make_key("rsa", "only")
    server.serve(only)
    verifier = JwksVerifier(config(server))
    token = jwt.encode(claims(), only.private, algorithm="RS256")
    assert (await verifier.verify(token)).subject == "user-123"

    second = make_key("rsa", "second")
    server.serve(only, second)
    fresh = JwksVerifier(config(server))
    exc = await rejected(fresh, token)
    assert exc.code == "token.unknown_kid"


# --------------------------------------------------------------------------------------------
# Time-based claims
# --------------------------------------------------------------------------------------------


@aio
async def test_expired(server: JwksServer, keys: dict[str, TestKey]) -> None:
    now = int(time.time())
    verifier = JwksVerifier(config(server, leeway_seconds=30))
    token = keys["rsa"].sign(claims(exp=now - 31, iat=now - 600, nbf=now - 600))
    assert (await rejected(verifier, token)).code == "token.expired"


@aio
async def test_expiry_leeway(server: JwksServer, keys: dict[str, TestKey]) -> None:
    now = int(time.time())
    token = keys["rsa"].sign(claims(exp=now - 10, iat=now - 600, nbf=now - 600))
    assert await JwksVerifier(config(server, leeway_seconds=30)).verify(token)
    strict = JwksVerifier(config(server, leeway_seconds=0))
    assert (await rejected(strict, token)).code == "token.expired"


@aio
async def test_nbf_in_future_and_leeway(server: JwksServer, keys: dict[str, TestKey]) -> None:
    now = int(time.time())
    verifier = JwksVerifier(config(server, leeway_seconds=30))
    future = keys["ec"].sign(claims(nbf=now + 120))
    assert (await rejected(verifier, future)).code == "token.not_yet_valid"
    slightly_early = keys["ec"].sign(claims(nbf=now + 10, iat=now + 10))
    assert await verifier.verify(slightly_early)


@aio
async def test_iat_in_future(server: JwksServer, keys: dict[str, TestKey]) -> None:
    now = int(time.time())
    verifier = JwksVerifier(config(server))
    token = keys["ed"].sign(claims(iat=now + 3600, nbf=None))
    assert (await rejected(verifier, token)).code == "token.not_yet_valid"


@aio
async def test_exp_required_and_must_be_a_finite_number(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    verifier = JwksVerifier(config(server))
    missing = keys["rsa"].sign({k: v for k, v in claims().items() if k != "exp"})
    assert (await rejected(verifier, missing)).code == "token.missing_claim"
    as_string = keys["rsa"].sign(claims(exp=str(int(time.time()) + 300)))
    assert (await rejected(verifier, as_string)).code == "token.malformed"
    as_bool = keys["rsa"].sign(claims(exp=True))
    assert (await rejected(verifier, as_bool)).code == "token.malformed"
    # 1e400 parses to float('inf') in Python: must not become an immortal token.
    body = json.dumps(claims(exp=0)).replace('"exp": 0', '"exp": 1e400').encode()
    assert b"1e400" in body
    assert (await rejected(verifier, keys["rsa"].sign_raw(body))).code == "token.malformed"
    nan = json.dumps(claims(exp=0)).replace('"exp": 0', '"exp": NaN').encode()
    assert (await rejected(verifier, keys["rsa"].sign_raw(nan))).code == "token.malformed"


# --------------------------------------------------------------------------------------------
# Issuer / audience / subject
# --------------------------------------------------------------------------------------------


@aio
async def test_wrong_or_missing_issuer(server: JwksServer, keys: dict[str, TestKey]) -> None:
    verifier = JwksVerifier(config(server))
    for iss in (ISSUER + "/", ISSUER.upper(), "https://evil.example.test", None, [ISSUER], 1):
        body = {**claims(), "iss": iss} if iss is not None else claims(iss=None)
        token = keys["rsa"].sign_raw(json.dumps(body).encode())  # PyJWT refuses non-str iss
        assert (await rejected(verifier, token)).code == "token.bad_issuer"


@aio
async def test_wrong_or_missing_audience(server: JwksServer, keys: dict[str, TestKey]) -> None:
    verifier = JwksVerifier(config(server))
    for aud in ("other-app", ["a", "b"], None, 42, [42]):
        body = {**claims(), "aud": aud} if aud is not None else claims(aud=None)
        assert (await rejected(verifier, keys["ec"].sign(body))).code == "token.bad_audience"


@aio
async def test_audience_list_claim_and_configured_tuple(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    verifier = JwksVerifier(config(server))
    token = keys["ec"].sign(claims(aud=["account", AUDIENCE]))
    assert await verifier.verify(token)

    multi = JwksVerifier(config(server, audience=("first", "second")))
    assert await multi.verify(keys["ec"].sign(claims(aud="second")))
    assert await multi.verify(keys["ec"].sign(claims(aud=["zzz", "first"])))
    assert (await rejected(multi, keys["ec"].sign(claims()))).code == "token.bad_audience"


@aio
async def test_missing_or_empty_sub(server: JwksServer, keys: dict[str, TestKey]) -> None:
    verifier = JwksVerifier(config(server))
    for sub in (None, "", 12345):
        body = {**claims(), "sub": sub} if sub is not None else claims(sub=None)
        assert (await rejected(verifier, keys["ed"].sign(body))).code == "token.missing_claim"


# --------------------------------------------------------------------------------------------
# Algorithm attacks
# --------------------------------------------------------------------------------------------


@aio
async def test_alg_none_is_refused_without_fetching(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    verifier = JwksVerifier(config(server))
    unsigned = jwt.encode(claims(), "", algorithm="none", headers={"kid": keys["rsa"].kid})
    assert unsigned.endswith(".")
    assert (await rejected(verifier, unsigned)).code == "token.alg_not_allowed"
    # Same with a bogus signature appended and with case variants.
    for alg in ("none", "None", "NONE"):
        header = b64(json.dumps({"alg": alg, "kid": keys["rsa"].kid}).encode())
        token = f"{header}.{b64(json.dumps(claims()).encode())}.{b64(b'sig')}"
        assert (await rejected(verifier, token)).code == "token.alg_not_allowed"
    assert server.requests == 0


@aio
async def test_hs256_key_confusion_with_rsa_public_key_is_refused(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    """Classic attack: HMAC-sign with the RSA public key (as the verifier would see it)."""
    rsa_key = keys["rsa"]
    public_pem = rsa_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verifier = JwksVerifier(config(server, allowed_algorithms=tuple(SUPPORTED_ALGORITHMS)))
    for secret in (public_pem, json.dumps(rsa_key.jwk).encode(), rsa_key.jwk["n"].encode()):
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            header = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": rsa_key.kid}).encode())
            payload = b64(json.dumps(claims()).encode())
            mac = hmac.new(secret, f"{header}.{payload}".encode(), digest).digest()
            token = f"{header}.{payload}.{b64(mac)}"
            assert (await rejected(verifier, token)).code == "token.alg_not_allowed"
    assert server.requests == 0


@aio
async def test_symmetric_jwk_in_jwks_is_never_loaded(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    secret = b"shared-secret-shared-secret-1234"
    oct_jwk = {"kty": "oct", "kid": "hmac", "k": b64(secret), "alg": "HS256"}
    server.document = {"keys": [oct_jwk, keys["rsa"].jwk]}
    verifier = JwksVerifier(config(server, allowed_algorithms=("RS256",)))
    forged = jwt.encode(claims(), secret, algorithm="HS256", headers={"kid": "hmac"})
    assert (await rejected(verifier, forged)).code == "token.alg_not_allowed"
    # A token claiming RS256 under the oct key's kid finds no usable key.
    mislabeled = keys["rsa"].sign(claims(), kid="hmac")
    assert (await rejected(verifier, mislabeled)).code == "token.unknown_kid"
    assert await verifier.verify(keys["rsa"].sign(claims()))


@aio
async def test_header_alg_must_fit_key_type_and_curve(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    verifier = JwksVerifier(config(server, allowed_algorithms=("RS256", "ES256", "ES384")))
    # ES256-signed token presented under the RSA key's kid.
    cross = jwt.encode(claims(), keys["ec"].private, algorithm="ES256", headers={"kid": "x"})
    header = b64(json.dumps({"alg": "ES256", "kid": keys["rsa"].kid}).encode())
    token = header + cross[cross.index(".") :]
    assert (await rejected(verifier, token)).code == "token.alg_not_allowed"
    # ES384 header with a P-256 key: wrong curve.
    header384 = b64(json.dumps({"alg": "ES384", "kid": keys["ec"].kid}).encode())
    token384 = header384 + cross[cross.index(".") :]
    assert (await rejected(verifier, token384)).code == "token.alg_not_allowed"


@aio
async def test_jwk_alg_and_use_are_enforced(server: JwksServer) -> None:
    labelled = make_key("rsa", "labelled", alg="RS256")
    labelled.jwk["alg"] = "RS384"  # the JWK says RS384 only
    enc = make_key("rsa", "enc-key", use="enc")
    server.serve(labelled, enc)
    verifier = JwksVerifier(config(server, allowed_algorithms=("RS256", "RS384")))
    assert (await rejected(verifier, labelled.sign(claims()))).code == "token.alg_not_allowed"
    ok = jwt.encode(claims(), labelled.private, algorithm="RS384", headers={"kid": "labelled"})
    assert await verifier.verify(ok)
    assert (await rejected(verifier, enc.sign(claims()))).code == "token.unknown_kid"


@aio
async def test_algorithm_not_in_config(server: JwksServer, keys: dict[str, TestKey]) -> None:
    verifier = JwksVerifier(config(server, allowed_algorithms=("RS256",)))
    assert (await rejected(verifier, keys["ec"].sign(claims()))).code == "token.alg_not_allowed"
    assert (await rejected(verifier, keys["ed"].sign(claims()))).code == "token.alg_not_allowed"


# --------------------------------------------------------------------------------------------
# Signature integrity
# --------------------------------------------------------------------------------------------


@aio
@pytest.mark.parametrize("kind", ["rsa", "ec", "ed"])
async def test_tampered_payload_and_signature(
    server: JwksServer, keys: dict[str, TestKey], kind: str
) -> None:
    verifier = JwksVerifier(config(server))
    header, _, signature = keys[kind].sign(claims()).split(".")
    evil_payload = b64(json.dumps(claims(sub="admin", groups=["root"])).encode())
    tampered = f"{header}.{evil_payload}.{signature}"
    assert (await rejected(verifier, tampered)).code == "token.bad_signature"

    good = keys[kind].sign(claims())
    raw_sig = bytearray(base64.urlsafe_b64decode(good.split(".")[2] + "=="))
    raw_sig[len(raw_sig) // 2] ^= 0x01
    flipped = good.rsplit(".", 1)[0] + "." + b64(bytes(raw_sig))
    assert (await rejected(verifier, flipped)).code == "token.bad_signature"

    truncated = good.rsplit(".", 1)[0] + "." + b64(bytes(raw_sig[:-1]))
    assert (await rejected(verifier, truncated)).code == "token.bad_signature"

    empty_sig = good.rsplit(".", 1)[0] + "."
    assert (await rejected(verifier, empty_sig)).code == "token.bad_signature"


@aio
async def test_signature_from_another_key_with_same_kid(server: JwksServer) -> None:
    real = make_key("rsa", "shared-kid")
    attacker = make_key("rsa", "shared-kid")
    server.serve(real)
    verifier = JwksVerifier(config(server))
    assert (await rejected(verifier, attacker.sign(claims()))).code == "token.bad_signature"


# --------------------------------------------------------------------------------------------
# Malformed input
# --------------------------------------------------------------------------------------------


@aio
async def test_malformed_tokens(server: JwksServer, keys: dict[str, TestKey]) -> None:
    verifier = JwksVerifier(config(server))
    good = keys["rsa"].sign(claims())
    h, p, s = good.split(".")
    cases = [
        "",
        "abc",
        f"{h}.{p}",  # two segments
        f"{h}.{p}.{s}.{s}",  # four segments
        f"{h}.{p}.{s}=",  # padding is not base64url-unpadded
        f"{h}!.{p}.{s}",  # character outside the alphabet
        f"{h}.{p}.{s[:-1]}+",  # standard base64 alphabet
        f"{h}.{p}.a",  # impossible base64 length (1 mod 4)
        f"{b64(b'not json')}.{p}.{s}",  # non-JSON header
        f"{b64(b'[1, 2]')}.{p}.{s}",  # JSON, but not an object
        f"{b64(bytes([0xFF, 0xFE]))}.{p}.{s}",  # not UTF-8
        f"{b64(b'[' * 5000)}.{p}.{s}",  # pathological nesting
        f"{b64(json.dumps({'kid': keys['rsa'].kid}).encode())}.{p}.{s}",  # no alg
        f"{b64(json.dumps({'alg': 'RS256', 'kid': 7}).encode())}.{p}.{s}",  # kid not a string
        f" {good}",
        good + "\n",
        "x" * 20_000,
        f"{h}.{p}.{s}" + "A" * 20_000,  # too long
    ]
    for token in cases:
        exc = await rejected(verifier, token)
        assert exc.code == "token.malformed", (token[:40], exc.code)
    not_a_string: Any = None
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(not_a_string)
    assert info.value.code == "token.malformed"
    assert server.requests == 0


@aio
async def test_crit_header_and_non_json_payload(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    verifier = JwksVerifier(config(server))
    crit = keys["rsa"].sign(claims(), crit=["exp"])
    assert (await rejected(verifier, crit)).code == "token.malformed"
    for payload in (b"not json", b"[1]", b'"string"'):
        token = keys["rsa"].sign_raw(payload)
        assert (await rejected(verifier, token)).code == "token.malformed"


def test_looks_like_jwt(keys: dict[str, TestKey]) -> None:
    token = keys["rsa"].sign(claims())
    assert JwksVerifier.looks_like_jwt(token)
    assert JwksVerifier.looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")  # unsigned shape
    for opaque in (
        "",
        "wg_3f9a8c7e6d5b4a3928171605f4e3d2c1",
        "abc.def",
        "a.b.c.d",
        "a b.c.d",
        "abc.def.gh=",
        f"Bearer {token}",
        "x" * 20_000 + ".a.b",
    ):
        assert not JwksVerifier.looks_like_jwt(opaque), opaque[:40]
    assert not JwksVerifier.looks_like_jwt(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# JWKS caching, rotation, rate limiting, failure modes
# --------------------------------------------------------------------------------------------


@aio
async def test_jwks_is_fetched_lazily_and_cached(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    verifier = JwksVerifier(config(server, verified_cache_seconds=0))
    assert server.requests == 0
    for _ in range(20):
        for key in keys.values():
            await verifier.verify(key.sign(claims()))
    assert server.requests == 1


@aio
async def test_jwks_cache_expires(server: JwksServer, keys: dict[str, TestKey]) -> None:
    # A refresh interval long enough that the two first calls fall within it on a busy machine.
    verifier = JwksVerifier(config(server, jwks_cache_seconds=0, min_refresh_interval_seconds=2))
    token = keys["rsa"].sign(claims())
    await verifier.verify(token)
    await verifier.verify(keys["rsa"].sign(claims(sub="other")))  # stale but rate limited
    assert server.requests == 1
    await asyncio.sleep(2.05)
    await verifier.verify(keys["rsa"].sign(claims(sub="third")))
    assert server.requests == 2


@aio
async def test_concurrent_cold_start_shares_one_fetch(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    server.delay = 0.2
    verifier = JwksVerifier(config(server, verified_cache_seconds=0))
    tokens = [k.sign(claims(sub=f"user-{i}")) for i in range(10) for k in keys.values()]
    identities = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert len(identities) == 30
    assert server.requests == 1


@aio
async def test_cancelled_caller_does_not_cancel_shared_fetch(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    server.delay = 0.2
    verifier = JwksVerifier(config(server))
    token = keys["ec"].sign(claims())
    first = asyncio.create_task(verifier.verify(token))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(verifier.verify(keys["ed"].sign(claims())))
    await asyncio.sleep(0.01)
    first.cancel()
    assert (await second).subject == "user-123"
    assert server.requests == 1


@aio
async def test_unknown_kid_then_key_rotation(server: JwksServer, keys: dict[str, TestKey]) -> None:
    verifier = JwksVerifier(config(server, min_refresh_interval_seconds=0.0))
    await verifier.verify(keys["rsa"].sign(claims()))
    assert server.requests == 1

    new_key = make_key("rsa", "rotated-2025")
    token = new_key.sign(claims())
    # Not published yet: one refetch, then unknown_kid.
    assert (await rejected(verifier, token)).code == "token.unknown_kid"
    assert server.requests == 2

    # IdP rotates: publishes the new key next to the old one.
    server.serve(keys["rsa"], new_key)
    assert (await verifier.verify(token)).subject == "user-123"
    assert server.requests == 3
    # Now cached: no more fetches for either key.
    await verifier.verify(new_key.sign(claims(sub="again")))
    await verifier.verify(keys["rsa"].sign(claims(sub="again")))
    assert server.requests == 3

    # IdP retires the old key: tokens signed with it stop verifying after the next refresh.
    server.serve(new_key)
    other = make_key("ec", "brand-new")
    assert (await rejected(verifier, other.sign(claims()))).code == "token.unknown_kid"
    assert server.requests == 4
    assert (await rejected(verifier, keys["rsa"].sign(claims(sub="z")))).code == (
        "token.unknown_kid"
    )


@aio
async def test_kid_spray_is_rate_limited(server: JwksServer, keys: dict[str, TestKey]) -> None:
    # The window is wide enough that the 100 refusals below fit in it on a loaded machine;
    # the tokens are signed before it opens.
    verifier = JwksVerifier(config(server, min_refresh_interval_seconds=3.0))
    attacker = make_key("rsa", "unused")
    sequential = [attacker.sign(claims(), kid=secrets.token_hex(8)) for _ in range(50)]
    concurrent = [attacker.sign(claims(), kid=secrets.token_hex(8)) for _ in range(50)]
    await verifier.verify(keys["rsa"].sign(claims()))
    assert server.requests == 1
    await asyncio.sleep(3.1)  # let the rate-limit window from the cold fetch pass
    for token in sequential:
        assert (await rejected(verifier, token)).code == "token.unknown_kid"
    results = await asyncio.gather(
        *(verifier.verify(t) for t in concurrent), return_exceptions=True
    )
    assert all(isinstance(r, TokenRejected) and r.code == "token.unknown_kid" for r in results)
    # One cold fetch plus exactly one kid-miss refetch for 100 random kids.
    assert server.requests == 2
    # Legit traffic is unaffected.
    assert await verifier.verify(keys["ed"].sign(claims()))


@aio
async def test_kid_spray_on_cold_verifier(server: JwksServer) -> None:
    verifier = JwksVerifier(config(server, min_refresh_interval_seconds=10.0))
    attacker = make_key("ec", "unused")
    tokens = [attacker.sign(claims(), kid=secrets.token_hex(8)) for _ in range(40)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)
    assert all(isinstance(r, TokenRejected) and r.code == "token.unknown_kid" for r in results)
    assert server.requests == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _closed_port_url() -> str:
    return f"http://127.0.0.1:{_free_port()}/jwks"


@aio
async def test_jwks_server_down_without_cache_fails_closed(keys: dict[str, TestKey]) -> None:
    cfg = OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=_closed_port_url())
    verifier = JwksVerifier(cfg)
    exc = await rejected(verifier, keys["rsa"].sign(claims()))
    assert exc.code == "token.jwks_unavailable"
    # Within the rate-limit window we do not retry, and still fail closed.
    assert (await rejected(verifier, keys["ec"].sign(claims()))).code == "token.jwks_unavailable"


@aio
@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"keys": []}'),
        (302, b""),
        (200, b"<html>not json</html>"),
        (200, b'{"no_keys": true}'),
        (200, b'{"keys": []}'),
        (200, b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "a"}]}'),
        (200, b'{"keys": [{"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB"}]}'),
    ],
)
async def test_bad_jwks_responses_fail_closed(
    server: JwksServer, keys: dict[str, TestKey], status: int, body: bytes
) -> None:
    server.status, server.raw_body = status, body
    verifier = JwksVerifier(config(server))
    exc = await rejected(verifier, keys["rsa"].sign(claims()))
    assert exc.code == "token.jwks_unavailable"
    assert server.requests == 1


@aio
async def test_oversized_jwks_fails_closed(server: JwksServer, keys: dict[str, TestKey]) -> None:
    server.document = {"keys": [keys["rsa"].jwk], "padding": "x" * (2 * 1024 * 1024)}
    verifier = JwksVerifier(config(server))
    assert (await rejected(verifier, keys["rsa"].sign(claims()))).code == ("token.jwks_unavailable")


@aio
async def test_slow_jwks_times_out(server: JwksServer, keys: dict[str, TestKey]) -> None:
    server.delay = 1.0
    verifier = JwksVerifier(config(server, http_timeout_seconds=0.2))
    started = time.monotonic()
    exc = await rejected(verifier, keys["rsa"].sign(claims()))
    assert exc.code == "token.jwks_unavailable"
    assert time.monotonic() - started < 0.9


@aio
async def test_cached_keys_survive_jwks_outage(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    verifier = JwksVerifier(config(server, jwks_cache_seconds=0, min_refresh_interval_seconds=0.0))
    await verifier.verify(keys["rsa"].sign(claims()))
    server.status = 503
    for key in keys.values():  # cache is always stale: each call retries, fails, uses old keys
        assert await verifier.verify(key.sign(claims(sub="during-outage")))
    assert server.requests == 4
    server.raw_body = b"garbage"
    server.status = 200
    assert await verifier.verify(keys["ec"].sign(claims(sub="still")))


@aio
async def test_recovers_after_outage(keys: dict[str, TestKey]) -> None:
    port = _free_port()
    cfg = OidcConfig(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=f"http://127.0.0.1:{port}/jwks",
        min_refresh_interval_seconds=0.0,
    )
    verifier = JwksVerifier(cfg)
    token = keys["rsa"].sign(claims())
    assert (await rejected(verifier, token)).code == "token.jwks_unavailable"
    server = JwksServer(port)  # the IdP comes back on the same address
    try:
        server.serve(keys["rsa"])
        assert (await verifier.verify(token)).subject == "user-123"
    finally:
        server.close()


# --------------------------------------------------------------------------------------------
# Groups and username mapping
# --------------------------------------------------------------------------------------------


@aio
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["a", "b", "a"], ("a", "b")),
        ([" a ", "", 7, None, "b"], ("a", "b")),
        ("a b  c", ("a", "b", "c")),
        ("a,b, c", ("a", "b", "c")),
        ("", ()),
        ({"a": True}, ()),
        (42, ()),
        (None, ()),
    ],
)
async def test_groups_claim_shapes(
    server: JwksServer, keys: dict[str, TestKey], value: Any, expected: tuple[str, ...]
) -> None:
    verifier = JwksVerifier(config(server))
    body = {**claims(), "groups": value} if value is not None else claims(groups=None)
    assert (await verifier.verify(keys["ed"].sign(body))).groups == expected


@aio
async def test_custom_and_nested_groups_claim(server: JwksServer, keys: dict[str, TestKey]) -> None:
    nested = JwksVerifier(config(server, groups_claim="realm_access.roles"))
    body = claims(realm_access={"roles": ["mcp-admin"]})
    assert (await nested.verify(keys["rsa"].sign(body))).groups == ("mcp-admin",)

    flat = JwksVerifier(config(server, groups_claim="roles"))
    assert (await flat.verify(keys["rsa"].sign(claims(roles="x y")))).groups == ("x", "y")
    assert (await flat.verify(keys["rsa"].sign(claims()))).groups == ()


@aio
async def test_username_fallbacks(server: JwksServer, keys: dict[str, TestKey]) -> None:
    verifier = JwksVerifier(config(server))
    sign = keys["ec"].sign
    assert (await verifier.verify(sign(claims()))).username == "alice"
    no_pref = claims(preferred_username=None)
    assert (await verifier.verify(sign(no_pref))).username == "alice@example.test"
    bare = claims(preferred_username=None, email=None)
    assert (await verifier.verify(sign(bare))).username == "user-123"
    weird = claims(preferred_username=["x"], email="")
    assert (await verifier.verify(sign(weird))).username == "user-123"

    custom = JwksVerifier(config(server, username_claim="upn"))
    assert (await custom.verify(sign(claims(upn="alice@corp")))).username == "alice@corp"


# --------------------------------------------------------------------------------------------
# Verified-token cache
# --------------------------------------------------------------------------------------------


@aio
async def test_verified_cache_hit_still_respects_exp(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    now = [time.time()]
    verifier = JwksVerifier(config(server, leeway_seconds=0), clock=lambda: now[0])
    token = keys["rsa"].sign(claims(exp=int(now[0]) + 20))
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # cache hit returns the same object
    now[0] += 25
    assert (await rejected(verifier, token)).code == "token.expired"


@aio
async def test_verified_cache_ttl_is_bounded(server: JwksServer, keys: dict[str, TestKey]) -> None:
    now = [time.time()]
    verifier = JwksVerifier(config(server, verified_cache_seconds=60), clock=lambda: now[0])
    token = keys["ec"].sign(claims(exp=int(now[0]) + 3600))
    first = await verifier.verify(token)
    now[0] += 59
    assert await verifier.verify(token) is first
    now[0] += 2
    second = await verifier.verify(token)  # re-verified (fresh object), still valid
    assert second is not first
    assert second == first


@aio
async def test_verified_cache_is_bounded_in_size(
    server: JwksServer, keys: dict[str, TestKey]
) -> None:
    verifier = JwksVerifier(config(server, verified_cache_max_entries=5))
    for i in range(20):
        await verifier.verify(keys["ed"].sign(claims(sub=f"u{i}")))
    assert len(verifier._verified) <= 5


@aio
async def test_verified_cache_disabled(server: JwksServer, keys: dict[str, TestKey]) -> None:
    verifier = JwksVerifier(config(server, verified_cache_seconds=0))
    token = keys["ed"].sign(claims())
    assert await verifier.verify(token) is not await verifier.verify(token)


# --------------------------------------------------------------------------------------------
# Configuration validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algs",
    [("none",), ("HS256",), ("RS256", "HS512"), ("hs384",), ("ES256K",), ("RSA-OAEP",), ()],
)
def test_config_rejects_bad_algorithms(algs: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        OidcConfig(ISSUER, AUDIENCE, "https://idp.example.test/jwks", allowed_algorithms=algs)


def test_config_accepts_all_asymmetric_algorithms() -> None:
    algs = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
    cfg = OidcConfig(ISSUER, AUDIENCE, "https://x/jwks", allowed_algorithms=(*algs, "EdDSA"))
    assert set(cfg.allowed_algorithms) == SUPPORTED_ALGORITHMS


@pytest.mark.parametrize(
    ("overrides", "ok"),
    [
        ({"jwks_url": "http://idp.example.test/jwks"}, False),
        ({"jwks_url": "http://idp.example.test/jwks", "allow_insecure_jwks_url": True}, True),
        ({"jwks_url": "http://localhost:8080/jwks"}, True),
        ({"jwks_url": "http://[::1]:8080/jwks"}, True),
        ({"jwks_url": "ftp://idp/jwks"}, False),
        ({"jwks_url": "/relative/jwks"}, False),
        ({"audience": ""}, False),
        ({"audience": ()}, False),
        ({"audience": ["a", "b"]}, True),
        ({"issuer": ""}, False),
        ({"leeway_seconds": -1}, False),
        ({"http_timeout_seconds": 0}, False),
        ({"groups_claim": ""}, False),
    ],
)
def test_config_validation(overrides: dict[str, Any], ok: bool) -> None:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": "https://idp.example.test/jwks",
    }
    values.update(overrides)
    if ok:
        cfg = OidcConfig(**values)
        assert isinstance(cfg.audience, str | tuple)
    else:
        with pytest.raises(ValueError):
            OidcConfig(**values)
