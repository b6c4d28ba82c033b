"""The gateway's typed configuration, read once from Django settings.

`GatewayConfig.from_settings()` builds it for a gateway process; `gateway_config()` is the same
configuration for code outside the gateway that needs a gateway value (the tokenization key, the
audit response cap), rebuilt only when a setting changes.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from proxy.admission import AdmissionLimits
from proxy.hold import HoldSettings
from proxy.oidc import OidcConfig
from proxy.sql_limits import SqlLimits
from wardgate.typed_config import SettingsBacked


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    """Who may scrape /metrics: nobody when disabled; with a token, only a bearer of it."""

    enabled: bool = True
    token: str = ""

    def refusal(self, authorization: str) -> int | None:
        """None to serve the scrape, else the HTTP status to answer with."""
        if not self.enabled:
            return 404
        if self.token and not hmac.compare_digest(authorization.encode(),
                                                  f"Bearer {self.token}".encode()):
            return 401
        return None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    token_key: bytes
    oidc: OidcConfig | None = None
    max_body_bytes: int = 1_000_000
    upstream_timeout_seconds: float = 60.0
    bigquery_timeout_seconds: float = 15.0
    connection_cache_seconds: float = 30.0
    revision_poll_seconds: float = 0.2
    audit_response_cap_bytes: int = 65_536
    hold: HoldSettings = HoldSettings()
    admission: AdmissionLimits = AdmissionLimits()
    sql_limits: SqlLimits = SqlLimits()
    # A client has this long to send a request's headers (slow-loris), body timeouts are in
    # `admission`.
    header_timeout_seconds: float = 10.0
    # Host names the gateway answers to, and the host names an Origin header may carry (MCP
    # transport spec: validate Origin against DNS rebinding). Django patterns (".example.com").
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
    allowed_origins: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
    metrics: MetricsAccess = MetricsAccess()

    @classmethod
    def from_settings(cls) -> GatewayConfig:
        from django.conf import settings

        oidc = None
        if settings.WARDGATE_OIDC_ISSUER:
            oidc = OidcConfig(
                issuer=settings.WARDGATE_OIDC_ISSUER,
                audience=tuple(settings.WARDGATE_OIDC_AUDIENCE),
                jwks_url=settings.WARDGATE_OIDC_JWKS_URL,
                groups_claim=settings.WARDGATE_OIDC_GROUPS_CLAIM,
                username_claim=settings.WARDGATE_OIDC_USERNAME_CLAIM,
                http_timeout_seconds=float(settings.WARDGATE_OIDC_HTTP_TIMEOUT),
            )
        return cls(
            token_key=settings.WARDGATE_TOKEN_HMAC_KEY.encode(),
            oidc=oidc,
            max_body_bytes=settings.WARDGATE_GATEWAY_MAX_BODY_BYTES,
            upstream_timeout_seconds=settings.WARDGATE_GATEWAY_UPSTREAM_TIMEOUT,
            bigquery_timeout_seconds=float(settings.WARDGATE_BIGQUERY_TIMEOUT),
            audit_response_cap_bytes=settings.WARDGATE_AUDIT_RESPONSE_CAP_BYTES,
            allowed_hosts=tuple(settings.ALLOWED_HOSTS),
            allowed_origins=tuple(getattr(settings, "WARDGATE_GATEWAY_ALLOWED_ORIGINS", None)
                                  or settings.ALLOWED_HOSTS),
            admission=AdmissionLimits(
                max_requests=settings.WARDGATE_GATEWAY_MAX_REQUESTS_PER_IDENTITY,
                max_streams=settings.WARDGATE_GATEWAY_MAX_STREAMS_PER_IDENTITY,
                max_sessions=settings.WARDGATE_GATEWAY_MAX_SESSIONS_PER_IDENTITY,
                session_idle_seconds=float(settings.WARDGATE_GATEWAY_SESSION_IDLE_SECONDS),
                stream_max_seconds=float(settings.WARDGATE_GATEWAY_STREAM_MAX_SECONDS),
                upstream_pool_size=settings.WARDGATE_GATEWAY_UPSTREAM_POOL_SIZE,
                retry_after_seconds=settings.WARDGATE_GATEWAY_RETRY_AFTER_SECONDS,
                body_timeout_seconds=float(settings.WARDGATE_GATEWAY_BODY_TIMEOUT),
            ),
            sql_limits=SqlLimits(
                max_chars=settings.WARDGATE_SQL_MAX_CHARS,
                max_tokens=settings.WARDGATE_SQL_MAX_TOKENS,
                max_depth=settings.WARDGATE_SQL_MAX_DEPTH,
                budget_seconds=settings.WARDGATE_SQL_ANALYSIS_BUDGET_MS / 1000,
                workers=settings.WARDGATE_SQL_ANALYSIS_WORKERS,
            ),
            header_timeout_seconds=float(settings.WARDGATE_GATEWAY_HEADER_TIMEOUT),
            metrics=MetricsAccess(enabled=settings.WARDGATE_METRICS_ENABLED,
                                  token=settings.WARDGATE_METRICS_TOKEN),
            hold=HoldSettings(
                timeout_seconds=float(settings.WARDGATE_HOLD_TIMEOUT_SECONDS),
                approval_ttl=dt.timedelta(hours=settings.WARDGATE_APPROVAL_TTL_HOURS),
                portal_url=settings.WARDGATE_PORTAL_URL,
            ),
        )


gateway_config = SettingsBacked(GatewayConfig.from_settings)
