"""Verification of OIDC bearer JWTs against an issuer's published JWKS.

PyJWT (with ``cryptography``) does the JOSE work: splitting and decoding the compact JWS, turning
JWKs into keys, checking signatures, ``iss`` and ``aud``. This module holds only our policy:

* Only asymmetric algorithms exist here. ``none`` and every ``HS*`` algorithm are refused at
  configuration time and at verification time, and symmetric (``kty: oct``) JWKs are never
  loaded, so the classic RS256 -> HS256 key-confusion attack has nothing to work with.
* The header ``alg`` must be allowed by configuration *and* fit the selected key: RSA keys for
  RS*/PS*, EC keys on the matching curve for ES*, OKP Ed25519/Ed448 keys for EdDSA. A JWK's own
  ``alg`` (if present) must equal the header ``alg``; a JWK's ``use`` (if present) must be
  ``sig``; a JWK's ``key_ops`` (if present) must contain ``verify``. Only a JWK's public members
  reach PyJWT (a published ``d`` is ignored). RSA keys outside 2048..16384 bits are ignored.
* The token's shape is checked before PyJWT sees it: at most ``MAX_TOKEN_LENGTH`` characters,
  three unpadded base64url segments, no ``crit`` header.
* Time claims are checked here, on the verifier's clock, and must be finite JSON numbers (``1e400``
  decodes to ``inf`` in Python and would otherwise make a token immortal); ``NaN``/``Infinity``
  literals are refused anywhere in the payload.
* The JWKS is fetched lazily (https only, except loopback or an explicit development switch;
  at most ``MAX_JWKS_BYTES``; within ``http_timeout_seconds``) and cached. An unknown ``kid``
  triggers at most one refetch per ``min_refresh_interval_seconds`` (every attempt, successful or
  not, counts), so spraying random kids cannot make us hammer the IdP. Concurrent callers share
  a single in-flight fetch, run as its own task so that a cancelled caller does not cancel it
  for everyone else.
* Fail closed: no keys and a failed fetch -> ``token.jwks_unavailable``. Once keys were fetched,
  a failed refresh keeps the previous key set in use.
* Error messages never contain the token. Attacker-controlled header/claim values are only ever
  shown through a truncated ``repr``.
"""

from __future__ import annotations

import asyncio
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
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import httpx
import jwt

if TYPE_CHECKING:
    from jwt.types import Options

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
# Error codes and limits
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
#: RSA keys larger than this are ignored too: OpenSSL refuses to verify with them anyway.
MAX_RSA_KEY_BITS: Final = 16384


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
# Algorithms: the key each one needs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _KeyNeed:
    kty: str
    curves: frozenset[str]  # empty: any (RSA)


_RSA: Final = _KeyNeed("RSA", frozenset())
_ALGORITHMS: Final[Mapping[str, _KeyNeed]] = MappingProxyType(
    {
        "RS256": _RSA,
        "RS384": _RSA,
        "RS512": _RSA,
        "PS256": _RSA,
        "PS384": _RSA,
        "PS512": _RSA,
        "ES256": _KeyNeed("EC", frozenset({"P-256"})),
        "ES384": _KeyNeed("EC", frozenset({"P-384"})),
        "ES512": _KeyNeed("EC", frozenset({"P-521"})),
        "EdDSA": _KeyNeed("OKP", frozenset({"Ed25519", "Ed448"})),
    }
)
#: Every algorithm this module can verify; all of them asymmetric.
SUPPORTED_ALGORITHMS: Final[frozenset[str]] = frozenset(_ALGORITHMS)

#: The members of a public JWK, per key type. Nothing else (``d``, ``k``...) reaches PyJWT.
_PUBLIC_MEMBERS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
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
# Helpers
# --------------------------------------------------------------------------------------------

# The shape of a compact JWS, unpadded: PyJWT would also accept trailing '=' padding.
_JWT_RE: Final = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite JSON constant {name}")


# One shared decoder: json.loads(..., parse_constant=...) would build a new one per call.
_JSON: Final = json.JSONDecoder(parse_constant=_reject_constant)


