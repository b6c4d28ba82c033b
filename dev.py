#!/usr/bin/env python3
"""Set up and run Wardgate from a fresh clone with nothing but Python 3.11+.

    python3 dev.py demo      # create .venv, install, run `manage.py demo` (extra args pass on)
    python3 dev.py test      # create .venv, install, check the import layers (lint-imports),
                             # run the test suite on SQLite and on PostgreSQL, side by side

The virtual environment is re-installed only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".wardgate-installed"
POSTGRES_URL = os.environ.get("WARDGATE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/wardgate_test")
REDIS_URL = os.environ.get("WARDGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# The PostgreSQL run's own Redis database, beside the SQLite run's.
POSTGRES_RUN_REDIS_URL = os.environ.get("WARDGATE_TEST_POSTGRES_REDIS_URL",
                                        "redis://127.0.0.1:6379/14")


def ensure_venv() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PY.exists():
        print("Creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("Installing Wardgate and its dependencies into .venv (a few minutes the first time) ...",
          flush=True)
    log = VENV / "install.log"
    with log.open("w") as out:
        for args in (["--upgrade", "pip"], ["-e", f"{ROOT}[test]"]):
            done = subprocess.run([str(PY), "-m", "pip", "install", *args], stdout=out,
                                  stderr=subprocess.STDOUT)
            if done.returncode != 0:
                print(log.read_text()[-4000:], file=sys.stderr)
                sys.exit(f"pip install failed (full log: {log})")
    STAMP.write_text(wanted)


# Debian packages some tests drive: Chromium (portal browser tests, via Playwright with
# executable_path — never `playwright install`) and poppler (PDF pages to PNG/text).
SYSTEM_TOOLS = {"chromium": "chromium", "pdftoppm": "poppler-utils", "pdftotext": "poppler-utils"}


def ensure_system_tools() -> None:
    import shutil

    missing = sorted({pkg for tool, pkg in SYSTEM_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"Missing {', '.join(missing)}: the tests that need them are skipped "
              f"(install with: apt-get install {' '.join(missing)})", flush=True)
        return
    print(f"Installing {', '.join(missing)} (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=False)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                   env=env, stdout=subprocess.DEVNULL, check=True)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def run_tests(extra: list[str]) -> int:
    base_env = {**os.environ, "WARDGATE_FAST_PASSWORD_HASHER": "1"}
    base_env.pop("DATABASE_URL", None)
    in_ci = os.environ.get("CI", "").lower() == "true"
    have_pg = reachable("127.0.0.1", 5432)
    have_redis = reachable("127.0.0.1", 6379)
    if in_ci and not (have_pg and have_redis):
        print("CI needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379", file=sys.stderr)
        return 1
    if have_redis:
        base_env["WARDGATE_TEST_REDIS_URL"] = REDIS_URL
    # The layer contracts in pyproject.toml ([tool.importlinter]): an import that goes the wrong
    # way fails the build before any test runs.
    print("== import layers (lint-imports) ==", flush=True)
    code = subprocess.run([str(VENV / "bin" / "lint-imports")], cwd=ROOT).returncode
    if code != 0:
        return code
    pytest = [str(PY), "-m", "pytest", *extra]
    if not have_pg:
        print("== tests on SQLite ==", flush=True)
        code = subprocess.run(pytest, cwd=ROOT, env=base_env).returncode
        print("PostgreSQL is not running on 127.0.0.1:5432: skipped the PostgreSQL run.")
        return code
    # Both runs at once: each spends much of its time waiting on the processes it starts
    # (emulator, gateways, browsers), so side by side they take little more than the longer
    # one. Each has its own database, Redis database and state directory.
    pg_env = {**base_env, "DATABASE_URL": POSTGRES_URL,
              "WARDGATE_VAR_DIR": str(ROOT / "var" / "postgresql-run"),
              "WARDGATE_SCREENSHOT_DIR": str(ROOT / "var" / "postgresql-run" / "screenshots")}
    if have_redis:
        pg_env["WARDGATE_TEST_REDIS_URL"] = POSTGRES_RUN_REDIS_URL
    with tempfile.TemporaryFile() as pg_output:
        print("== tests on SQLite (PostgreSQL runs beside it: its output follows) ==", flush=True)
        pg_run = subprocess.Popen(pytest + ["-m", "not embedded_only"], cwd=ROOT, env=pg_env,
                                  stdout=pg_output, stderr=subprocess.STDOUT)
        try:
            sqlite_code = subprocess.run(pytest, cwd=ROOT, env=base_env).returncode
            pg_code = pg_run.wait()
        finally:
            if pg_run.poll() is None:  # interrupted: stop the other run too
                pg_run.terminate()
                pg_run.wait()
        print("== tests on PostgreSQL ==", flush=True)
        pg_output.seek(0)
        shutil.copyfileobj(pg_output, sys.stdout.buffer)
        sys.stdout.flush()
    print(f"SQLite run: exit {sqlite_code}; PostgreSQL run: exit {pg_code}", flush=True)
    return sqlite_code or pg_code


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"demo", "test"}:
        print(__doc__)
        return 2
    ensure_venv()
    command, extra = sys.argv[1], sys.argv[2:]
    if command == "test":
        ensure_system_tools()
        return run_tests(extra)
    return subprocess.run([str(PY), str(ROOT / "manage.py"), "demo", *extra], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
