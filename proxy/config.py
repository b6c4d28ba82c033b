"""The gateway's typed configuration, read once from Django settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    max_body_bytes: int = 1_000_000
    upstream_timeout_seconds: float = 60.0
    connection_cache_seconds: float = 2.0

    @classmethod
    def from_settings(cls) -> GatewayConfig:
        from django.conf import settings

        return cls(
            max_body_bytes=settings.WARDGATE_GATEWAY_MAX_BODY_BYTES,
            upstream_timeout_seconds=settings.WARDGATE_GATEWAY_UPSTREAM_TIMEOUT,
        )
