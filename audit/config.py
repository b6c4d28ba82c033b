"""The audit app's typed configuration (chain key, checkpoints, SIEM export, retention).

Built from the values wardgate.settings read and checked once at start-up (WARDGATE_AUDIT_*,
WARDGATE_CHECKPOINT_*, WARDGATE_SIEM_*); modules of this app read them here, never from
`django.conf.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wardgate.typed_config import SettingsBacked


@dataclass(frozen=True, slots=True)
class AuditConfig:
    # Keys the hash chain (HMAC-SHA256); empty: records are written in the legacy v1 format.
    chain_key: str = ""
    # Keys the chain was written under before `chain_key`: accepted only before its first record.
    chain_legacy_keys: tuple[str, ...] = ()
    # Ed25519 key signing checkpoints (PEM or base64 of 32 raw bytes); empty: none is signed.
    checkpoint_signing_key: str = ""
    # Public keys of rotated-out signing keys, so their checkpoints still verify.
    checkpoint_verify_keys: tuple[str, ...] = ()
    # Write-once location of checkpoint copies (a directory or gs://); empty: not exported.
    checkpoint_export: str = ""
    checkpoint_interval_minutes: int = 15
    # SIEM sinks as configured (see audit/export/config.py for every key).
    siem_sinks: tuple[dict[str, Any], ...] = ()
    siem_hmac_secret: str = ""
    siem_batch_size: int = 500
    retention_days: int = 365

    @classmethod
    def from_settings(cls) -> AuditConfig:
        from django.conf import settings

        return cls(
            chain_key=getattr(settings, "WARDGATE_AUDIT_CHAIN_KEY", ""),
            chain_legacy_keys=tuple(getattr(settings, "WARDGATE_AUDIT_CHAIN_LEGACY_KEYS", [])),
            checkpoint_signing_key=getattr(settings, "WARDGATE_CHECKPOINT_SIGNING_KEY", ""),
            checkpoint_verify_keys=tuple(getattr(settings, "WARDGATE_CHECKPOINT_VERIFY_KEYS", [])),
            checkpoint_export=getattr(settings, "WARDGATE_CHECKPOINT_EXPORT", ""),
            checkpoint_interval_minutes=getattr(settings, "WARDGATE_CHECKPOINT_INTERVAL_MINUTES",
                                                15),
            siem_sinks=tuple(getattr(settings, "WARDGATE_SIEM_SINKS", None) or ()),
            siem_hmac_secret=getattr(settings, "WARDGATE_SIEM_HMAC_SECRET", ""),
            siem_batch_size=getattr(settings, "WARDGATE_SIEM_BATCH_SIZE", 500),
            retention_days=getattr(settings, "WARDGATE_AUDIT_RETENTION_DAYS", 365),
        )


audit_config = SettingsBacked(AuditConfig.from_settings)
