"""The reports app's typed configuration: where packs are kept, the key that signs them, the
system they identify, sampling, and the monthly schedule.

Built from the values wardgate.settings read and checked once at start-up (WARDGATE_PACK_*);
modules of this app read them here, never from `django.conf.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reports.pack.provenance import SystemIdentity
from wardgate.typed_config import SettingsBacked


@dataclass(frozen=True, slots=True)
class ReportsConfig:
    # Where finished packs (zip files) are kept.
    pack_dir: Path
    # Ed25519 key signing each pack's manifest.json (PEM or base64 of 32 raw bytes).
    signing_key: str
    # The system each pack identifies (cover, manifest, OSCAL metadata).
    identity: SystemIdentity
    # Records sampled per population for the PDF (full populations are always in the CSVs).
    sample_size: int = 25
    # A disable must stop an account's calls within this many seconds (AC-2 evidence).
    disable_sla_seconds: float = 1.0
    # Monthly pack of the previous calendar month (Celery beat).
    monthly: bool = True

    @classmethod
    def from_settings(cls) -> ReportsConfig:
        from django.conf import settings

        return cls(
            pack_dir=Path(settings.WARDGATE_PACK_DIR),
            signing_key=settings.WARDGATE_PACK_SIGNING_KEY,
            identity=SystemIdentity(
                organisation=settings.WARDGATE_PACK_ORGANISATION,
                system=settings.WARDGATE_PACK_SYSTEM_NAME,
                environment=settings.WARDGATE_PACK_ENVIRONMENT,
                boundary=settings.WARDGATE_PACK_BOUNDARY,
                assessment_plan_url=settings.WARDGATE_PACK_ASSESSMENT_PLAN_URL,
            ),
            sample_size=int(settings.WARDGATE_PACK_SAMPLE_SIZE),
            disable_sla_seconds=float(settings.WARDGATE_PACK_DISABLE_SLA_SECONDS),
            monthly=bool(getattr(settings, "WARDGATE_PACK_MONTHLY", True)),
        )


reports_config = SettingsBacked(ReportsConfig.from_settings)