def _json_object(raw: bytes) -> dict[str, Any]:
    """Parse a UTF-8 JSON object without NaN/Infinity; raises ValueError on anything else."""
    try:
        value = _JSON.decode(raw.decode("utf-8"))
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


class _StrictPayloadJWT(jwt.PyJWT):
    """PyJWT parsing the payload as strictly as the JWKS: UTF-8, no NaN/Infinity literals."""

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        try:
            return _json_object(decoded["payload"])
        except ValueError as exc:
            raise jwt.DecodeError(f"Invalid payload string: {exc}") from None


_JWT: Final = _StrictPayloadJWT()

# PyJWT checks the signature, 'iss' and 'aud'. The time claims are ours: they run on the
# verifier's clock and must be finite numbers, where PyJWT's int() would take "1700000000" or
# true. 'sub' is ours too, checked after the time claims as it always was.
_DECODE_OPTIONS: Final[Options] = {
    "verify_signature": True,
    "verify_iss": True,
    "verify_aud": True,
    "strict_aud": False,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}


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


def _read_header(token: Any) -> Mapping[str, Any]:
    """The token's JOSE header, once the token has the shape we accept."""
    if not isinstance(token, str) or not token:
        raise TokenRejected(MALFORMED, "token is empty or not a string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRejected(MALFORMED, "token is too long")
    if _JWT_RE.fullmatch(token) is None:
        raise TokenRejected(MALFORMED, "token is not three base64url segments")
    try:
        return jwt.get_unverified_header(token)
    except (jwt.DecodeError, RecursionError) as exc:
        # PyJWT names the segment it could not decode ("Invalid header padding", ...).
        if "header" in str(exc).lower() or isinstance(exc, RecursionError):
            message = "token header is not a base64url JSON object"
        else:
            message = "token payload or signature is not base64url"
        raise TokenRejected(MALFORMED, message) from None
    except jwt.InvalidTokenError as exc:  # PyJWT's own header checks: 'kid' and 'crit'
        if "crit" in str(exc).lower():
            message = "token header uses unsupported 'crit' extensions"
        else:
            message = "token header 'kid' is not a string"
        raise TokenRejected(MALFORMED, message) from None


def _claim_rejection(error: jwt.InvalidTokenError, token: str) -> TokenRejected:
    """Word PyJWT's issuer/audience failure as we always have, showing the claimed value."""
    try:
        # PyJWT checks claims only once the signature is good, so this payload is authentic.
        claims = _JWT.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        claims = {}
    issuer_failed = isinstance(error, jwt.InvalidIssuerError) or (
        isinstance(error, jwt.MissingRequiredClaimError) and error.claim == "iss"
    )
    if issuer_failed:
        return TokenRejected(BAD_ISSUER, f"issuer {_show(claims.get('iss'))} is not trusted")
    if isinstance(claims.get("aud"), str | list):
        return TokenRejected(BAD_AUDIENCE, "token is not intended for this audience")
    return TokenRejected(BAD_AUDIENCE, "token has no valid 'aud' claim")


# --------------------------------------------------------------------------------------------
# JWKS handling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    """One usable signing key: its public JWK and the algorithms it may verify."""

    kid: str | None
    public_jwk: Mapping[str, str]
    algorithms: frozenset[str]
    # PyJWK binds one algorithm per object; an unlabelled RSA key serves RS* and PS* alike.
    _bound: dict[str, jwt.PyJWK] = field(default_factory=dict, compare=False, repr=False)

    def fits(self, alg: str) -> bool:
        return alg in self.algorithms

    def for_algorithm(self, alg: str) -> jwt.PyJWK:
        bound = self._bound.get(alg)
        if bound is None:
            bound = self._bound[alg] = jwt.PyJWK(dict(self.public_jwk), algorithm=alg)
        return bound


@dataclass(frozen=True, slots=True)
class _KeySet:
    by_kid: Mapping[str, tuple[_Key, ...]]
    keys: tuple[_Key, ...]
    fetched_at: float  # time.monotonic()


def _parse_jwk(jwk: Any) -> _Key | None:
    """Our policy for one JWK: the key, or None if it must not be used for verification."""
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
    members = _PUBLIC_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        return None  # "oct" (symmetric) keys are never loaded
    public = {"kty": kty, **{name: jwk.get(name) for name in members}}
    if not all(isinstance(value, str) and value for value in public.values()):
        logger.warning("ignoring %s JWK kid=%s: missing public members", kty, _show(kid))
        return None
    crv = public.get("crv")
    algorithms = frozenset(
        name
        for name, need in _ALGORITHMS.items()
        if need.kty == kty and (not need.curves or crv in need.curves) and alg in (None, name)
    )
    if not algorithms:
        if alg is not None:
            logger.warning("ignoring JWK kid=%s: alg %s does not fit the key", _show(kid), alg)
        return None  # otherwise a curve we do not verify with (X25519, secp256k1...)
    key = _Key(kid=kid, public_jwk=MappingProxyType(public), algorithms=algorithms)
    try:
        loaded = key.for_algorithm(min(algorithms)).key  # PyJWT validates the key material
    except Exception as exc:  # noqa: BLE001 - one unusable key must not sink the whole set
        logger.warning("ignoring invalid %s JWK kid=%s: %s", kty, _show(kid), exc)
        return None
    if kty == "RSA" and not MIN_RSA_KEY_BITS <= loaded.key_size <= MAX_RSA_KEY_BITS:
        logger.warning("ignoring %d-bit RSA JWK kid=%s", loaded.key_size, _show(kid))
        return None
    return key


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

        header = _read_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise TokenRejected(MALFORMED, "token header has no 'alg'")
        if alg not in self._allowed:
            raise TokenRejected(ALG_NOT_ALLOWED, f"algorithm {_show(alg)} is not allowed")
        if "crit" in header:
            raise TokenRejected(MALFORMED, "token header uses unsupported 'crit' extensions")
        kid = header.get("kid")  # PyJWT has checked it is a string when present
        if token.endswith("."):
            raise TokenRejected(BAD_SIGNATURE, "token has an empty signature")

        key = await self._select_key(kid, alg)
        claims = self._decode(token, key.for_algorithm(alg), alg)
        identity = self._check_claims(claims)

        if cache_key is not None:
            self._remember(cache_key, identity)
        return identity

    # -- signature, issuer and audience (PyJWT) -------------------------------------------------

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        cfg = self._config
        try:
            return _JWT.decode(
                token,
                key,
                algorithms=[alg],
                audience=cfg.audience,
                issuer=cfg.issuer,
                options=_DECODE_OPTIONS,
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected(BAD_SIGNATURE, "token signature is invalid") from None
        except jwt.DecodeError:  # the signature is good: only the payload can be at fault
            raise TokenRejected(MALFORMED, "token payload is not a JSON object") from None
        except (
            jwt.InvalidIssuerError,
            jwt.InvalidAudienceError,
            jwt.MissingRequiredClaimError,
        ) as exc:
            raise _claim_rejection(exc, token) from None
        except jwt.InvalidAlgorithmError:  # we chose key and algorithm together: never expected
            raise TokenRejected(
                ALG_NOT_ALLOWED, f"algorithm {alg} does not match the selected key"
            ) from None
        except jwt.PyJWTError as exc:
            raise TokenRejected(MALFORMED, f"token refused: {type(exc).__name__}") from None

    # -- our claims policy ----------------------------------------------------------------------

    def _check_claims(self, claims: dict[str, Any]) -> VerifiedIdentity:
        cfg = self._config
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

    async def _select_key(self, kid: str | None, alg: str) -> _Key:
        keyset = self._keyset
        max_age = self._config.jwks_cache_seconds
        if keyset is None or time.monotonic() - keyset.fetched_at >= max_age:
            await self._refresh()
            keyset = self._keyset
            if keyset is None:
                raise TokenRejected(JWKS_UNAVAILABLE, "the issuer's signing keys are unavailable")

        if kid is None:
            fitting = [k for k in keyset.keys if k.fits(alg)]
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
            if key.fits(alg):
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
