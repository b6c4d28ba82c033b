"""An issuer's signing keys: which JWKs we accept, and how we fetch and cache them.

PyJWT turns each accepted JWK into a key (``jwt.PyJWK``); the rest is our policy.

Keys:
* Symmetric (``kty: oct``) JWKs are never loaded, so an HS* token has no key to be checked with.
* A key serves only the algorithms that fit it: RSA keys for RS*/PS*, EC keys on the matching
  curve for ES*, OKP Ed25519/Ed448 keys for EdDSA. A JWK's own ``alg`` (if present) narrows that
  to one; ``use`` (if present) must be ``sig``; ``key_ops`` (if present) must contain ``verify``.
* Only a JWK's public members reach PyJWT (a published ``d`` is ignored). RSA keys outside
  2048..16384 bits are ignored; so is any key PyJWT cannot load. One bad key never sinks the
  good keys published next to it.

Fetching:
* The URL is ``https://`` unless it is a loopback address or a development switch says
  otherwise (``check_jwks_url``, at configuration time). Redirects are not followed.
* A document larger than ``MAX_JWKS_BYTES``, slower than the timeout, not HTTP 200, not JSON, or
  without a usable key counts as a failed fetch.
* Keys are fetched lazily and cached for ``max_age_seconds``. A refetch (stale cache or unknown
  ``kid``) happens at most once per ``min_refresh_interval_seconds``; every attempt, successful or
  not, counts, so spraying random kids cannot make us hammer the IdP. Concurrent callers share a
  single in-flight fetch, run as its own task so that a cancelled caller does not cancel it for
  everyone else.
* Fail closed: until a fetch succeeds there are no keys. Once keys were fetched, a failed
  refresh keeps the previous key set in use.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import jwt

__all__ = [
    "MAX_JWKS_BYTES",
    "MAX_RSA_KEY_BITS",
    "MIN_RSA_KEY_BITS",
    "SUPPORTED_ALGORITHMS",
    "JwksKey",
    "KeySet",
    "RemoteKeySet",
    "check_jwks_url",
    "parse_json_object",
    "show_untrusted",
]

logger = logging.getLogger(__name__)

#: A JWKS document larger than this is treated as a failed fetch.
MAX_JWKS_BYTES: Final = 1024 * 1024
#: RSA keys smaller than this are ignored when loading a JWKS.
MIN_RSA_KEY_BITS: Final = 2048
#: RSA keys larger than this are ignored too: OpenSSL refuses to verify with them anyway.
MAX_RSA_KEY_BITS: Final = 16384


@dataclass(frozen=True, slots=True)
class _KeyNeed:
    kty: str
    curves: frozenset[str]  # empty: any (RSA)


_RSA: Final = _KeyNeed("RSA", frozenset())
_KEY_FOR_ALGORITHM: Final[Mapping[str, _KeyNeed]] = MappingProxyType(
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
#: Every algorithm a key can be loaded for; all of them asymmetric.
SUPPORTED_ALGORITHMS: Final[frozenset[str]] = frozenset(_KEY_FOR_ALGORITHM)

#: The members of a public JWK, per key type. Nothing else (``d``, ``k``...) reaches PyJWT.
_PUBLIC_MEMBERS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
)


def check_jwks_url(url: str, allow_insecure: bool) -> None:
    """Raise ValueError unless ``url`` is https, or http to a loopback host, or allowed anyway."""
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


def show_untrusted(value: object) -> str:
    """Render an attacker-controlled value for a message or log line: repr, truncated."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite JSON constant {name}")


