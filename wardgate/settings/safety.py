"""Refusal of unsafe settings in production mode.

The demo runs with defaults that are fine on a laptop (DEBUG, a well-known secret key, SQLite,
an in-process task queue). Production must never inherit them silently, so start-up fails
with every problem listed at once. These are the settings' own checks; each app checks its own
values in its typed configuration (the keys it uses, for one).
"""

from __future__ import annotations

from dataclasses import dataclass

from wardgate.env import DEMO_SECRET_KEY


@dataclass(frozen=True)
class SafetyInputs:
    debug: bool
    secret_key: str
    database_url: str
    broker_url: str
    allowed_hosts: list[str]


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
    return problems
