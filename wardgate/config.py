"""The project's own typed configuration: the demo (`manage.py demo`, `seed_demo_data`).

Built from the values wardgate.settings read and checked once at start-up; the demo commands
read them here, never from `django.conf.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wardgate.typed_config import SettingsBacked


@dataclass(frozen=True, slots=True)
class DemoConfig:
    # WARDGATE_MODE=production: the demo refuses to run.
    production: bool
    var_dir: Path
    # BigQuery used by the demo connection (the emulator) and by the bundled MCP server.
    bigquery_project: str = "wardgate-demo"
    bigquery_endpoint: str = ""
    dataset: str = "shop"
    customers: int = 2000

    @classmethod
    def from_settings(cls) -> DemoConfig:
        from django.conf import settings

        return cls(
            production=bool(settings.PRODUCTION),
            var_dir=Path(settings.VAR_DIR),
            bigquery_project=settings.WARDGATE_BIGQUERY_PROJECT,
            bigquery_endpoint=settings.WARDGATE_BIGQUERY_ENDPOINT,
            dataset=settings.WARDGATE_DEMO_DATASET,
            customers=settings.WARDGATE_DEMO_CUSTOMERS,
        )


demo_config = SettingsBacked(DemoConfig.from_settings)
