"""Typed configuration built from Django settings once, and rebuilt only when a setting changes.

Settings read and check the environment once (wardgate.settings). Each app reads the values it
needs through one frozen dataclass (audit/config.py, portal/config.py, reports/config.py,
proxy/config.py) instead of `django.conf.settings` deep inside its logic. `override_settings`
(and pytest-django's `settings` fixture) send `setting_changed`, after which the next read
builds the configuration again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.core.signals import setting_changed

ConfigT = TypeVar("ConfigT")


class SettingsBacked(Generic[ConfigT]):
    """Call it for the current configuration: `audit_config().retention_days`."""

    def __init__(self, build: Callable[[], ConfigT]) -> None:
        self._build = build
        self._current: ConfigT | None = None
        self._lock = threading.Lock()
        setting_changed.connect(self._forget, weak=False)

    def __call__(self) -> ConfigT:
        current = self._current
        if current is None:
            with self._lock:
                current = self._current = self._build()
        return current

    def forget(self) -> None:
        self._current = None

    def _forget(self, **_: Any) -> None:
        self.forget()
