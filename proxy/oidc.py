"""Verification of OIDC bearer JWTs issued by one trusted issuer.

PyJWT (with ``cryptography``) does the JOSE work: decoding the compact JWS, checking the
signature, ``iss`` and ``aud``. proxy.jwks holds our key policy and fetches the issuer's keys.
This module holds the rest of our policy:

* Only asymmetric algorithms exist here. ``none`` and every ``HS*`` algorithm are refused at
  configuration time and at verification time; symmetric JWKs are never loaded (proxy.jwks), so
  the classic RS256 -> HS256 key-confusion attack has nothing to work with.
* The header ``alg`` must be allowed by configuration *and* fit the key its ``kid`` selects
  (type, curve, the JWK's own ``alg``). A token without ``kid`` needs exactly one fitting key.
  An unknown ``kid`` may trigger one rate-limited JWKS refetch.
* The token's shape is checked before PyJWT sees it: at most ``MAX_TOKEN_LENGTH`` characters,
  three unpadded base64url segments, no ``crit`` header.
* Time claims are checked here, on the verifier's clock, and must be finite JSON numbers
  (``1e400`` decodes to ``inf`` in Python and would otherwise make a token immortal);
  ``NaN``/``Infinity`` literals are refused anywhere in the payload. ``exp`` and ``sub`` are
  required.
* Fail closed: no keys -> ``token.jwks_unavailable``. Error messages never contain the token;
  attacker-controlled header/claim values are only shown through a truncated ``repr``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import httpx
import jwt

from proxy.jwks import (
    SUPPORTED_ALGORITHMS,
    JwksKey,
    RemoteKeySet,
    check_jwks_url,
    parse_json_object,
    show_untrusted,
)

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
            if alg not in SUPPORTED_ALGORITHMS:
                raise ValueError(
                    f"unsupported algorithm {alg!r}; choose from {sorted(SUPPORTED_ALGORITHMS)}"
                )

        check_jwks_url(self.jwks_url, self.allow_insecure_jwks_url)

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


class _PayloadNotJson(jwt.DecodeError):
    pass


class _StrictPayloadJWT(jwt.PyJWT):
    """PyJWT parsing the payload as strictly as the JWKS: UTF-8, no NaN/Infinity literals."""

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        try:
            return parse_json_object(decoded["payload"])
        except ValueError as exc:
            raise _PayloadNotJson(f"Invalid payload string: {exc}") from None


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
    match = _JWT_RE.fullmatch(token)
    if match is None:
        raise TokenRejected(MALFORMED, "token is not three base64url segments")
    header_b64, payload_b64, signature_b64 = match.groups()
    if len(payload_b64) % 4 == 1 or len(signature_b64) % 4 == 1:  # no such base64 length
        raise TokenRejected(MALFORMED, "token payload or signature is not base64url")
    return _parse_header(header_b64)


@functools.lru_cache(maxsize=256)
def _parse_header(segment: str) -> Mapping[str, Any]:
    """Decode a JOSE header segment. Cached: all tokens signed by one key share their header.

    PyJWT is handed the header alone: it would otherwise decode the whole token here and again
    when verifying, and its decoder is slow enough per character to matter under a kid spray.
    """
    try:
        return MappingProxyType(jwt.get_unverified_header(f"{segment}.."))
    except (jwt.DecodeError, RecursionError):
        raise TokenRejected(MALFORMED, "token header is not a base64url JSON object") from None
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
        return TokenRejected(
            BAD_ISSUER, f"issuer {show_untrusted(claims.get('iss'))} is not trusted"
        )
    if isinstance(claims.get("aud"), str | list):
        return TokenRejected(BAD_AUDIENCE, "token is not intended for this audience")
    return TokenRejected(BAD_AUDIENCE, "token has no valid 'aud' claim")


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
        self._clock = clock
        self._allowed = frozenset(config.allowed_algorithms)
        self._keys = RemoteKeySet(
            config.jwks_url,
            timeout_seconds=config.http_timeout_seconds,
            max_age_seconds=config.jwks_cache_seconds,
            min_refresh_interval_seconds=config.min_refresh_interval_seconds,
            http_client=http_client,
        )
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
            raise TokenRejected(ALG_NOT_ALLOWED, f"algorithm {show_untrusted(alg)} is not allowed")
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
        except _PayloadNotJson:
            raise TokenRejected(MALFORMED, "token payload is not a JSON object") from None
        except jwt.DecodeError:  # e.g. base64url with stray bits (non-canonical)
            raise TokenRejected(MALFORMED, "token payload or signature is not base64url") from None
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

    async def _select_key(self, kid: str | None, alg: str) -> JwksKey:
        keyset = await self._keys.current()
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
        if candidates is None:  # the issuer may have rotated keys since we fetched them
            keyset = await self._keys.refreshed()
            candidates = keyset.by_kid.get(kid) if keyset is not None else None
        if candidates is None:
            raise TokenRejected(UNKNOWN_KID, f"no signing key with kid {show_untrusted(kid)}")
        for key in candidates:  # the first that fits: no trying key after key
            if key.fits(alg):
                return key
        raise TokenRejected(
            ALG_NOT_ALLOWED,
            f"algorithm {alg} does not match the key with kid {show_untrusted(kid)}",
        )
