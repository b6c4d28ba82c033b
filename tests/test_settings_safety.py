"""Production mode refuses demo-only settings at start-up, listing every problem."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

SAFE = {
    "WARDGATE_MODE": "production",
    "WARDGATE_SECRET_KEY": "k" * 50,
    "WARDGATE_DEBUG": "0",
    "DATABASE_URL": "postgres://wardgate@db.internal:5432/wardgate",
    "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
    "WARDGATE_ALLOWED_HOSTS": "gateway.example.com",
    "WARDGATE_FIELD_ENCRYPTION_KEY": "f" * 44,
    "WARDGATE_TOKEN_HMAC_KEY": "t" * 44,
    "WARDGATE_CHECKPOINT_SIGNING_KEY": "uUe+t9uhHsmdLLYDgojx4J0H2LtBERkT+LziapgDtu8=",
    "WARDGATE_PACK_SIGNING_KEY": "k2jMuBGvO+fJah+vMPCjMRe9U1ijf8CO7AM8eugmVVc=",
    "WARDGATE_PACK_ORGANISATION": "Example Corp",
    "WARDGATE_AUDIT_CHAIN_KEY": "c" * 44,
    "WARDGATE_CHECKPOINT_EXPORT": "/srv/worm/wardgate-checkpoints",
}


def load_settings(overrides: dict[str, str], drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WARDGATE_", "DATABASE_URL", "CELERY_"))}
    env.update(overrides)
    for key in drop:
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-c", "import django; from django.conf import settings; "
         "django.setup(); print('mode', settings.WARDGATE_MODE, settings.DEBUG)"],
        cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "wardgate.settings"},
        capture_output=True, text=True, timeout=60,
    )


def test_production_with_safe_settings_starts() -> None:
    done = load_settings(SAFE)
    assert done.returncode == 0, done.stderr
    assert "mode production False" in done.stdout


def test_production_with_demo_defaults_is_refused_with_every_reason() -> None:
    done = load_settings({"WARDGATE_MODE": "production"})
    assert done.returncode != 0
    for needle in ("WARDGATE_SECRET_KEY", "DATABASE_URL must point at PostgreSQL",
                   "CELERY_BROKER_URL", "WARDGATE_ALLOWED_HOSTS", "WARDGATE_FIELD_ENCRYPTION_KEY",
                   "WARDGATE_TOKEN_HMAC_KEY", "WARDGATE_CHECKPOINT_SIGNING_KEY",
                   "WARDGATE_PACK_SIGNING_KEY", "WARDGATE_PACK_ORGANISATION",
                   "WARDGATE_AUDIT_CHAIN_KEY", "WARDGATE_CHECKPOINT_EXPORT"):
        assert needle in done.stderr, needle


def test_production_refuses_debug_demo_key_and_sqlite_one_by_one() -> None:
    for key, bad, needle in [
        ("WARDGATE_DEBUG", "1", "WARDGATE_DEBUG must be off"),
        ("WARDGATE_SECRET_KEY", "wardgate-demo-secret-key-not-for-production", "WARDGATE_SECRET_KEY"),
        ("DATABASE_URL", "sqlite:////tmp/x.sqlite3", "not SQLite"),
        ("WARDGATE_ALLOWED_HOSTS", "*", "no '*'"),
    ]:
        done = load_settings({**SAFE, key: bad})
        assert done.returncode != 0, key
        assert needle in done.stderr, (key, done.stderr[-500:])


def test_demo_mode_runs_with_defaults_and_bad_values_get_clear_errors() -> None:
    assert load_settings({}).returncode == 0
    done = load_settings({"WARDGATE_DEBUG": "maybe"})
    assert done.returncode != 0 and "WARDGATE_DEBUG must be one of" in done.stderr
    done = load_settings({"WARDGATE_MODE": "staging"})
    assert done.returncode != 0 and "WARDGATE_MODE must be 'demo' or 'production'" in done.stderr
