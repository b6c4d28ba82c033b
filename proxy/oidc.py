"""Verification of OIDC bearer JWTs against an issuer's published JWKS.

Self-contained: depends only on ``httpx`` (to fetch the JWKS) and ``cryptography`` (for the
signature primitives). No Django.

Security decisions, in one place:

* Only asymmetric JWS algorithms exist in this module. ``none`` and every ``HS*`` algorithm are
  refused at configuration time and at verification time, and symmetric (``kty: oct``) JWKs are
  never loaded, so the classic RS256 -> HS256 key-confusion attack has nothing to work with.
* The header ``alg`` must be allowed by configuration *and* fit the selected key: RSA keys for
  RS*/PS*, EC keys on the matching curve for ES*, OKP Ed25519/Ed448 keys for EdDSA. A JWK's own
  ``alg`` (if present) must equal the header ``alg``; a JWK's ``use`` (if present) must be
  ``sig``; a JWK's ``key_ops`` (if present) must contain ``verify``. RSA keys under 2048 bits are
  ignored.
* The signature is checked before the payload is even parsed. Base64url is decoded strictly
  (the standard library decoder silently drops foreign characters; we do not).
* Numeric claims must be finite JSON numbers (``1e400`` decodes to ``inf`` in Python and would
  otherwise make a token immortal); ``NaN``/``Infinity`` literals are rejected outright.
* The JWKS is fetched lazily and cached. An unknown ``kid`` triggers at most one refetch per
  ``min_refresh_interval_seconds`` (every attempt, successful or not, counts), so spraying random
  kids cannot make us hammer the IdP. Concurrent callers share a single in-flight fetch, run as
  its own task so that a cancelled caller does not cancel it for everyone else.
* Fail closed: no keys and a failed fetch -> ``token.jwks_unavailable``. Once keys were fetched,
  a failed refresh keeps the previous key set in use.
* Error messages never contain the token. Attacker-controlled header/claim values are only ever
  shown through a truncated ``repr``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = [
    "ALG_NOT_ALLOWED",
    "BAD_AUDIENCE",
    "BAD_ISSUER",
    "BAD_SIGNATURE",
    "EXPIRED",
    "JWKS_UNAVAILABLE",
    "MALFORMED",
    "MISSING_CLAIM",
    "NOT_YET_VALID",
    "SUPPORTED_ALGORITHMS",
    "UNKNOWN_KID",
    "JwksVerifier",
    "OidcConfig",
    "TokenRejected",
    "VerifiedIdentity",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Error codes
# --------------------------------------------------------------------------------------------

EXPIRED: Final = "token.expired"
NOT_YET_VALID: Final = "token.not_yet_valid"
BAD_SIGNATURE: Final = "token.bad_signature"
BAD_ISSUER: Final = "token.bad_issuer"
BAD_AUDIENCE: Final = "token.bad_audience"
ALG_NOT_ALLOWED: Final = "token.alg_not_allowed"
UNKNOWN_KID: Final = "token.unknown_kid"
MALFORMED: Final = "token.malformed"
MISSING_CLAIM: Final = "token.missing_claim"
JWKS_UNAVAILABLE: Final = "token.jwks_unavailable"

#: Tokens longer than this are rejected as malformed before any work is done.
MAX_TOKEN_LENGTH: Final = 16 * 1024
#: A JWKS document larger than this is treated as a failed fetch.
MAX_JWKS_BYTES: Final = 1024 * 1024
#: RSA keys smaller than this are ignored when loading a JWKS.
MIN_RSA_KEY_BITS: Final = 2048


class TokenRejected(Exception):
    """A bearer token failed verification.

    ``code`` is machine readable (``token.*``); ``message`` is for humans and logs and never
    includes the token itself.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------
# Algorithms
# --------------------------------------------------------------------------------------------

_PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
_VerifyFn = Callable[[Any, bytes, bytes], None]  # (key, signature, signing_input); raises


