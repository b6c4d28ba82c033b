"""The reports app's typed configuration: where packs are kept, the key that signs them, the
system they identify, sampling, and the monthly schedule.

Read from the environment once (WARDGATE_PACK_*), with the checks start-up needs; modules of
this app read them here, never from `django.conf.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reports.pack.provenance import SystemIdentity
from wardgate.env import Env, deployment
from wardgate.installation_secret import demo_installation_key
from wardgate.keys import demo_signing_key, signing_key_problem
from wardgate.typed_config import EnvBacked

# Production refuses to start with the demo's organisation: it is printed on every pack.
DEMO_ORGANISATION = "Wardgate demo organisation"
DEFAULT_BOUNDARY = (
    "The Wardgate gateway (MCP data path to BigQuery), its compliance portal, audit log and "
    "Celery workers; the upstream MCP servers, BigQuery and the identity provider are outside "
    "the boundary.")


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
    def from_env(cls, env: Env) -> ReportsConfig:
        deploy = deployment(env)
        prod = deploy.production
        # The demo's is derived from a random secret made for the installation in
        # VAR_DIR/pack-signing.key (0600), like the audit keys: one derived from the built-in
        # demo secret is public, so anyone could sign a forged pack with it. The Celery worker
        # the demo starts signs with the same key.
        signing_key, _ = demo_installation_key(
            env, "WARDGATE_PACK_SIGNING_KEY", "pack-signing.key",
            what="evidence pack signing key",
            derive=lambda secret: demo_signing_key(secret,
                                                   purpose="wardgate-evidence-pack-signing"))
        identity = SystemIdentity(
            organisation=env.text("WARDGATE_PACK_ORGANISATION", DEMO_ORGANISATION),
            system=env.text("WARDGATE_PACK_SYSTEM_NAME", "Wardgate"),
            environment=env.text("WARDGATE_PACK_ENVIRONMENT", "production" if prod else "demo"),
            boundary=env.text("WARDGATE_PACK_BOUNDARY", DEFAULT_BOUNDARY),
            # The organisation's OSCAL assessment plan (SAP) these results answer; empty: the
            # pack carries a placeholder resource the organisation replaces.
            assessment_plan_url=env.text("WARDGATE_PACK_ASSESSMENT_PLAN_URL", ""),
        )
        if prod and not signing_key.strip():
            env.problem("WARDGATE_PACK_SIGNING_KEY must be set "
                        "(Ed25519 private key: PEM, or base64 of 32 raw bytes)")
        elif problem := signing_key_problem(signing_key, "WARDGATE_PACK_SIGNING_KEY"):
            env.problem(problem)
        if prod and identity.organisation == DEMO_ORGANISATION:
            env.problem("WARDGATE_PACK_ORGANISATION must name the organisation that owns "
                        "the system (it is printed on every evidence pack)")
        return cls(
            pack_dir=Path(env.text("WARDGATE_PACK_DIR", str(deploy.var_dir / "packs"))),
            signing_key=signing_key,
            identity=identity,
            sample_size=env.integer("WARDGATE_PACK_SAMPLE_SIZE", 25),
            disable_sla_seconds=float(env.integer("WARDGATE_PACK_DISABLE_SLA_SECONDS", 1)),
            monthly=env.flag("WARDGATE_PACK_MONTHLY", True),
        )


reports_config = EnvBacked(ReportsConfig.from_env)
