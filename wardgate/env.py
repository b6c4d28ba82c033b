"""Typed reads of environment variables that collect problems instead of raising.

No Django and no app code: the settings (Django/DRF/allauth/Celery wiring) and each app's typed
configuration (audit/config.py, portal/config.py, proxy/config.py, reports/config.py,
wardgate/config.py) read their own variables through an `Env`. A value that cannot be read is
noted and its default used, so start-up can refuse once, listing every problem together
(wardgate.apps.WardgateConfig.ready).

`deployment()` reads the few values that settings and apps both need (the mode, the secret key
the demo derives its keys from, the var directory, the host names), in one place so the two
can never disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
DEMO_SECRET_KEY = "wardgate-demo-secret-key-not-for-production"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    """One pass over the environment: typed values, and `problems` for what could not be read."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def export(self, name: str, value: str) -> None:
        """Set `name` for processes this one starts, when this Env reads the process's own
        environment (an Env over a given mapping, as tests build, leaves it alone)."""
        if self._environ is os.environ:
            os.environ[name] = value

    def text(self, name: str, default: str) -> str:
        return self._environ.get(name, default)

    def optional_text(self, name: str) -> str | None:
        """The value, or None when the variable is not set at all (set but empty: "")."""
        return self._environ.get(name)

    def flag(self, name: str, default: bool) -> bool:
        raw = self._environ.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        self.problem(f"{name} must be one of 1/0/true/false/yes/no/on/off, got {raw!r}")
        return default

    def integer(self, name: str, default: int, *, minimum: int | None = None) -> int:
        raw = self._environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problem(f"{name} must be an integer, got {raw!r}")
            return default
        if minimum is not None and value < minimum:
            self.problem(f"{name} must be at least {minimum}")
        return value

    def items(self, name: str, default: list[str]) -> list[str]:
        raw = self._environ.get(name)
        if raw is None:
            return default
        return [item.strip() for item in raw.split(",") if item.strip()]

    def json_objects(self, name: str) -> list[dict[str, Any]]:
        """A JSON list of objects, each with a "name" (empty when unset)."""
        try:
            value = json.loads(self._environ.get(name, "[]") or "[]")
        except ValueError as exc:
            self.problem(f"{name} must be a JSON list: {exc}")
            return []
        if not isinstance(value, list) or not all(
            isinstance(item, dict) and item.get("name") for item in value
        ):
            self.problem(f"{name} must be a JSON list of objects, each with a name")
            return []
        return value


@dataclass(frozen=True, slots=True)
class Deployment:
    """What settings and apps both read: demo or production, the secret key, where files go."""

    mode: str
    production: bool
    secret_key: str
    var_dir: Path
    allowed_hosts: tuple[str, ...]

    def demo_key(self, purpose: str) -> str:
        """Demo only: a per-purpose key derived from the secret, so one variable configures the
        demo (production mode refuses to start without the real key)."""
        return hashlib.sha256(f"{purpose}:{self.secret_key}".encode()).hexdigest()


def deployment(env: Env) -> Deployment:
    """The shared values; their problems (a mode that is neither) are the settings' to note."""
    mode = env.text("WARDGATE_MODE", "demo").strip().lower()
    production = mode == "production"
    return Deployment(
        mode=mode,
        production=production,
        secret_key=env.text("WARDGATE_SECRET_KEY", "" if production else DEMO_SECRET_KEY),
        var_dir=Path(env.text("WARDGATE_VAR_DIR", str(BASE_DIR / "var"))),
        allowed_hosts=tuple(env.items("WARDGATE_ALLOWED_HOSTS",
                                      [] if production else ["127.0.0.1", "localhost"])),
    )
