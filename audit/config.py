"""The audit app's typed configuration (chain key, checkpoints, SIEM export, retention).

Read from the environment once (WARDGATE_AUDIT_*, WARDGATE_CHECKPOINT_*, WARDGATE_SIEM_*), with
the checks start-up needs; modules of this app read them here, never from `django.conf.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wardgate.env import Env, deployment
from wardgate.installation_secret import demo_installation_key
from wardgate.keys import demo_public_key, demo_signing_key, signing_key_problem
from wardgate.typed_config import EnvBacked


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
    siem_export_interval_seconds: int = 60
    retention_days: int = 365

    @classmethod
    def from_env(cls, env: Env) -> AuditConfig:
        deploy = deployment(env)
        prod = deploy.production
        # Keys the hash chain (HMAC-SHA256, audit/chain.py). Never stored in the database:
        # without it, a database-level attacker cannot recompute the chain after an edit. The
        # demo's is random, made for the installation in VAR_DIR/audit-chain.key (0600): one
        # derived from the demo's built-in secret would be public (it is in the source), so it
        # would protect nothing. Processes started from this one append to the same chain, so
        # they use the same key.
        chain_key, _ = demo_installation_key(env, "WARDGATE_AUDIT_CHAIN_KEY", "audit-chain.key",
                                             what="audit chain key")
        # Keys the chain was written under before the current one: accepted only for the records
        # before the first record under the current key, like the unkeyed v1 format (an old
        # record rewritten after that is still caught). The demo's: the public key earlier
        # versions derived for it.
        legacy_keys = env.items("WARDGATE_AUDIT_CHAIN_LEGACY_KEYS",
                                [] if prod else [deploy.demo_key("audit-chain")])
        # Ed25519 key signing checkpoints of the chain head: PEM or base64 of 32 raw bytes. Extra
        # public keys (base64 raw, comma-separated) keep checkpoints signed by a rotated-out key
        # verifiable. The demo's is derived from a random secret made for the installation in
        # VAR_DIR/checkpoint-signing.key (0600), like the chain key: one derived from the
        # built-in demo secret is public, so anyone could forge checkpoints with it.
        # Checkpoints earlier versions signed with that public key still verify (it is added to
        # the verify keys), as before.
        signing_key, demo_signing = demo_installation_key(
            env, "WARDGATE_CHECKPOINT_SIGNING_KEY", "checkpoint-signing.key",
            what="checkpoint signing key", derive=demo_signing_key)
        verify_keys = env.items("WARDGATE_CHECKPOINT_VERIFY_KEYS", [])
        if demo_signing:
            verify_keys = [*verify_keys, demo_public_key(deploy.secret_key)]
            # Processes started from this one verify the same installation's chain.
            env.export("WARDGATE_CHECKPOINT_VERIFY_KEYS", ",".join(verify_keys))
        # Write-once location for checkpoint copies, outside the database: a directory (in the
        # demo var/checkpoints), or gs://bucket/prefix. Required in production.
        export = env.text("WARDGATE_CHECKPOINT_EXPORT",
                          "" if prod else str(deploy.var_dir / "checkpoints"))
        # SIEM sinks: a JSON list of objects (audit/export/config.py has every key). HTTP
        # deliveries carry X-Wardgate-Signature: sha256=HMAC(WARDGATE_SIEM_HMAC_SECRET, body).
        sinks = env.json_objects("WARDGATE_SIEM_SINKS")
        hmac_secret = env.text("WARDGATE_SIEM_HMAC_SECRET", "")
        config = cls(
            chain_key=chain_key,
            chain_legacy_keys=tuple(legacy_keys),
            checkpoint_signing_key=signing_key,
            checkpoint_verify_keys=tuple(verify_keys),
            checkpoint_export=export,
            checkpoint_interval_minutes=env.integer("WARDGATE_CHECKPOINT_INTERVAL_MINUTES", 15),
            siem_sinks=tuple(sinks),
            siem_hmac_secret=hmac_secret,
            siem_batch_size=env.integer("WARDGATE_SIEM_BATCH_SIZE", 500),
            siem_export_interval_seconds=env.integer("WARDGATE_SIEM_EXPORT_INTERVAL_SECONDS", 60),
            # Records older than this are purged once a signed checkpoint and an exported
            # evidence pack cover them, and no legal hold is active.
            retention_days=env.integer("WARDGATE_AUDIT_RETENTION_DAYS", 365, minimum=1),
        )
        if prod and not export.strip():
            env.problem("WARDGATE_CHECKPOINT_EXPORT must name a write-once location outside "
                        "the database (a WORM directory or gs://bucket/prefix)")
        if prod and len(chain_key) < 32:
            env.problem("WARDGATE_AUDIT_CHAIN_KEY must be set (32+ random characters, kept "
                        "out of the database)")
        if prod and not signing_key:
            env.problem("WARDGATE_CHECKPOINT_SIGNING_KEY must be set (Ed25519, PEM or base64)")
        elif problem := signing_key_problem(signing_key):
            env.problem(f"WARDGATE_CHECKPOINT_SIGNING_KEY: {problem}")
        if prod and not hmac_secret and any(
            s.get("type") == "http" and not s.get("hmac_secret") for s in sinks
        ):
            env.problem("WARDGATE_SIEM_HMAC_SECRET must be set for HTTP SIEM sinks")
        return config


audit_config = EnvBacked(AuditConfig.from_env)
