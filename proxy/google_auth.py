"""Google access tokens for upstreams that want one (the BigQuery remote MCP server, the MCP
Toolbox): minted by the gateway with ``google-auth``, refreshed before they expire, never
logged, echoed or recorded.

A connection's sealed credentials say where tokens come from::

    {"google": {"service_account": {...the key JSON...}}}      # a service-account key
    {"google": {"application_default": true}}                  # the gateway's ADC / workload identity

optionally with ``"scopes": [...]`` (default: BigQuery). HTTP upstreams get the token as
``Authorization: Bearer …``; stdio upstreams get it in their environment
(``GOOGLE_OAUTH_ACCESS_TOKEN``), and a process started with a token that has since been
refreshed is not reused (``StdioCommand.fingerprint``). When no token can be minted the call
fails closed with :class:`GoogleTokenError`, whose message names the cause but no secret.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import json
import logging
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import anyio

__all__ = ["BIGQUERY_SCOPE", "GoogleTokenError", "GoogleTokenSource", "google_auth_config"]

log = logging.getLogger("wardgate.google_auth")

BIGQUERY_SCOPE: Final = "https://www.googleapis.com/auth/bigquery"
STDIO_TOKEN_ENV: Final = "GOOGLE_OAUTH_ACCESS_TOKEN"
# Refresh this long before expiry, or after three quarters of a short token's life.
REFRESH_MARGIN: Final = dt.timedelta(minutes=5)


class GoogleTokenError(Exception):
    """No access token could be minted; ``message`` is safe to show (no key material)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def google_auth_config(credentials: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``google`` part of a connection's credentials, or None if it has none.
    Raises GoogleTokenError for a malformed one (never silently falls back)."""
    spec = credentials.get("google")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise GoogleTokenError("credentials.google must be an object")
    sa, adc = spec.get("service_account"), spec.get("application_default")
    if bool(sa) == bool(adc):
        raise GoogleTokenError("credentials.google needs exactly one of service_account or "
                               "application_default: true")
    if sa is not None and not (isinstance(sa, dict) and sa.get("type") == "service_account"
                               and sa.get("private_key") and sa.get("client_email")):
        raise GoogleTokenError("credentials.google.service_account is not a service-account key "
                               "(type, client_email and private_key are required)")
    scopes = spec.get("scopes", [BIGQUERY_SCOPE])
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise GoogleTokenError("credentials.google.scopes must be a list of scope URLs")
    if sa is not None:
        _check_token_uri(str(sa.get("token_uri") or "https://oauth2.googleapis.com/token"))
    return spec


def _check_token_uri(uri: str) -> None:
    # The key's token_uri receives a signed assertion: only HTTPS, or a loopback endpoint.
    parts = urlsplit(uri)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback:
        raise GoogleTokenError("the service account's token_uri must be HTTPS (or loopback)")


class GoogleTokenSource:
    """One connection's access tokens: the current one, minted again shortly before expiry.
    Refreshes run in a worker thread (google-auth is synchronous), one at a time."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self._credentials: Any = None
        self._token: str | None = None
        self._refresh_at: dt.datetime | None = None
        self._lock = asyncio.Lock()
        self.refreshes = 0  # how many tokens were minted (for tests and metrics)

    @staticmethod
    def fingerprint(spec: Mapping[str, Any]) -> str:
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def _build(self) -> Any:
        scopes = self.spec.get("scopes") or [BIGQUERY_SCOPE]
        if self.spec.get("service_account"):
            from google.oauth2 import service_account

            return service_account.Credentials.from_service_account_info(
                self.spec["service_account"], scopes=scopes)
        import google.auth

        credentials, _project = google.auth.default(scopes=scopes)
        return credentials

    def _mint(self) -> tuple[str, dt.datetime | None]:
        from google.auth.transport.requests import Request

        if self._credentials is None:
            self._credentials = self._build()
        self._credentials.refresh(Request())
        token = self._credentials.token
        if not isinstance(token, str) or not token:
            raise ValueError("the token endpoint returned no access token")
        expiry = self._credentials.expiry  # naive UTC, or None
        return token, expiry

    def _due(self, now: dt.datetime) -> bool:
        return self._token is None or (self._refresh_at is not None and now >= self._refresh_at)

    async def token(self) -> str:
        """A valid access token; raises GoogleTokenError (fail closed) if none can be had."""
        if not self._due(_utcnow()):
            assert self._token is not None
            return self._token
        async with self._lock:
            now = _utcnow()
            if not self._due(now):
                assert self._token is not None
                return self._token
            try:
                token, expiry = await anyio.to_thread.run_sync(self._mint)
            except Exception as exc:
                # The exception text may quote the token endpoint's answer; keep it out of
                # logs and errors. Its type says enough to diagnose.
                log.warning("minting a Google access token failed (%s)", type(exc).__name__)
                self._token, self._refresh_at = None, None
                raise GoogleTokenError(
                    f"Wardgate could not mint a Google access token for this connection "
                    f"({type(exc).__name__}); nothing was sent upstream") from None
            self.refreshes += 1
            self._token = token
            if expiry is None:
                self._refresh_at = None
            else:
                life = max(expiry - now, dt.timedelta(0))
                self._refresh_at = expiry - min(REFRESH_MARGIN, life / 4)
            return token


def _utcnow() -> dt.datetime:
    # google-auth keeps expiry as naive UTC
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
