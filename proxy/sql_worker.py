"""SQL analysis off the event loop: in worker processes, under a time budget.

The gateway and the portal share one event loop, so CPU spent parsing a hostile statement
there stalls everyone. Statements are analysed in a few worker processes instead; the caller
awaits the answer without holding the loop (or the GIL). A statement that passes the bounds
of proxy.sql_limits but still takes longer than the budget is refused as "too complex" and its
worker is killed and replaced, so the CPU it was burning is given back at once. Answers
(refusals included) are cached here, in the calling process, so a repeated statement costs a
dictionary lookup and never a trip to a worker.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from multiprocessing.connection import Connection
from typing import Any

import anyio

from policy.sql_analysis import SqlAnalysis, SqlAnalysisError
from proxy.sql_limits import SqlLimits, check_sql_limits

log = logging.getLogger("wardgate.sql")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main() -> None:
    """A worker process's entry point (a fresh interpreter: never a fork of a threaded
    process, and never a re-run of whatever script started the gateway). Requests arrive on
    stdin; answers leave on a private copy of stdout, while fd 1 is pointed at stderr so a
    stray print cannot corrupt the channel."""
    out = os.dup(1)
    os.dup2(2, 1)
    _serve(Connection(0, writable=False), Connection(out, readable=False))


def _serve(conn: Connection, reply_to: Connection) -> None:
    """Answer ("datasets" | "analyze", args, schema_version, schema) requests."""
    from policy.sql_analysis import analyze_sql_cached, referenced_datasets

    schema: Mapping[str, Mapping[str, str]] | None = None
    schema_version: Hashable = None
    reply_to.send(("ready", None))  # imports done: the budget applies from here on
    while True:
        try:
            op, args, version, sent_schema = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if op == "datasets":
                result: Any = referenced_datasets(*args)
            else:
                if sent_schema is not None:
                    schema, schema_version = sent_schema, version
                sql, project, dataset = args
                result = analyze_sql_cached(
                    sql, default_project=project, default_dataset=dataset,
                    schema=schema if version == schema_version else None, schema_version=version)
            reply: tuple[str, Any] = ("ok", result)
        except SqlAnalysisError as exc:
            reply = ("err", (exc.code, exc.detail))
        except Exception as exc:  # noqa: BLE001 - any failure is a refusal, never a pass
            reply = ("err", ("sql.analysis_failed", f"SQL analysis failed ({type(exc).__name__})"))
        reply_to.send(reply)


class _Worker:
    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from proxy.sql_worker import _main; _main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=_ROOT)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.to_worker = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.conn = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        self.schema_version: Hashable = object()  # what this worker holds
        self.ready = False

    def wait_ready(self, timeout: float) -> bool:
        if not self.ready and self.conn.poll(timeout):
            self.ready = self.conn.recv()[0] == "ready"
        return self.ready

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=5)
        self.conn.close()
        self.to_worker.close()


class SqlWorkers:
    """A small pool of analysis processes with a per-statement time budget and an answer cache
    in front. Thread-safe; `datasets` and `analyze` are awaitable from any event loop."""

    # A call waits this long for a free worker (one killed for overrunning is replaced at
    # once, which takes a fresh interpreter's start-up) before it is refused as busy.
    WAIT_FOR_WORKER_SECONDS = 30.0
    START_SECONDS = 60.0  # a new worker's imports, on a loaded machine

    def __init__(self, limits: SqlLimits, *, cache_entries: int = 4096,
                 cache_chars: int = 32 * 1024 * 1024) -> None:
        self.limits = limits
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._started = 0
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._cache_chars = 0
        self._cache_entries, self._cache_max_chars = cache_entries, cache_chars
        self._threads = anyio.CapacityLimiter(max(4, limits.workers * 4))
        self.killed = 0  # workers killed for running over budget (for benches and tests)

    async def datasets(self, sql: str, project: str, dataset: str | None) -> frozenset[str]:
        """The "project.dataset" names `sql` mentions (to fetch their schemas first)."""
        return await self._ask("datasets", (sql, project, dataset), None, None)

    async def analyze(self, sql: str, *, project: str, dataset: str | None,
                      schema: Mapping[str, Mapping[str, str]], schema_version: Hashable,
                      ) -> SqlAnalysis:
        # One facts version serves several merged schemas (one per set of datasets), each a
        # distinct object kept while the version lives: identity tells them apart.
        return await self._ask("analyze", (sql, project, dataset), (schema_version, id(schema)),
                               schema)

    def warm(self) -> None:
        """Start every worker now (in the background), so no call waits for one to start."""
        def start() -> None:
            workers = []
            while (worker := self._new_worker()) is not None:
                workers.append(worker)
            for worker in workers:
                worker.wait_ready(self.START_SECONDS)
                self._idle.put(worker)

        threading.Thread(target=start, daemon=True, name="wardgate-sql-warm").start()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                return

    # ------------------------------------------------------------------ internals

    async def _ask(self, op: str, args: tuple, version: Hashable, schema: Any) -> Any:
        key = (op, *args, version)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is None:
            # The bounds first, here (lexing is linear and cheap; in a thread, off the loop), so
            # an oversized text is refused at once whatever the workers are doing.
            try:
                await anyio.to_thread.run_sync(check_sql_limits, args[0], self.limits,
                                               limiter=self._threads)
            except SqlAnalysisError as exc:
                answer: tuple[str, Any] = ("err", (exc.code, exc.detail))
            else:
                answer = await anyio.to_thread.run_sync(self._run, op, args, version, schema,
                                                        limiter=self._threads)
            if answer[0] != "retry":  # refusals are cached: a hostile text costs work once
                self._remember(key, answer, len(args[0]))
        else:
            answer = hit[0]
        if answer[0] == "ok":
            return answer[1]
        raise SqlAnalysisError(*answer[1])

    def _remember(self, key: tuple, answer: tuple[str, Any], size: int) -> None:
        if size > self._cache_max_chars:
            return
        with self._lock:
            old = self._cache.pop(key, None)
            self._cache_chars += size - (old[1] if old else 0)
            self._cache[key] = (answer, size)
            while len(self._cache) > self._cache_entries or self._cache_chars > self._cache_max_chars:
                _, (_, evicted) = self._cache.popitem(last=False)
                self._cache_chars -= evicted

    def _acquire(self) -> _Worker | None:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        worker = self._new_worker()
        if worker is not None:
            return worker
        try:
            return self._idle.get(timeout=max(self.WAIT_FOR_WORKER_SECONDS,
                                              3 * self.limits.budget_seconds))
        except queue.Empty:
            return None

    def _new_worker(self) -> _Worker | None:
        with self._lock:
            if self._started >= self.limits.workers:
                return None
            self._started += 1
        return _Worker()

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._started -= 1
        self.warm()

    def _run(self, op: str, args: tuple, version: Hashable, schema: Any) -> tuple[str, Any]:
        worker = self._acquire()
        if worker is None:
            return ("retry", ("sql.analysis_busy",
                             "SQL analysis is saturated; try again in a moment"))
        send_schema = schema if op == "analyze" and worker.schema_version != version else None
        try:
            if not worker.wait_ready(self.START_SECONDS):
                raise EOFError("the worker did not start")
            worker.to_worker.send((op, args, version, send_schema))
            if worker.conn.poll(self.limits.budget_seconds):
                answer = worker.conn.recv()
                if send_schema is not None:
                    worker.schema_version = version
                self._idle.put(worker)
                return answer
        except (EOFError, OSError) as exc:
            log.warning("SQL worker died (%s); replacing it", type(exc).__name__)
            self._replace(worker)
            return ("retry", ("sql.analysis_failed",
                              "SQL analysis failed; the statement is refused"))
        self.killed += 1
        self._replace(worker)
        return ("err", ("sql.too_complex",
                        f"SQL too complex: its analysis took longer than "
                        f"{self.limits.budget_seconds:g} s"))


_DEFAULT: SqlWorkers | None = None
_DEFAULT_LOCK = threading.Lock()


def default_sql_workers() -> SqlWorkers:
    """The process-wide pool, sized and bounded by the gateway configuration on first use."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            from proxy.config import gateway_config

            _DEFAULT = SqlWorkers(gateway_config().sql_limits)
        return _DEFAULT
