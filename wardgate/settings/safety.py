"""Refusal of unsafe settings in production mode.

The demo runs with defaults that are fine on a laptop (DEBUG, a well-known secret key, SQLite,
an in-process task queue). Production must never inherit them silently, so start-up fails
with every problem listed at once.
"""

from __future__ import annotations

from dataclasses import dataclass

DEMO_SECRET_KEY = "wardgate-demo-secret-key-not-for-production"


class UnsafeSettings(Exception):
    """Raised at start-up when production mode meets demo-only settings."""


@dataclass(frozen=True)
class SafetyInputs:
    debug: bool
    secret_key: str
    database_url: str
    broker_url: str
    allowed_hosts: list[str]
    field_encryption_key: str
    token_hmac_key: str


def production_problems(s: SafetyInputs) -> list[str]:
    problems: list[str] = []
    if s.debug:
        problems.append("WARDGATE_DEBUG must be off in production")
    if not s.secret_key or s.secret_key == DEMO_SECRET_KEY or len(s.secret_key) < 32:
        problems.append("WARDGATE_SECRET_KEY must be set to a random value of 32+ characters")
    if s.database_url.startswith("sqlite"):
        problems.append("DATABASE_URL must point at PostgreSQL in production, not SQLite")
    if not s.broker_url.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
        problems.append("CELERY_BROKER_URL must be a Redis or AMQP broker in production")
    if not s.allowed_hosts or "*" in s.allowed_hosts:
        problems.append("WARDGATE_ALLOWED_HOSTS must list the gateway's host names (no '*')")
    if len(s.field_encryption_key) < 32:
        problems.append("WARDGATE_FIELD_ENCRYPTION_KEY must be set (32+ characters)")
    if len(s.token_hmac_key) < 32:
        problems.append("WARDGATE_TOKEN_HMAC_KEY must be set (32+ characters)")
    return problems
