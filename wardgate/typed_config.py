"""Typed configuration per app, read from the environment once, with its problems kept.

Each app reads the variables it owns through one frozen dataclass (audit/config.py,
portal/config.py, proxy/config.py, reports/config.py, wardgate/config.py), built by a reader
that takes an `Env` (wardgate/env.py) and notes every problem instead of raising. Start-up
(wardgate.apps.WardgateConfig.ready) asks every app for its problems and refuses once, listing
them together with the settings' own.

Tests change a value with `configured(...)` (or the `configure` pytest fixture), which replaces
fields of the current configuration and restores it afterwards; gateway subprocesses are given
environment variables instead.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from wardgate.env import Env

ConfigT = TypeVar("ConfigT")


class EnvBacked(Generic[ConfigT]):
    """Call it for the current configuration: `audit_config().retention_days`."""

    def __init__(self, read: Callable[[Env], ConfigT]) -> None:
        self._read = read
        self._current: ConfigT | None = None
        self._problems: list[str] = []
        self._lock = threading.Lock()

    def __call__(self) -> ConfigT:
        current = self._current
        if current is None:
            with self._lock:
                current = self._current
                if current is None:
                    env = Env()
                    current = self._current = self._read(env)
                    self._problems = list(env.problems)
        return current

    def problems(self) -> list[str]:
        """What could not be read or is unsafe, from the one read start-up checks."""
        self()
        return list(self._problems)

    def forget(self) -> None:
        """Read the environment again on the next call (after it was changed on purpose)."""
        with self._lock:
            self._current = None
            self._problems = []

    def replace(self, config: ConfigT | None) -> None:
        """Put `config` in place of the current configuration (None: read again)."""
        with self._lock:
            self._current = config
            self._problems = []


@contextmanager
def configured(accessor: EnvBacked[ConfigT], **changes: Any) -> Iterator[ConfigT]:
    """For tests: the configuration with `changes` (dataclasses.replace) while inside, the one
    before it after."""
    before = accessor()
    accessor.replace(dataclasses.replace(before, **changes))  # type: ignore[type-var]
    try:
        yield accessor()
    finally:
        accessor.replace(before)
