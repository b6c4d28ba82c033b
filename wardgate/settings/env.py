"""Typed reads of environment variables that collect problems instead of raising.

Settings read every variable through one `Env`; a value that cannot be read is noted and its
default used, so start-up can refuse once, listing every problem together (wardgate.settings).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    """One pass over the environment: typed values, and `problems` for what could not be read."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)

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
