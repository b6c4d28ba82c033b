"""The gateway's one cache type: entries that expire, a size bound, and a clear-all for when
the security revision moves (every stage cache must forget at once then)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class TtlCache(Generic[K, V]):
    """`ttl_seconds=None`: entries live until cleared. `max_entries`: past it, the cache is
    emptied before the next insert (keys may come from callers, so memory stays bounded).
    `clock` is the time base of `put(until=...)`."""

    def __init__(self, ttl_seconds: float | None = None, *, max_entries: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[K, tuple[V, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, default: D = None) -> V | D:  # type: ignore[assignment]
        hit = self._entries.get(key)
        if hit is None or hit[1] <= self.clock():
            return default
        return hit[0]

    def put(self, key: K, value: V, *, until: float | None = None) -> None:
        """Remember `value` until `until` (on `clock`), at most `ttl_seconds` from now."""
        now = self.clock()
        expires = float("inf") if self.ttl is None else now + self.ttl
        if until is not None:
            expires = min(expires, until)
        if self.max_entries is not None and len(self._entries) > self.max_entries:
            self._entries.clear()
        self._entries[key] = (value, expires)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
