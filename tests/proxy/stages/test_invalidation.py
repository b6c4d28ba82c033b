"""Stage invalidation: caches drop when the security revision moves, or cannot be read."""

from __future__ import annotations

import asyncio

from proxy.invalidation import RevisionWatcher
from tests.proxy.store_memory import MemoryGatewayStore


async def test_fires_only_when_the_revision_moves(store: MemoryGatewayStore) -> None:
    fired: list[int] = []
    watcher = RevisionWatcher(store, 3600, [lambda: fired.append(1)])
    store.revision = 4
    await watcher.start()
    try:
        assert watcher.revision == 4
        await watcher.check_now()
        assert fired == []
        store.revision = 5
        await watcher.check_now()
        assert fired == [1] and watcher.revision == 5
    finally:
        await watcher.stop()


class _Flaky(MemoryGatewayStore):
    broken = False

    def security_revision(self) -> int:
        if self.broken:
            raise ConnectionError("database away")
        return super().security_revision()


async def test_unreadable_revision_drops_caches() -> None:
    store = _Flaky()
    fired = asyncio.Event()
    watcher = RevisionWatcher(store, 0.01, [fired.set])
    await watcher.start()
    try:
        store.broken = True
        await asyncio.wait_for(fired.wait(), 5)  # fail closed: forget everything
    finally:
        await watcher.stop()
