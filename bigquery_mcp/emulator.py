"""Run the BigQuery emulator (`bqemulator`) as a child process, with no network at start-up.

bqemulator uses DuckDB, which downloads its `spatial` extension on first start. The PyPI
package `duckdb-extension-spatial` ships that file; we place it in a DuckDB extension
directory under a private HOME for the emulator, so nothing is fetched and the user's own
~/.duckdb is left alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class EmulatorError(RuntimeError):
    pass


def stop_process(proc: subprocess.Popen, grace: float = 10) -> None:
    """Terminate a child process; kill it if it is still there after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_spatial_extension(home: Path) -> Path:
    """Copy the packaged spatial extension to where DuckDB looks under `home`."""
    try:
        import duckdb
        import duckdb_extension_spatial
    except ImportError as exc:  # the demo/test extra is missing
        raise EmulatorError(
            "The BigQuery emulator needs the 'demo' extra: pip install -e '.[demo]'"
        ) from exc
    version = "v" + duckdb.__version__
    platform = duckdb.execute("PRAGMA platform").fetchone()[0]
    source = Path(duckdb_extension_spatial.__file__).parent / "extensions" / version
    source_file = source / "spatial.duckdb_extension"
    if not source_file.exists():
        raise EmulatorError(
            f"duckdb-extension-spatial does not match duckdb {duckdb.__version__} "
            f"(no {source_file}); install the versions pinned in pyproject.toml"
        )
    target_dir = home / ".duckdb" / "extensions" / version / platform
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "spatial.duckdb_extension"
    if not target.exists() or target.stat().st_size != source_file.stat().st_size:
        shutil.copyfile(source_file, target)
    return target


@dataclass
class BigQueryEmulator:
    """A running bqemulator; use as a context manager or call start()/stop()."""

    project: str
    workdir: Path
    rest_port: int = 0
    grpc_port: int = 0
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def start(self, timeout: float = 60.0) -> BigQueryEmulator:
        home = self.workdir / "emulator-home"
        install_spatial_extension(home)
        self.rest_port = self.rest_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        exe = Path(sys.executable).with_name("bqemulator")
        if not exe.exists():
            raise EmulatorError("bqemulator is not installed: pip install -e '.[demo]'")
        env = {**os.environ, "HOME": str(home)}
        log = open(self.workdir / "emulator.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [
                str(exe), "start", "--project", self.project,
                "--rest-port", str(self.rest_port), "--grpc-port", str(self.grpc_port),
                "--log-level", "warning",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        url = f"{self.endpoint}/bigquery/v2/projects/{self.project}/datasets"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = (self.workdir / "emulator.log").read_text(errors="replace")[-2000:]
                raise EmulatorError(f"BigQuery emulator exited at start-up:\n{tail}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise EmulatorError(f"BigQuery emulator did not answer on {self.endpoint} in {timeout}s")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def __enter__(self) -> BigQueryEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
