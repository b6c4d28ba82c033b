"""Keeps every gateway process's caches honest.

Each process polls the shared security revision (one indexed row) every `interval` seconds
and drops its caches when it moves. The database is the one thing all gateway processes on
all hosts share, so a revocation, disable or quarantine committed anywhere reaches every
process within one interval — no decision lives only in one process's memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from asgiref.sync import sync_to_async

log = logging.getLogger("wardgate.gateway")


def _read_revision() -> int:
    from django.db import close_old_connections

    from portal.services.security import security_revision_current

    close_old_connections()
    return security_revision_current()


class RevisionWatcher:
    def __init__(self, interval: float, on_change: list[Callable[[], None]]) -> None:
        self.interval = interval
        self.on_change = on_change
        self.revision: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.revision = await sync_to_async(_read_revision, thread_sensitive=False)()
        self._task = asyncio.create_task(self._run(), name="wardgate-revision-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def check_now(self) -> None:
        current = await sync_to_async(_read_revision, thread_sensitive=False)()
        if current != self.revision:
            self.revision = current
            for callback in self.on_change:
                callback()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_now()
            except Exception:  # a database hiccup: drop caches anyway, to fail safe
                log.exception("could not read the security revision; dropping caches")
                for callback in self.on_change:
                    callback()
