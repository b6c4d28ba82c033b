"""Group-commit audit writer for the async gateway (the hot path).

`await writer.write(entry)` returns once the record is committed; the gateway fails the call
closed if it raises. One background task drains the queue: it takes everything waiting (up to
`max_batch`), appends the batch in one transaction on one dedicated thread, then resolves every
waiter. While a batch commits, new entries pile up and go into the next one, so under load one
commit (one fsync, one lock of the chain head) is shared by many calls.

The thread is a single-worker executor so the writer has its own Django connection, kept open
between batches (CONN_MAX_AGE=0 is meant for request threads; reconnecting per batch would cost
more than the commit on PostgreSQL). It is discarded after a failure and health-checked after
idling, so a database restart costs at most the batch in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections

from .models import AuditRecord
from .services import AuditEntry, append_prepared, append_records, prepare_entry

log = logging.getLogger(__name__)

IDLE_HEALTH_CHECK_SECONDS = 30.0


class AuditWriteError(Exception):
    """The entry could not be recorded; the audited action must not proceed."""


class AuditWriterClosed(AuditWriteError):
    """`write` was called while the writer is not running."""


@dataclass(slots=True)
class WriterStats:
    batches: int = 0
    records: int = 0
    failed_batches: int = 0
    largest_batch: int = 0


_Pending = tuple[AuditEntry, "asyncio.Future[AuditRecord]"]

# Figures for whoever watches the writer (the gateway's metrics); audit imports no other app.
# on_queue_depth(entries waiting); on_batch(seconds to commit, batch size, committed or not).
QueueDepthHook = Callable[[int], None]
BatchHook = Callable[[float, int, bool], None]


def _guarded(hook: Callable[..., None] | None) -> Callable[..., None]:
    """A hook that can never break the writer (a failing figure is only logged)."""
    if hook is None:
        return lambda *_: None

    def call(*args: object) -> None:
        try:
            hook(*args)
        except Exception:  # noqa: BLE001 - metrics must not stop the audit trail
            log.debug("audit writer hook failed", exc_info=True)

    return call


def write_sync(entry: AuditEntry) -> AuditRecord:
    """Append one record from synchronous code (portal services, management commands)."""
    return append_records([entry])[0]


class AuditWriter:
    """One per process (per event loop): `start()` in the ASGI lifespan start-up, `stop()` at
    shutdown. `write` must be awaited on the loop that started the writer."""

    def __init__(self, *, max_batch: int = 500, using: str = DEFAULT_DB_ALIAS,
                 on_queue_depth: QueueDepthHook | None = None,
                 on_batch: BatchHook | None = None) -> None:
        self.max_batch = max_batch
        self.using = using
        self._on_queue_depth: QueueDepthHook = _guarded(on_queue_depth)
        self._on_batch: BatchHook = _guarded(on_batch)
        self.stats = WriterStats()
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._accepting = False
        # Touched only on the writer thread.
        self._last_batch_at = 0.0
        self._connection_suspect = False

    write_sync = staticmethod(write_sync)

    @property
    def running(self) -> bool:
        return self._accepting

    async def start(self) -> None:
        if self._task is not None:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Refuse new writes, commit everything already queued, release the thread."""
        if self._task is None or self._queue is None or self._executor is None:
            return
        self._accepting = False
        self._queue.put_nowait(None)  # sentinel: queued after every accepted entry
        try:
            await self._task
        finally:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._close_connection)
            self._executor.shutdown(wait=True)
            self._task = self._queue = self._executor = None

    async def write(self, entry: AuditEntry) -> AuditRecord:
        """Record `entry`; returns the committed record or raises AuditWriteError.

        If the caller is cancelled after queueing, the entry is still written: an audit record
        is never dropped because the client went away.
        """
        return await self.submit(entry)

    def submit(self, entry: AuditEntry) -> asyncio.Future[AuditRecord]:
        """Queue `entry` now (so it is written even if nobody awaits it) and return the future
        that resolves once it is committed, or fails with AuditWriteError. Entries are
        committed in the order they are submitted."""
        if not self._accepting or self._queue is None:
            raise AuditWriterClosed("the audit writer is not running")
        future: asyncio.Future[AuditRecord] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((entry, future))
        self._on_queue_depth(self._queue.qsize())
        return future

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        stopping = False
        try:
            while not stopping:
                item = await queue.get()
                if item is None:
                    break
                batch = [item]
                while len(batch) < self.max_batch:
                    try:
                        item = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if item is None:
                        stopping = True  # nothing is queued after the sentinel
                        break
                    batch.append(item)
                self._on_queue_depth(queue.qsize())
                await self._commit(loop, batch)
        finally:
            # Only reached with entries still queued if this task was cancelled (event loop
            # shutting down): fail their waiters rather than leave them hanging.
            while not queue.empty():
                pending = queue.get_nowait()
                if pending is not None and not pending[1].done():
                    pending[1].set_exception(AuditWriterClosed("the audit writer was cancelled"))

    async def _commit(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        assert self._executor is not None
        entries = [entry for entry, _ in batch]
        started = time.perf_counter()
        try:
            outcomes = await loop.run_in_executor(self._executor, self._append_batch, entries)
        except BaseException as exc:  # noqa: BLE001 - every waiter must hear about it
            self.stats.failed_batches += 1
            self._on_batch(time.perf_counter() - started, len(batch), False)
            log.error("audit batch of %d failed: %r", len(batch), exc)
            for _, future in batch:
                if not future.done():
                    error = AuditWriteError(f"audit record not written: {exc}")
                    error.__cause__ = exc
                    future.set_exception(error)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self._on_batch(time.perf_counter() - started, len(batch), True)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, AuditRecord):
                self.stats.records += 1
                if not future.done():
                    future.set_result(outcome)
            elif not future.done():
                error = AuditWriteError(f"audit entry rejected: {outcome}")
                error.__cause__ = outcome
                future.set_exception(error)

    # --- on the writer thread -------------------------------------------------------------

    def _append_batch(self, entries: list[AuditEntry]) -> list[AuditRecord | Exception]:
        """Append the entries that can be recorded in one transaction; report the others.

        An entry that cannot be normalised fails alone; a database failure fails the batch
        (raised, so every waiter gets it).
        """
        self._refresh_connection()
        prepared: list[dict[str, Any]] = []
        errors: list[Exception | None] = []
        for entry in entries:
            try:
                prepared.append(prepare_entry(entry))
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - no database here: the entry's own fault
                errors.append(exc)
        try:
            records = iter(append_prepared(prepared, using=self.using))
        except BaseException:
            self._connection_suspect = True
            raise
        finally:
            self._last_batch_at = time.monotonic()
        return [next(records) if error is None else error for error in errors]

    def _refresh_connection(self) -> None:
        connection = connections[self.using]
        if self._connection_suspect:
            # After a failure the connection may be broken or mid-transaction: start afresh.
            self._connection_suspect = False
            close_old_connections()
            connection.close()
        elif (
            connection.connection is not None
            and time.monotonic() - self._last_batch_at > IDLE_HEALTH_CHECK_SECONDS
            and not connection.is_usable()
        ):
            # The server may have dropped an idle connection; find out before the batch does.
            connection.close()

    def _close_connection(self) -> None:
        connections[self.using].close()