# One shared decoder: json.loads(..., parse_constant=...) would build a new one per call.
_JSON: Final = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a UTF-8 JSON object without NaN/Infinity; raises ValueError on anything else."""
    try:
        value = _JSON.decode(raw.decode("utf-8"))
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JwksKey:
    """One usable signing key: its public JWK and the algorithms it may verify."""

    kid: str | None
    public_jwk: Mapping[str, str]
    algorithms: frozenset[str]
    # PyJWK binds one algorithm per object; an unlabelled RSA key serves RS* and PS* alike.
    _bound: dict[str, jwt.PyJWK] = field(default_factory=dict, compare=False, repr=False)

    def fits(self, alg: str) -> bool:
        return alg in self.algorithms

    def for_algorithm(self, alg: str) -> jwt.PyJWK:
        """The key as PyJWT verifies with it, bound to ``alg`` (which must fit)."""
        bound = self._bound.get(alg)
        if bound is None:
            bound = self._bound[alg] = jwt.PyJWK(dict(self.public_jwk), algorithm=alg)
        return bound


@dataclass(frozen=True, slots=True)
class KeySet:
    by_kid: Mapping[str, tuple[JwksKey, ...]]
    keys: tuple[JwksKey, ...]
    fetched_at: float  # time.monotonic()


def _parse_jwk(jwk: Any) -> JwksKey | None:
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
    if alg is not None and alg not in _KEY_FOR_ALGORITHM:
        return None  # e.g. RSA-OAEP, HS256, or something we do not implement
    members = _PUBLIC_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        return None  # "oct" (symmetric) keys are never loaded
    public = {"kty": kty, **{name: jwk.get(name) for name in members}}
    if not all(isinstance(value, str) and value for value in public.values()):
        logger.warning("ignoring %s JWK kid=%s: missing public members", kty, show_untrusted(kid))
        return None
    crv = public.get("crv")
    algorithms = frozenset(
        name
        for name, need in _KEY_FOR_ALGORITHM.items()
        if need.kty == kty and (not need.curves or crv in need.curves) and alg in (None, name)
    )
    if not algorithms:
        if alg is not None:
            logger.warning(
                "ignoring JWK kid=%s: alg %s does not fit the key", show_untrusted(kid), alg
            )
        return None  # otherwise a curve we do not verify with (X25519, secp256k1...)
    key = JwksKey(kid=kid, public_jwk=MappingProxyType(public), algorithms=algorithms)
    try:
        loaded = key.for_algorithm(min(algorithms)).key  # PyJWT validates the key material
    except Exception as exc:  # noqa: BLE001 - one unusable key must not sink the whole set
        logger.warning("ignoring invalid %s JWK kid=%s: %s", kty, show_untrusted(kid), exc)
        return None
    if kty == "RSA" and not MIN_RSA_KEY_BITS <= loaded.key_size <= MAX_RSA_KEY_BITS:
        logger.warning("ignoring %d-bit RSA JWK kid=%s", loaded.key_size, show_untrusted(kid))
        return None
    return key


def _parse_jwks(document: Any, fetched_at: float) -> KeySet:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("JWKS document has no 'keys' array")
    keys = tuple(k for k in map(_parse_jwk, document["keys"]) if k is not None)
    if not keys:
        raise ValueError("JWKS document contains no usable signing keys")
    by_kid: dict[str, tuple[JwksKey, ...]] = {}
    for k in keys:
        if k.kid is not None:
            by_kid[k.kid] = (*by_kid.get(k.kid, ()), k)
    return KeySet(by_kid=MappingProxyType(by_kid), keys=keys, fetched_at=fetched_at)


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


class RemoteKeySet:
    """The key set published at one JWKS URL, fetched lazily and cached.

    Safe to share for the process lifetime and across event loops: no event-loop-bound object is
    held between calls unless you pass ``http_client`` (then that client's loop rules apply).
    Without ``http_client`` a short-lived ``httpx.AsyncClient`` is created per fetch.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float,
        max_age_seconds: float,
        min_refresh_interval_seconds: float,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = url
        self._timeout = timeout_seconds
        self._max_age = max_age_seconds
        self._min_refresh_interval = min_refresh_interval_seconds
        self._client = http_client
        self._keyset: KeySet | None = None
        self._last_attempt: float | None = None  # time.monotonic() of the last fetch start
        self._inflight: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    async def current(self) -> KeySet | None:
        """The cached key set, refetched first if stale (rate limit permitting); None: no keys."""
        keyset = self._keyset
        if keyset is None or time.monotonic() - keyset.fetched_at >= self._max_age:
            await self._refresh()
        return self._keyset

    async def refreshed(self) -> KeySet | None:
        """The key set after a refetch, or as it is when the rate limit does not allow one."""
        await self._refresh()
        return self._keyset

    async def _refresh(self) -> None:
        """Join the in-flight fetch or start one if the rate limit allows.

        Never raises for fetch failures; callers inspect ``self._keyset`` afterwards.
        """
        loop = asyncio.get_running_loop()
        task = self._inflight.get(loop)
        if task is None or task.done():
            now = time.monotonic()
            last = self._last_attempt
            if last is not None and now - last < self._min_refresh_interval:
                return
            self._last_attempt = now
            task = loop.create_task(self._fetch_and_install(), name="wardgate-jwks-fetch")
            self._inflight[loop] = task

            def _forget(done: asyncio.Task[None]) -> None:
                if self._inflight.get(loop) is done:
                    del self._inflight[loop]

            task.add_done_callback(_forget)
        # shield: a caller being cancelled must not cancel the fetch other callers wait on.
        await asyncio.shield(task)

    async def _fetch_and_install(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                document = await self._fetch_document()
            keyset = _parse_jwks(document, time.monotonic())
        except Exception as exc:  # noqa: BLE001 - any failure means "keep what we have"
            logger.warning(
                "JWKS fetch from %s failed (%s: %s); %s",
                self._url,
                type(exc).__name__,
                exc,
                "keeping cached keys" if self._keyset is not None else "no keys available",
            )
            return
        self._keyset = keyset
        logger.info("loaded %d signing keys from %s", len(keyset.keys), self._url)

    async def _fetch_document(self) -> Any:
        if self._client is not None:
            return await self._get(self._client)
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            return await self._get(client)

    async def _get(self, client: httpx.AsyncClient) -> Any:
        headers = {"Accept": "application/json, application/jwk-set+json"}
        async with client.stream("GET", self._url, headers=headers) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS document too large")
        return parse_json_object(bytes(body))
