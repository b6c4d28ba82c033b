"""Attacks on proxy.oidc, table-driven, against a stub key set (no sockets, no network).

The JWKS is served by ``httpx.MockTransport``; keys are generated here and tokens are signed with
``cryptography`` directly, so the verifier (which leans on PyJWT) is checked against an
independent JWS implementation. tests/proxy/test_oidc.py covers the same module over real HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from proxy.oidc import JwksVerifier, OidcConfig, TokenRejected

ISSUER = "https://idp.example.test/realms/wardgate"
AUDIENCE = "wardgate-gateway"
JWKS_URL = "https://idp.example.test/jwks"
NOW = 1_800_000_000
LEEWAY = 30
ALL_ALGORITHMS = ("RS256", "PS256", "ES256", "ES384", "EdDSA")

# --------------------------------------------------------------------------------------------
# An independent JWS signer
# --------------------------------------------------------------------------------------------

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_int(value: int, length: int | None = None) -> str:
    return b64(value.to_bytes(length or (value.bit_length() + 7) // 8, "big"))


def b64_json(value: Any) -> str:
    return b64(json.dumps(value).encode())


def sign(alg: str, private: Any, message: bytes) -> bytes:
    if alg == "EdDSA":
        signature: bytes = private.sign(message)
        return signature
    hash_alg = _HASHES[alg[2:]]()
    if alg.startswith("RS"):
        return bytes(private.sign(message, padding.PKCS1v15(), hash_alg))
    if alg.startswith("PS"):
        pss = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
        return bytes(private.sign(message, pss, hash_alg))
    # ES*: JWS wants fixed-width R || S, not DER.
    r, s = decode_dss_signature(private.sign(message, ec.ECDSA(hash_alg)))
    width = (private.curve.key_size + 7) // 8
    return r.to_bytes(width, "big") + s.to_bytes(width, "big")


def public_jwk(public: Any) -> dict[str, str]:
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        return {"kty": "RSA", "n": b64_int(numbers.n), "e": b64_int(numbers.e)}
    if isinstance(public, ec.EllipticCurvePublicKey):
        width = (public.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        point = public.public_numbers()
        return {
            "kty": "EC",
            "crv": crv[public.curve.name],
            "x": b64_int(point.x, width),
            "y": b64_int(point.y, width),
        }
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}


@dataclass
class Signer:
    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any] = field(default_factory=dict)

    def token(self, body: dict[str, Any] | None = None, *, alg: str | None = None,
              **header: Any) -> str:
        alg = alg or self.alg
        head = b64_json({"alg": alg, "kid": self.kid, **header})
        payload = b64_json(claims() if body is None else body)
        signature = sign(alg, self.private, f"{head}.{payload}".encode())
        return f"{head}.{payload}.{b64(signature)}"


def new_signer(kind: str, kid: str | None = None, **jwk_extra: Any) -> Signer:
    private: Any
    if kind == "rsa":
        private, alg = rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"
    elif kind == "ec":
        private, alg = ec.generate_private_key(ec.SECP256R1()), "ES256"
    elif kind == "ec384":
        private, alg = ec.generate_private_key(ec.SECP384R1()), "ES384"
    elif kind == "ed":
        private, alg = ed25519.Ed25519PrivateKey.generate(), "EdDSA"
    else:
        raise AssertionError(kind)
    kid = kid or f"{kind}-{secrets.token_hex(4)}"
    jwk = {**public_jwk(private.public_key()), "kid": kid, "use": "sig", **jwk_extra}
    return Signer(kid=kid, alg=alg, private=private, jwk=jwk)


def claims(**overrides: Any) -> dict[str, Any]:
    values = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-123", "iat": NOW, "nbf": NOW,
              "exp": NOW + 300, **overrides}
    return {k: v for k, v in values.items() if v is not None}


# --------------------------------------------------------------------------------------------
# A stub identity provider
# --------------------------------------------------------------------------------------------


@dataclass
class StubIdp:
    keys: list[Any]
    fetched: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.fetched.append(str(request.url))
        if str(request.url) != JWKS_URL:
            return httpx.Response(404)
        return httpx.Response(200, json={"keys": self.keys})

    @asynccontextmanager
    async def verifier(self, **config: Any) -> AsyncIterator[JwksVerifier]:
        values: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": JWKS_URL,
                                  "leeway_seconds": LEEWAY, **config}
        transport = httpx.MockTransport(self.handle)
        async with httpx.AsyncClient(transport=transport) as client:
            yield JwksVerifier(OidcConfig(**values), http_client=client, clock=lambda: NOW)


async def outcome(verifier: JwksVerifier, token: str) -> str:
    """'ok' or the rejection code; checks that no rejection echoes the token or a raw newline."""
    try:
        await verifier.verify(token)
    except TokenRejected as exc:
        for part in token.split(".")[1:]:
            if len(part) > 8:
                assert part not in str(exc)
        assert "\n" not in exc.message and len(exc.message) < 200
        return exc.code
    return "ok"


@pytest.fixture(scope="module")
def signers() -> dict[str, Signer]:
    return {kind: new_signer(kind) for kind in ("rsa", "ec", "ec384", "ed")}


# --------------------------------------------------------------------------------------------
# Header attacks: algorithm confusion, key injection, kid injection
# --------------------------------------------------------------------------------------------


def forge(signer: Signer, header_alg: str, *, sign_alg: str | None = None, **header: Any) -> str:
    """A token whose header claims ``header_alg`` but is signed with ``sign_alg`` (default: the
    key's own algorithm)."""
    head = b64_json({"alg": header_alg, "kid": signer.kid, **header})
    payload = b64_json(claims())
    signature = sign(sign_alg or signer.alg, signer.private, f"{head}.{payload}".encode())
    return f"{head}.{payload}.{b64(signature)}"


def hs256(secret: bytes, kid: str) -> str:
    head, payload = b64_json({"alg": "HS256", "kid": kid}), b64_json(claims())
    mac = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{b64(mac)}"


def ecdsa_der(signer: Signer) -> str:
    head, payload = b64_json({"alg": "ES256", "kid": signer.kid}), b64_json(claims())
    der = signer.private.sign(f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    return f"{head}.{payload}.{b64(der)}"


def attacker(**header: Any) -> str:
    """Signed with a key the IdP never published, which the header offers in its place."""
    evil = new_signer("rsa", "evil")
    return evil.token(**{k: (evil.jwk if v is EVIL_JWK else v) for k, v in header.items()})


EVIL_JWK = object()
Build = Callable[[dict[str, Signer]], str]

HEADER_ATTACKS: list[tuple[str, Build, str]] = [
    ("hs256-keyed-with-ec-jwk-json",
     lambda s: hs256(json.dumps(s["ec"].jwk).encode(), s["ec"].kid), "token.alg_not_allowed"),
    ("hs256-keyed-with-ec-x",
     lambda s: hs256(s["ec"].jwk["x"].encode(), s["ec"].kid), "token.alg_not_allowed"),
    ("hs256-keyed-with-ed-pem",
     lambda s: hs256(s["ed"].private.public_key().public_bytes(
         Encoding.PEM, PublicFormat.SubjectPublicKeyInfo), s["ed"].kid), "token.alg_not_allowed"),
    ("none-with-ec-kid",
     lambda s: f"{b64_json({'alg': 'none', 'kid': s['ec'].kid})}.{b64_json(claims())}.",
     "token.alg_not_allowed"),
    ("es521-pyjwt-alias", lambda s: forge(s["ec"], "ES521"), "token.alg_not_allowed"),
    ("es256k", lambda s: forge(s["ec"], "ES256K"), "token.alg_not_allowed"),
    ("eddsa-under-rsa-kid",
     lambda s: forge(s["ed"], "EdDSA", kid=s["rsa"].kid), "token.alg_not_allowed"),
    ("rs256-under-ec-kid", lambda s: s["rsa"].token(kid=s["ec"].kid), "token.alg_not_allowed"),
    ("es384-under-p256-kid", lambda s: s["ec384"].token(kid=s["ec"].kid), "token.alg_not_allowed"),
    ("ps256-header-rs256-signature", lambda s: forge(s["rsa"], "PS256"), "token.bad_signature"),
    ("rs256-header-ps256-signature",
     lambda s: forge(s["rsa"], "RS256", sign_alg="PS256"), "token.bad_signature"),
    ("es256-der-signature", lambda s: ecdsa_der(s["ec"]), "token.bad_signature"),
    ("embedded-jwk-own-kid", lambda s: attacker(jwk=EVIL_JWK), "token.unknown_kid"),
    ("embedded-jwk-real-kid",
     lambda s: attacker(jwk=EVIL_JWK, kid=s["rsa"].kid), "token.bad_signature"),
    ("jku-elsewhere", lambda s: attacker(jku="https://evil.example.test/jwks"),
     "token.unknown_kid"),
    ("x5u-elsewhere", lambda s: attacker(x5u="https://evil.example.test/cert.pem"),
     "token.unknown_kid"),
    ("kid-path-traversal", lambda s: s["rsa"].token(kid="../../../../dev/null"),
     "token.unknown_kid"),
    ("kid-sql", lambda s: s["rsa"].token(kid="' OR '1'='1' --"), "token.unknown_kid"),
    ("kid-newline-log-injection", lambda s: s["rsa"].token(kid="x\nINFO forged line"),
     "token.unknown_kid"),
    ("kid-very-long", lambda s: s["rsa"].token(kid="k" * 8000), "token.unknown_kid"),
    ("kid-empty", lambda s: s["rsa"].token(kid=""), "token.unknown_kid"),
    ("kid-prefix-of-real", lambda s: s["rsa"].token(kid=s["rsa"].kid[:-1]), "token.unknown_kid"),
    ("kid-object", lambda s: s["rsa"].token(kid={"$ne": None}), "token.malformed"),
]


@pytest.mark.parametrize(("build", "expected"), [c[1:] for c in HEADER_ATTACKS],
                         ids=[c[0] for c in HEADER_ATTACKS])
async def test_header_attacks_are_refused(
    signers: dict[str, Signer], build: Callable[[dict[str, Signer]], str], expected: str
) -> None:
    idp = StubIdp([s.jwk for s in signers.values()])
    async with idp.verifier(allowed_algorithms=ALL_ALGORITHMS) as verifier:
        assert await outcome(verifier, build(signers)) == expected
        # Only ever our configured JWKS URL: header jku/x5u/jwk are never followed or used.
        assert set(idp.fetched) <= {JWKS_URL}
        assert await outcome(verifier, signers["rsa"].token()) == "ok"


async def test_independent_signatures_verify(signers: dict[str, Signer]) -> None:
    idp = StubIdp([s.jwk for s in signers.values()])
    async with idp.verifier(allowed_algorithms=ALL_ALGORITHMS) as verifier:
        for signer in signers.values():
            assert await outcome(verifier, signer.token()) == "ok", signer.alg
        assert await outcome(verifier, signers["rsa"].token(alg="PS256")) == "ok"


# --------------------------------------------------------------------------------------------
# Claims: time, issuer, audience (the verifier's clock is pinned at NOW, leeway 30 s)
# --------------------------------------------------------------------------------------------

CLAIM_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("exp-at-leeway-edge", {"exp": NOW - LEEWAY}, "token.expired"),
    ("exp-inside-leeway", {"exp": NOW - LEEWAY + 1}, "ok"),
    ("exp-float-inside-leeway", {"exp": NOW - LEEWAY + 0.5}, "ok"),
    ("exp-list", {"exp": [NOW + 300]}, "token.malformed"),
    ("exp-null", {"exp": None}, "token.missing_claim"),
    ("nbf-past-leeway", {"nbf": NOW + LEEWAY + 1}, "token.not_yet_valid"),
    ("nbf-at-leeway-edge", {"nbf": NOW + LEEWAY}, "ok"),
    ("nbf-string", {"nbf": str(NOW)}, "token.malformed"),
    ("iat-past-leeway", {"iat": NOW + LEEWAY + 1}, "token.not_yet_valid"),
    ("iat-bool", {"iat": True}, "token.malformed"),
    ("iss-other-scheme", {"iss": ISSUER.replace("https", "http")}, "token.bad_issuer"),
    ("iss-prefix", {"iss": ISSUER[:-1]}, "token.bad_issuer"),
    ("iss-object", {"iss": {"value": ISSUER}}, "token.bad_issuer"),
    ("aud-prefix", {"aud": AUDIENCE[:-1]}, "token.bad_audience"),
    ("aud-suffix", {"aud": AUDIENCE + "x"}, "token.bad_audience"),
    ("aud-nested-list", {"aud": [[AUDIENCE]]}, "token.bad_audience"),
    ("aud-object", {"aud": {AUDIENCE: True}}, "token.bad_audience"),
    # RFC 7519: aud is a string or an array of strings; a mixed array is refused whole.
    ("aud-list-with-non-string", {"aud": [AUDIENCE, 42]}, "token.bad_audience"),
    ("aud-empty-list", {"aud": []}, "token.bad_audience"),
    ("wrong-iss-and-expired", {"iss": "https://evil.example.test", "exp": NOW - 3600},
     "token.bad_issuer"),
    ("wrong-aud-and-no-sub", {"aud": "other", "sub": None}, "token.bad_audience"),
    ("expired-and-no-sub", {"exp": NOW - 3600, "sub": None}, "token.expired"),
    ("jti-number-is-not-our-business", {"jti": 7}, "ok"),
]


@pytest.mark.parametrize(("overrides", "expected"), [c[1:] for c in CLAIM_CASES],
                         ids=[c[0] for c in CLAIM_CASES])
async def test_claims_policy(
    signers: dict[str, Signer], overrides: dict[str, Any], expected: str
) -> None:
    idp = StubIdp([signers["ec"].jwk])
    body = {**claims(), **overrides}
    body = {k: v for k, v in body.items() if v is not None}
    async with idp.verifier() as verifier:
        assert await outcome(verifier, signers["ec"].token(body)) == expected


async def test_rejection_messages_name_the_claimed_issuer_and_audience_shape(
    signers: dict[str, Signer],
) -> None:
    idp = StubIdp([signers["ed"].jwk])
    async with idp.verifier() as verifier:
        with pytest.raises(TokenRejected) as info:
            await verifier.verify(signers["ed"].token(claims(iss="https://evil.example.test")))
        assert info.value.message == "issuer 'https://evil.example.test' is not trusted"
        with pytest.raises(TokenRejected) as info:
            await verifier.verify(signers["ed"].token(claims(aud=42)))
        assert info.value.message == "token has no valid 'aud' claim"
        with pytest.raises(TokenRejected) as info:
            await verifier.verify(signers["ed"].token(claims(aud="other")))
        assert info.value.message == "token is not intended for this audience"


# --------------------------------------------------------------------------------------------
# JWKS key policy: every bad key is ignored, and never sinks the good keys next to it
# --------------------------------------------------------------------------------------------


def _rsa_bits(bits: int) -> Callable[[Signer], dict[str, Any]]:
    def mutate(s: Signer) -> dict[str, Any]:
        n = (1 << (bits - 1)) | (secrets.randbits(bits - 2) << 1) | 1
        return {**s.jwk, "n": b64_int(n)}

    return mutate


def _p256_coordinates_labelled_p384(s: Signer) -> dict[str, Any]:
    return {**s.jwk, "crv": "P-384"}


def _off_curve(s: Signer) -> dict[str, Any]:
    return {**s.jwk, "y": b64_int(int.from_bytes(secrets.token_bytes(32), "big"), 32)}


def _with_private_rsa_d(s: Signer) -> dict[str, Any]:
    return {**s.jwk, "d": b64_int(s.private.private_numbers().d)}


KEY_CASES: list[tuple[str, str, Callable[[Signer], dict[str, Any]], str]] = [
    ("rsa-1024-bits", "rsa", lambda s: public_jwk_with(s, rsa.generate_private_key(
        public_exponent=65537, key_size=1024)), "ignored"),
    ("rsa-17000-bits", "rsa", _rsa_bits(17000), "ignored"),
    ("rsa-64k-bits", "rsa", _rsa_bits(65536), "ignored"),
    ("rsa-e-1", "rsa", lambda s: {**s.jwk, "e": "AQ"}, "ignored"),
    ("rsa-n-not-base64url", "rsa", lambda s: {**s.jwk, "n": "!!!!"}, "ignored"),
    ("rsa-n-number", "rsa", lambda s: {**s.jwk, "n": 12345}, "ignored"),
    ("rsa-n-list", "rsa", lambda s: {**s.jwk, "n": [s.jwk["n"]]}, "ignored"),
    ("rsa-no-e", "rsa", lambda s: {k: v for k, v in s.jwk.items() if k != "e"}, "ignored"),
    ("rsa-labelled-hs256", "rsa", lambda s: {**s.jwk, "alg": "HS256"}, "ignored"),
    ("rsa-labelled-es256", "rsa", lambda s: {**s.jwk, "alg": "ES256"}, "ignored"),
    ("rsa-use-enc", "rsa", lambda s: {**s.jwk, "use": "enc"}, "ignored"),
    ("rsa-key-ops-sign-only", "rsa", lambda s: {**s.jwk, "key_ops": ["sign"]}, "ignored"),
    ("rsa-key-ops-string", "rsa", lambda s: {**s.jwk, "key_ops": "verify"}, "ignored"),
    ("rsa-kid-number", "rsa", lambda s: {**s.jwk, "kid": 7}, "ignored"),
    ("kty-missing", "rsa", lambda s: {k: v for k, v in s.jwk.items() if k != "kty"}, "ignored"),
    ("kty-oct", "rsa", lambda s: {"kty": "oct", "kid": s.kid, "k": b64(b"s" * 32)}, "ignored"),
    ("not-an-object", "rsa", lambda s: [s.jwk], "ignored"),
    ("ec-curve-label-mismatch", "ec", _p256_coordinates_labelled_p384, "ignored"),
    ("ec-point-off-curve", "ec", _off_curve, "ignored"),
    ("ec-secp256k1", "ec", lambda s: {**s.jwk, "crv": "secp256k1"}, "ignored"),
    ("ec-short-coordinate", "ec", lambda s: {**s.jwk, "x": s.jwk["x"][:-3]}, "ignored"),
    ("ec-labelled-es384", "ec", lambda s: {**s.jwk, "alg": "ES384"}, "ignored"),
    ("okp-x25519", "ed", lambda s: {**s.jwk, "crv": "X25519"}, "ignored"),
    ("okp-x-too-short", "ed", lambda s: {**s.jwk, "x": s.jwk["x"][:10]}, "ignored"),
    # Private members are never read: a key published with its 'd' still only verifies.
    ("rsa-with-private-d", "rsa", _with_private_rsa_d, "usable"),
    ("rsa-with-garbage-d", "rsa", lambda s: {**s.jwk, "d": "!!"}, "usable"),
    ("ec-with-garbage-d", "ec", lambda s: {**s.jwk, "d": "AAAA"}, "usable"),
    ("rsa-unknown-members", "rsa", lambda s: {**s.jwk, "x5c": ["garbage"], "ext": True},
     "usable"),
]


def public_jwk_with(s: Signer, private: Any) -> dict[str, Any]:
    return {**public_jwk(private.public_key()), "kid": s.kid, "use": "sig"}


@pytest.mark.parametrize(("kind", "mutate", "expected"), [c[1:] for c in KEY_CASES],
                         ids=[c[0] for c in KEY_CASES])
async def test_jwks_key_policy(
    signers: dict[str, Signer], kind: str, mutate: Callable[[Signer], Any], expected: str
) -> None:
    signer, good = signers[kind], signers["rsa" if kind == "ed" else "ed"]
    token = signer.token()
    alone = StubIdp([mutate(signer)])
    async with alone.verifier(allowed_algorithms=ALL_ALGORITHMS) as verifier:
        result = await outcome(verifier, token)
    assert result == ("ok" if expected == "usable" else "token.jwks_unavailable")

    beside_a_good_key = StubIdp([mutate(signer), good.jwk])
    async with beside_a_good_key.verifier(allowed_algorithms=ALL_ALGORITHMS) as verifier:
        assert await outcome(verifier, good.token()) == "ok"
        if expected == "ignored":
            assert await outcome(verifier, token) == "token.unknown_kid"


async def test_loaded_keys_are_public_keys(signers: dict[str, Signer]) -> None:
    idp = StubIdp([_with_private_rsa_d(signers["rsa"])])
    async with idp.verifier() as verifier:
        assert await outcome(verifier, signers["rsa"].token()) == "ok"
        keyset = await verifier._keys.current()
        assert keyset is not None
        (key,) = keyset.keys
        assert isinstance(key.for_algorithm("RS256").key, rsa.RSAPublicKey)


# --------------------------------------------------------------------------------------------
# Two keys under one kid
# --------------------------------------------------------------------------------------------


async def test_same_kid_on_two_rsa_keys_first_wins_without_fallback() -> None:
    first, second = new_signer("rsa", "shared"), new_signer("rsa", "shared")
    idp = StubIdp([first.jwk, second.jwk])
    async with idp.verifier() as verifier:
        assert await outcome(verifier, first.token()) == "ok"
        # No trying key after key: a token must verify with the key its kid and alg select.
        assert await outcome(verifier, second.token()) == "token.bad_signature"


async def test_same_kid_on_keys_of_different_types_is_resolved_by_alg() -> None:
    rsa_key, ec_key = new_signer("rsa", "shared"), new_signer("ec", "shared")
    secret = b"s" * 32
    oct_key = {"kty": "oct", "kid": "shared", "k": b64(secret), "alg": "HS256"}
    idp = StubIdp([oct_key, ec_key.jwk, rsa_key.jwk])
    async with idp.verifier() as verifier:
        assert await outcome(verifier, rsa_key.token()) == "ok"
        assert await outcome(verifier, ec_key.token()) == "ok"
        # The EC key's signature under an RS256 header, and an HMAC with the oct key's secret.
        assert await outcome(verifier, forge(ec_key, "RS256")) == "token.bad_signature"
        assert await outcome(verifier, hs256(secret, "shared")) == "token.alg_not_allowed"