@dataclass(frozen=True, slots=True)
class _AlgSpec:
    kty: str
    curves: frozenset[str]  # empty: any (RSA)
    verify: _VerifyFn


def _rsa_pkcs1(hash_alg: hashes.HashAlgorithm) -> _VerifyFn:
    pad = padding.PKCS1v15()

    def verify(key: rsa.RSAPublicKey, sig: bytes, msg: bytes) -> None:
        key.verify(sig, msg, pad, hash_alg)

    return verify


def _rsa_pss(hash_alg: hashes.HashAlgorithm) -> _VerifyFn:
    # RFC 7518 section 3.5: MGF1 with the same hash, salt length equal to the hash size.
    pad = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)

    def verify(key: rsa.RSAPublicKey, sig: bytes, msg: bytes) -> None:
        key.verify(sig, msg, pad, hash_alg)

    return verify


def _ecdsa(hash_alg: hashes.HashAlgorithm, coord_bytes: int) -> _VerifyFn:
    sig_alg = ec.ECDSA(hash_alg)

    def verify(key: ec.EllipticCurvePublicKey, sig: bytes, msg: bytes) -> None:
        # JWS carries ECDSA signatures as fixed-width R || S, not DER (RFC 7518 section 3.4).
        if len(sig) != 2 * coord_bytes:
            raise InvalidSignature
        r = int.from_bytes(sig[:coord_bytes], "big")
        s = int.from_bytes(sig[coord_bytes:], "big")
        key.verify(encode_dss_signature(r, s), msg, sig_alg)

    return verify


def _eddsa(key: ed25519.Ed25519PublicKey | ed448.Ed448PublicKey, sig: bytes, msg: bytes) -> None:
    key.verify(sig, msg)


_ANY: Final[frozenset[str]] = frozenset()
_ALGORITHMS: Final[Mapping[str, _AlgSpec]] = MappingProxyType(
    {
        "RS256": _AlgSpec("RSA", _ANY, _rsa_pkcs1(hashes.SHA256())),
        "RS384": _AlgSpec("RSA", _ANY, _rsa_pkcs1(hashes.SHA384())),
        "RS512": _AlgSpec("RSA", _ANY, _rsa_pkcs1(hashes.SHA512())),
        "PS256": _AlgSpec("RSA", _ANY, _rsa_pss(hashes.SHA256())),
        "PS384": _AlgSpec("RSA", _ANY, _rsa_pss(hashes.SHA384())),
        "PS512": _AlgSpec("RSA", _ANY, _rsa_pss(hashes.SHA512())),
        "ES256": _AlgSpec("EC", frozenset({"P-256"}), _ecdsa(hashes.SHA256(), 32)),
        "ES384": _AlgSpec("EC", frozenset({"P-384"}), _ecdsa(hashes.SHA384(), 48)),
        "ES512": _AlgSpec("EC", frozenset({"P-521"}), _ecdsa(hashes.SHA512(), 66)),
        "EdDSA": _AlgSpec("OKP", frozenset({"Ed25519", "Ed448"}), _eddsa),
    }
)
#: Every algorithm this module can verify; all of them asymmetric.
SUPPORTED_ALGORITHMS: Final[frozenset[str]] = frozenset(_ALGORITHMS)

