"""The gateway's typed configuration, read once from Django settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from proxy.hold import HoldSettings
from proxy.oidc import OidcConfig


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    token_key: bytes
    oidc: OidcConfig | None = None
    max_body_bytes: int = 1_000_000
    upstream_timeout_seconds: float = 60.0
    connection_cache_seconds: float = 30.0
    revision_poll_seconds: float = 0.2
    audit_response_cap_bytes: int = 65_536
    hold: HoldSettings = HoldSettings()

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
            )
        return cls(
            token_key=settings.WARDGATE_TOKEN_HMAC_KEY.encode(),
            oidc=oidc,
            max_body_bytes=settings.WARDGATE_GATEWAY_MAX_BODY_BYTES,
            upstream_timeout_seconds=settings.WARDGATE_GATEWAY_UPSTREAM_TIMEOUT,
            audit_response_cap_bytes=settings.WARDGATE_AUDIT_RESPONSE_CAP_BYTES,
            hold=HoldSettings(
                timeout_seconds=float(settings.WARDGATE_HOLD_TIMEOUT_SECONDS),
                approval_ttl=dt.timedelta(hours=settings.WARDGATE_APPROVAL_TTL_HOURS),
                portal_url=settings.WARDGATE_PORTAL_URL,
            ),
        )
