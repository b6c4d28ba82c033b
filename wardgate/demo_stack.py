"""Everything `manage.py demo` brings up, in order, and takes down again.

Emulator -> seed data -> BigQuery MCP server -> Celery worker -> gateway + portal (uvicorn).
Each child process is started in its own session so Ctrl-C stops them through us, in order.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

from bigquery_mcp.client import make_bigquery_client
from bigquery_mcp.emulator import BigQueryEmulator, free_port, stop_process
from bigquery_mcp.seed import SeedReport, seed_demo_dataset


class DemoError(RuntimeError):
    pass


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DemoError(f"{what} exited during start-up (code {proc.returncode})")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise DemoError(f"{what} did not answer on {url} within {timeout:.0f}s")


@dataclass
class DemoStack:
    workdir: Path
    port: int
    project: str
    dataset: str
    customers: int
    progress: Callable[[str], None] = print
    emulator: BigQueryEmulator | None = None
    seed_report: SeedReport | None = None
    mcp_port: int = 0
    children: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    server: uvicorn.Server | None = None
    server_thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.mcp_port}/mcp"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        log.close()
        self.children.append((name, proc))
        return proc

    def start_bigquery(self) -> None:
        t0 = time.monotonic()
        self.progress("Starting the BigQuery emulator ...")
        self.emulator = BigQueryEmulator(self.project, self.workdir).start()
        self.progress(f"  emulator ready at {self.emulator.endpoint} ({time.monotonic() - t0:.1f}s)")
        client = make_bigquery_client(self.project, self.emulator.endpoint)
        self.seed_report = seed_demo_dataset(client, self.dataset, customers=self.customers)
        rows = ", ".join(f"{n} {t}" for t, n in self.seed_report.rows.items())
        self.progress(f"  seeded {self.seed_report.dataset}: {rows}")

    def start_mcp_server(self) -> None:
        assert self.emulator is not None
        self.progress("Starting the BigQuery MCP server ...")
        self.mcp_port = free_port()
        proc = self._spawn("bigquery-mcp", [
            sys.executable, "-m", "bigquery_mcp", "--transport", "http", "--port", str(self.mcp_port),
            "--project", self.project, "--endpoint", self.emulator.endpoint,
        ])
        wait_http(self.mcp_url, 30, proc, "The BigQuery MCP server")
        self.progress(f"  MCP server ready at {self.mcp_url}")

    def start_worker(self) -> None:
        self.progress("Starting the Celery worker (embedded queue) ...")
        self._spawn("celery-worker", [
            sys.executable, "-m", "celery", "-A", "wardgate", "worker", "--pool=solo",
            "--concurrency=1", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
            # The embedded worker also runs the schedule (checkpoints, inactive accounts,
            # incident rules, monthly packs); production runs `celery beat` on its own.
            "--beat", f"--schedule={self.workdir / 'celerybeat-schedule'}",
        ])

    def start_web(self) -> None:
        self.progress(f"Starting the gateway and portal on {self.base_url} ...")
        config = uvicorn.Config("wardgate.asgi:application", host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on",
                                http="proxy.http_protocol:GuardedH11Protocol")
        self.server = uvicorn.Server(config)
        self.server_thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.server_thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.server_thread.is_alive() or time.monotonic() > deadline:
                raise DemoError(f"The web server could not start on port {self.port} "
                                "(is the port in use? try --port)")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            if self.server_thread is not None:
                self.server_thread.join(timeout=10)
        for name, proc in reversed(self.children):
            stop_process(proc)
            self.progress(f"  stopped {name}")
        self.children.clear()
        if self.emulator is not None:
            self.emulator.stop()
            self.progress("  stopped the BigQuery emulator")

    def watch(self, stop: threading.Event | None = None) -> None:
        """Block until Ctrl-C or `stop` (KeyboardInterrupt), or until a child dies (then say
        which)."""
        while stop is None or not stop.is_set():
            for name, proc in self.children:
                if proc.poll() is not None:
                    raise DemoError(f"{name} stopped unexpectedly (code {proc.returncode}); "
                                    f"see {self.workdir / (name + '.log')}")
            if self.emulator and self.emulator.process and self.emulator.process.poll() is not None:
                raise DemoError("the BigQuery emulator stopped unexpectedly")
            if self.server_thread is not None and not self.server_thread.is_alive():
                raise DemoError("the web server stopped unexpectedly")
            if stop is None:
                time.sleep(0.5)
            else:
                stop.wait(0.5)
        raise KeyboardInterrupt


@contextlib.contextmanager
def running(stack: DemoStack):  # type: ignore[no-untyped-def]
    try:
        yield stack
    finally:
        stack.stop()