_EC_CURVES: Final[Mapping[str, ec.EllipticCurve]] = MappingProxyType(
    {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
)

# --------------------------------------------------------------------------------------------
# Configuration and result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """Static configuration for one trusted issuer.

    ``audience`` may be a single string or a tuple; a token is accepted if its ``aud`` claim
    contains any of them. ``jwks_url`` must be ``https://`` unless it points at a loopback address
    or ``allow_insecure_jwks_url`` is set (development only: plain HTTP lets anyone on the path
    substitute signing keys). ``verified_cache_seconds`` bounds how long a successfully verified
    token is remembered (never beyond its ``exp``); ``0`` disables that cache.
    """

    issuer: str
    audience: str | tuple[str, ...]
    jwks_url: str
    groups_claim: str = "groups"
    username_claim: str = "preferred_username"
    allowed_algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    leeway_seconds: int = 30
    jwks_cache_seconds: int = 300
    min_refresh_interval_seconds: float = 10.0
    http_timeout_seconds: float = 3.0
    verified_cache_seconds: float = 60.0
    verified_cache_max_entries: int = 10_000
    allow_insecure_jwks_url: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ValueError("issuer must be a non-empty string")

        audience: tuple[str, ...]
        if isinstance(self.audience, str):
            audience = (self.audience,)
        else:
            audience = tuple(self.audience)
            object.__setattr__(self, "audience", audience)
        if not audience or not all(isinstance(a, str) and a for a in audience):
            raise ValueError("audience must be a non-empty string or tuple of non-empty strings")

        algs = (
            (self.allowed_algorithms,)
            if isinstance(self.allowed_algorithms, str)
            else tuple(self.allowed_algorithms)
        )
        object.__setattr__(self, "allowed_algorithms", algs)
        if not algs:
            raise ValueError("allowed_algorithms must not be empty")
        for alg in algs:
            if not isinstance(alg, str) or alg.lower() == "none" or alg.upper().startswith("HS"):
                raise ValueError(
                    f"algorithm {alg!r} is not allowed: only asymmetric signature algorithms "
                    "may be used to verify bearer tokens"
                )
            if alg not in _ALGORITHMS:
                raise ValueError(
                    f"unsupported algorithm {alg!r}; choose from {sorted(_ALGORITHMS)}"
                )

        _check_jwks_url(self.jwks_url, self.allow_insecure_jwks_url)

        for name in ("groups_claim", "username_claim"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        if self.leeway_seconds < 0:
            raise ValueError("leeway_seconds must be >= 0")
        if self.jwks_cache_seconds < 0:
            raise ValueError("jwks_cache_seconds must be >= 0")
        if self.min_refresh_interval_seconds < 0:
            raise ValueError("min_refresh_interval_seconds must be >= 0")
        if not self.http_timeout_seconds > 0:
            raise ValueError("http_timeout_seconds must be > 0")
        if self.verified_cache_seconds < 0 or self.verified_cache_max_entries < 0:
            raise ValueError("verified cache settings must be >= 0")


def _check_jwks_url(url: str, allow_insecure: bool) -> None:
    if not isinstance(url, str):
        raise ValueError("jwks_url must be a string")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("jwks_url must be an absolute http(s) URL")
    if parts.scheme == "https" or allow_insecure:
        return
    host = parts.hostname
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise ValueError(
            "jwks_url must use https (plain http is only accepted for loopback hosts, or with "
            "allow_insecure_jwks_url=True in development)"
        )


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """The caller identity established by a verified token.

    ``subject`` (``sub``) is the stable identifier to key authorization on; ``username`` is a
    display/audit name (``username_claim``, falling back to ``email`` then ``sub``) and may be
    user-editable at some IdPs. ``claims`` is a read-only view of the full payload.
    """

    subject: str
    username: str
    groups: tuple[str, ...]
    issuer: str
    expires_at: int
    claims: Mapping[str, Any] = field(hash=False)


# --------------------------------------------------------------------------------------------
# Token parsing helpers
# --------------------------------------------------------------------------------------------

_B64URL: Final = "[A-Za-z0-9_-]"
_JWT_RE: Final = re.compile(rf"({_B64URL}+)\.({_B64URL}+)\.({_B64URL}*)")
_B64URL_RE: Final = re.compile(rf"{_B64URL}*")


def _b64decode(segment: str) -> bytes:
    """Strict, unpadded base64url decoding. Raises ValueError."""
    if len(segment) % 4 == 1 or not _B64URL_RE.fullmatch(segment):
        raise ValueError("invalid base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error as exc:
        raise ValueError("invalid base64url") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite JSON constant {name}")


# One shared decoder: json.loads(..., parse_constant=...) would build a new one per call.
_JSON: Final = json.JSONDecoder(parse_constant=_reject_constant)


def _json_object(raw: bytes) -> dict[str, Any]:
    """Parse a UTF-8 JSON object; raises ValueError on anything else."""
    try:
        value = _JSON.decode(raw.decode("utf-8"))
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _show(value: object) -> str:
    """Render an attacker-controlled value for a message: repr, truncated."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected(MALFORMED, f"claim {name!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise TokenRejected(MALFORMED, f"claim {name!r} is not a finite number")
    return value


def _claim_path(claims: Mapping[str, Any], name: str) -> Any:
    """``claims[name]``, or a dotted path into nested objects (``realm_access.roles``)."""
    if name in claims:
        return claims[name]
    node: Any = claims
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


_GROUP_SPLIT: Final = re.compile(r"[\s,]+")


def _groups(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items: list[str] = _GROUP_SPLIT.split(value)
    elif isinstance(value, list):
        items = [item.strip() for item in value if isinstance(item, str)]
    else:
        return ()
    return tuple(dict.fromkeys(item for item in items if item))


# --------------------------------------------------------------------------------------------
# JWKS handling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: _PublicKey

    def fits(self, alg: str, spec: _AlgSpec) -> bool:
        return (
            self.kty == spec.kty
            and (not spec.curves or self.crv in spec.curves)
            and (self.alg is None or self.alg == alg)
        )


@dataclass(frozen=True, slots=True)
class _KeySet:
    by_kid: Mapping[str, tuple[_Key, ...]]
    keys: tuple[_Key, ...]
    fetched_at: float  # time.monotonic()


def _b64int(value: Any) -> int:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a base64url string")
    return int.from_bytes(_b64decode(value), "big")


def _parse_jwk(jwk: Any) -> _Key | None:
    """Turn one JWK into a public key object, or None if it is unusable for verification."""
    if not isinstance(jwk, dict):
        return None
    kty, kid, alg = jwk.get("kty"), jwk.get("kid"), jwk.get("alg")
    use, key_ops = jwk.get("use"), jwk.get("key_ops")
    if use is not None and use != "sig":
        return None  # encryption keys are routinely published alongside signing keys
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    if kid is not None and not isinstance(kid, str):
        return None
    if alg is not None and alg not in _ALGORITHMS:
        return None  # e.g. RSA-OAEP, HS256, or something we do not implement
    crv: str | None = None
    try:
        if kty == "RSA":
            rsa_key = rsa.RSAPublicNumbers(
                _b64int(jwk.get("e")), _b64int(jwk.get("n"))
            ).public_key()
            if rsa_key.key_size < MIN_RSA_KEY_BITS:
                logger.warning("ignoring %d-bit RSA JWK kid=%s", rsa_key.key_size, _show(kid))
                return None
            key: _PublicKey = rsa_key
        elif kty == "EC":
            crv = jwk.get("crv")
            curve = _EC_CURVES.get(crv) if isinstance(crv, str) else None
            if curve is None:
                return None
            key = ec.EllipticCurvePublicNumbers(
                _b64int(jwk.get("x")), _b64int(jwk.get("y")), curve
            ).public_key()
        elif kty == "OKP":
            crv = jwk.get("crv")
            x = jwk.get("x")
            if not isinstance(x, str):
                return None
            if crv == "Ed25519":
                key = ed25519.Ed25519PublicKey.from_public_bytes(_b64decode(x))
            elif crv == "Ed448":
                key = ed448.Ed448PublicKey.from_public_bytes(_b64decode(x))
            else:
                return None  # X25519/X448 are key-agreement keys
        else:
            return None  # "oct" (symmetric) keys are never loaded
    except (ValueError, TypeError) as exc:
        logger.warning("ignoring invalid %s JWK kid=%s: %s", _show(kty), _show(kid), exc)
        return None
    parsed = _Key(kid=kid, kty=kty, crv=crv, alg=alg, key=key)
    if alg is not None and not parsed.fits(alg, _ALGORITHMS[alg]):
        logger.warning("ignoring JWK kid=%s: alg %s does not fit the key", _show(kid), alg)
        return None
    return parsed


def _parse_jwks(document: Any, fetched_at: float) -> _KeySet:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("JWKS document has no 'keys' array")
    keys = tuple(k for k in map(_parse_jwk, document["keys"]) if k is not None)
    if not keys:
        raise ValueError("JWKS document contains no usable signing keys")
    by_kid: dict[str, tuple[_Key, ...]] = {}
    for k in keys:
        if k.kid is not None:
            by_kid[k.kid] = (*by_kid.get(k.kid, ()), k)
    return _KeySet(by_kid=MappingProxyType(by_kid), keys=keys, fetched_at=fetched_at)


# --------------------------------------------------------------------------------------------
# The verifier
# --------------------------------------------------------------------------------------------


class JwksVerifier:
    """Verifies bearer JWTs issued by one OIDC issuer.

    Safe to share for the process lifetime and across event loops: no event-loop-bound object is
    held between calls unless you pass ``http_client`` (then that client's loop rules apply).
    Without ``http_client`` a short-lived ``httpx.AsyncClient`` is created per JWKS fetch, which
    happens at most every ``jwks_cache_seconds`` plus rate-limited kid misses.

    ``clock`` (wall-clock seconds) exists for tests; it drives claim time checks and the
    verified-token cache.
    """

    def __init__(
        self,
        config: OidcConfig,
        *,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._client = http_client
        self._clock = clock
        self._audiences = frozenset(
            (config.audience,) if isinstance(config.audience, str) else config.audience
        )
        self._allowed = frozenset(config.allowed_algorithms)
        self._keyset: _KeySet | None = None
        self._last_attempt: float | None = None  # time.monotonic() of the last fetch start
        self._inflight: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._verified: dict[bytes, tuple[float, VerifiedIdentity]] = {}

    @property
    def config(self) -> OidcConfig:
        return self._config

    @staticmethod
    def looks_like_jwt(token: str) -> bool:
        """True if ``token`` is shaped like a compact JWS: three base64url segments.

        Cheap and purely syntactic; use it to route JWTs vs opaque tokens, never as a check.
        """
        return (
            isinstance(token, str)
            and len(token) <= MAX_TOKEN_LENGTH
            and _JWT_RE.fullmatch(token) is not None
        )

    async def verify(self, token: str) -> VerifiedIdentity:
        """Verify ``token`` and return the identity it asserts; raise TokenRejected otherwise."""
        cfg = self._config
        cache_key: bytes | None = None
        if cfg.verified_cache_seconds > 0 and isinstance(token, str):
            cache_key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
            hit = self._verified.get(cache_key)
            if hit is not None:
                if self._clock() < hit[0]:
                    return hit[1]
                self._verified.pop(cache_key, None)

        header, payload_raw, signing_input, signature = _split_token(token)

        alg = header.get("alg")
        if not isinstance(alg, str):
            raise TokenRejected(MALFORMED, "token header has no 'alg'")
        if alg not in self._allowed:
            raise TokenRejected(ALG_NOT_ALLOWED, f"algorithm {_show(alg)} is not allowed")
        if "crit" in header:
            raise TokenRejected(MALFORMED, "token header uses unsupported 'crit' extensions")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected(MALFORMED, "token header 'kid' is not a string")
        if not signature:
            raise TokenRejected(BAD_SIGNATURE, "token has an empty signature")

        spec = _ALGORITHMS[alg]
        key = await self._select_key(kid, alg, spec)
        try:
            spec.verify(key.key, signature, signing_input)
        except InvalidSignature:
            raise TokenRejected(BAD_SIGNATURE, "token signature is invalid") from None

        try:
            claims = _json_object(payload_raw)
        except ValueError:
            raise TokenRejected(MALFORMED, "token payload is not a JSON object") from None
        identity = self._check_claims(claims)

        if cache_key is not None:
            self._remember(cache_key, identity)
        return identity

    # -- claims -------------------------------------------------------------------------------

    def _check_claims(self, claims: dict[str, Any]) -> VerifiedIdentity:
        cfg = self._config
        iss = claims.get("iss")
        if iss != cfg.issuer:
            raise TokenRejected(BAD_ISSUER, f"issuer {_show(iss)} is not trusted")

        aud = claims.get("aud")
        if isinstance(aud, str):
            token_auds: tuple[Any, ...] = (aud,)
        elif isinstance(aud, list):
            token_auds = tuple(aud)
        else:
            raise TokenRejected(BAD_AUDIENCE, "token has no valid 'aud' claim")
        if not any(isinstance(a, str) and a in self._audiences for a in token_auds):
            raise TokenRejected(BAD_AUDIENCE, "token is not intended for this audience")

        now = self._clock()
        leeway = cfg.leeway_seconds
        exp = _numeric_date(claims, "exp")
        if exp is None:
            raise TokenRejected(MISSING_CLAIM, "token has no 'exp' claim")
        if now >= exp + leeway:
            raise TokenRejected(EXPIRED, "token has expired")
        nbf = _numeric_date(claims, "nbf")
        if nbf is not None and nbf > now + leeway:
            raise TokenRejected(NOT_YET_VALID, "token is not valid yet (nbf)")
        iat = _numeric_date(claims, "iat")
        if iat is not None and iat > now + leeway:
            raise TokenRejected(NOT_YET_VALID, "token was issued in the future (iat)")

        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise TokenRejected(MISSING_CLAIM, "token has no 'sub' claim")

        username = sub
        for name in (cfg.username_claim, "email"):
            value = claims.get(name)
            if isinstance(value, str) and value:
                username = value
                break

        return VerifiedIdentity(
            subject=sub,
            username=username,
            groups=_groups(_claim_path(claims, cfg.groups_claim)),
            issuer=cfg.issuer,
            expires_at=math.floor(exp),
            claims=MappingProxyType(claims),
        )

    # -- verified-token cache -----------------------------------------------------------------

    def _remember(self, cache_key: bytes, identity: VerifiedIdentity) -> None:
        cfg = self._config
        now = self._clock()
        # Never past exp (without leeway): a hit must not outlive the token.
        until = min(float(identity.claims["exp"]), now + cfg.verified_cache_seconds)
        if until <= now or cfg.verified_cache_max_entries == 0:
            return
        cache = self._verified
        if len(cache) >= cfg.verified_cache_max_entries:
            for k, (expiry, _) in list(cache.items()):
                if expiry <= now:
                    cache.pop(k, None)
            while len(cache) >= cfg.verified_cache_max_entries:
                try:
                    cache.pop(next(iter(cache)), None)  # oldest insertion first
                except (StopIteration, RuntimeError):
                    break
        cache[cache_key] = (until, identity)

    # -- keys ---------------------------------------------------------------------------------

    async def _select_key(self, kid: str | None, alg: str, spec: _AlgSpec) -> _Key:
        keyset = self._keyset
        max_age = self._config.jwks_cache_seconds
        if keyset is None or time.monotonic() - keyset.fetched_at >= max_age:
            await self._refresh()
            keyset = self._keyset
            if keyset is None:
                raise TokenRejected(JWKS_UNAVAILABLE, "the issuer's signing keys are unavailable")

        if kid is None:
            fitting = [k for k in keyset.keys if k.fits(alg, spec)]
            if len(fitting) == 1:
                return fitting[0]
            raise TokenRejected(
                UNKNOWN_KID,
                f"token has no 'kid' and the JWKS has {len(fitting)} keys usable with {alg}",
            )

        candidates = keyset.by_kid.get(kid)
        if candidates is None and await self._refresh():
            keyset = self._keyset
            candidates = keyset.by_kid.get(kid) if keyset is not None else None
        if candidates is None:
            raise TokenRejected(UNKNOWN_KID, f"no signing key with kid {_show(kid)}")
        for key in candidates:
            if key.fits(alg, spec):
                return key
        raise TokenRejected(
            ALG_NOT_ALLOWED, f"algorithm {alg} does not match the key with kid {_show(kid)}"
        )

    async def _refresh(self) -> bool:
        """Join the in-flight JWKS fetch or start one if the rate limit allows.

        Returns False when no fetch happened because of the rate limit. Never raises for fetch
        failures; callers inspect ``self._keyset`` afterwards.
        """
        loop = asyncio.get_running_loop()
        task = self._inflight.get(loop)
        if task is None or task.done():
            now = time.monotonic()
            last = self._last_attempt
            if last is not None and now - last < self._config.min_refresh_interval_seconds:
                return False
            self._last_attempt = now
            task = loop.create_task(self._fetch_and_install(), name="wardgate-jwks-fetch")
            self._inflight[loop] = task

            def _forget(done: asyncio.Task[None]) -> None:
                if self._inflight.get(loop) is done:
                    del self._inflight[loop]

            task.add_done_callback(_forget)
        # shield: a caller being cancelled must not cancel the fetch other callers wait on.
        await asyncio.shield(task)
        return True

    async def _fetch_and_install(self) -> None:
        url = self._config.jwks_url
        try:
            async with asyncio.timeout(self._config.http_timeout_seconds):
                document = await self._fetch_document()
            keyset = _parse_jwks(document, time.monotonic())
        except Exception as exc:  # noqa: BLE001 - any failure means "keep what we have"
            logger.warning(
                "JWKS fetch from %s failed (%s: %s); %s",
                url,
                type(exc).__name__,
                exc,
                "keeping cached keys" if self._keyset is not None else "no keys available",
            )
            return
        self._keyset = keyset
        logger.info("loaded %d signing keys from %s", len(keyset.keys), url)

    async def _fetch_document(self) -> Any:
        if self._client is not None:
            return await self._get(self._client)
        timeout = self._config.http_timeout_seconds
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            return await self._get(client)

    async def _get(self, client: httpx.AsyncClient) -> Any:
        headers = {"Accept": "application/json, application/jwk-set+json"}
        async with client.stream("GET", self._config.jwks_url, headers=headers) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS document too large")
        return _json_object(bytes(body))


@functools.lru_cache(maxsize=256)
def _parse_header(segment: str) -> Mapping[str, Any]:
    """Decode a JOSE header segment. Cached: all tokens signed by one key share their header."""
    try:
        return MappingProxyType(_json_object(_b64decode(segment)))
    except ValueError:
        raise TokenRejected(MALFORMED, "token header is not a base64url JSON object") from None


def _split_token(token: str) -> tuple[Mapping[str, Any], bytes, bytes, bytes]:
    """Split and decode a compact JWS: (header, payload bytes, signing input, signature).

    The payload is only decoded from base64 here; it is parsed after the signature is checked.
    """
    if not isinstance(token, str) or not token:
        raise TokenRejected(MALFORMED, "token is empty or not a string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRejected(MALFORMED, "token is too long")
    match = _JWT_RE.fullmatch(token)
    if match is None:
        raise TokenRejected(MALFORMED, "token is not three base64url segments")
    header_b64, payload_b64, signature_b64 = match.groups()
    header = _parse_header(header_b64)
    try:
        payload = _b64decode(payload_b64)
        signature = _b64decode(signature_b64)
    except ValueError:
        raise TokenRejected(MALFORMED, "token payload or signature is not base64url") from None
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    return header, payload, signing_input, signature
