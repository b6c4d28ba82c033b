"""The project's own typed configuration: the demo (`manage.py demo`, `seed_demo_data`) and
what a process serves (`manage.py serve --only`).

Read from the environment once, with the checks start-up needs; the commands and wardgate/asgi.py
read them here, never from `django.conf.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wardgate.env import Env, deployment
from wardgate.typed_config import EnvBacked


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
    def from_env(cls, env: Env) -> DemoConfig:
        deploy = deployment(env)
        return cls(
            production=deploy.production,
            var_dir=deploy.var_dir,
            bigquery_project=env.text("WARDGATE_BIGQUERY_PROJECT", "wardgate-demo"),
            bigquery_endpoint=env.text("WARDGATE_BIGQUERY_ENDPOINT", ""),
            dataset=env.text("WARDGATE_DEMO_DATASET", "shop"),
            customers=env.integer("WARDGATE_DEMO_CUSTOMERS", 2000),
        )


demo_config = EnvBacked(DemoConfig.from_env)


@dataclass(frozen=True, slots=True)
class ServeConfig:
    # What this process serves (`manage.py serve --only`, wardgate/asgi.py): "" both, "gateway"
    # (the portal's URLs answer 404), or "portal" (/mcp/ answers 404). /healthz and /readyz
    # always.
    only: str = ""

    @classmethod
    def from_env(cls, env: Env) -> ServeConfig:
        only = env.text("WARDGATE_SERVE_ONLY", "").strip().lower()
        if only not in SERVE_ONLY_CHOICES:
            env.problem(f"WARDGATE_SERVE_ONLY must be 'gateway', 'portal' or empty, got {only!r}")
            only = ""
        return cls(only=only)


SERVE_ONLY_CHOICES = ("", "gateway", "portal")
serve_config = EnvBacked(ServeConfig.from_env)
