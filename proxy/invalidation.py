"""Keeps every gateway process's caches honest.

Each process polls the shared security revision (one row) every `interval` seconds and drops
its caches when it moves. The database is the one thing all gateway processes on all hosts
share, so a revocation, disable or quarantine committed anywhere reaches every process within
one interval — no decision lives only in one process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from proxy.store import GatewayStore

log = logging.getLogger("wardgate.gateway")


def _close_connections() -> None:
    from django.db import connections

    connections.close_all()


class RevisionWatcher:
    def __init__(self, store: GatewayStore, interval: float,
                 on_change: list[Callable[[], None]]) -> None:
        self.store = store
        self.interval = interval
        self.on_change = on_change
        self.revision: int | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread with one long-lived connection: polling must not reconnect each time.
        self._executor: ThreadPoolExecutor | None = None

    async def _read(self) -> int:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor,
                                                                 self.store.security_revision)

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="wardgate-revision")
        self.revision = await self._read()
        self._task = asyncio.create_task(self._run(), name="wardgate-revision-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, _close_connections)
            self._executor.shutdown(wait=True)
            self._executor = None

    def _fire(self) -> None:
        for callback in self.on_change:
            callback()

    async def check_now(self) -> None:
        current = await self._read()
        if current != self.revision:
            self.revision = current
            self._fire()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_now()
            except Exception:
                # Cannot tell whether access was taken away: drop caches, so the next call
                # re-reads everything (and fails closed if the database stays away).
                log.exception("could not read the security revision; dropping caches")
                self._fire()
                await asyncio.get_running_loop().run_in_executor(self._executor, _close_connections)
