"""Third-party MCP servers and clients from npm, for tests (pinned in tests/node/package.json).

`node_tools()` installs them once per test session (`npm ci` into tests/node/node_modules when
it is missing or older than the lock file) and returns how to run them. The packages bring
their own Node 22 (the `node` package), because the conformance suite and the inspector need
it while the machine may have an older one. Without npm the tests fail in CI (CI=true) and are
skipped elsewhere, with the reason.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
MODULES = NODE_DIR / "node_modules"
INSTALL_TIMEOUT_SECONDS = 600


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Fail in CI, where the tools must be there; skip elsewhere."""
    if in_ci():
        pytest.fail(f"CI must be able to run the third-party MCP tools: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class NodeTools:
    node: Path  # the Node 22 from node_modules (the machine's node may be older)

    def script(self, package_bin: str) -> Path:
        """The JavaScript file behind node_modules/.bin/<package_bin>."""
        return (MODULES / ".bin" / package_bin).resolve()

    def command(self, package_bin: str, *args: str) -> list[str]:
        """argv running a package's executable under our Node (not the #! line's node)."""
        return [str(self.node), str(self.script(package_bin)), *args]

    def binary(self, package: str, name: str) -> Path:
        """A native executable an npm package ships in a per-platform package (e.g. the MCP
        Toolbox's Go binary in @toolbox-sdk/server-linux-x64), run directly rather than
        through the package's Node launcher."""
        return MODULES / package / "bin" / name

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for these tools: our node first on PATH, for any child they start."""
        path = f"{MODULES / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "PATH": path, "NO_COLOR": "1", **extra}


def _installed() -> bool:
    marker = MODULES / ".package-lock.json"  # npm writes it last, after a complete install
    lock = NODE_DIR / "package-lock.json"
    if not marker.is_file():
        return False
    return not lock.is_file() or marker.stat().st_mtime >= lock.stat().st_mtime


def _install(npm: str) -> str | None:
    """Run npm; the reason it failed, or None."""
    # `npm install` with the lock file present installs the locked versions. `npm ci` would be
    # stricter but refuses this lock: the MCP Toolbox lists per-platform optional packages
    # (darwin, win32) that npm leaves out of a lock written on Linux.
    args = ["install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run([npm, *args], cwd=NODE_DIR, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return f"npm {args[0]} in {NODE_DIR} took over {INSTALL_TIMEOUT_SECONDS}s"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-2000:]
        return f"npm {args[0]} in {NODE_DIR} failed ({done.returncode}):\n{tail}"
    return None


@functools.cache
def _ensure() -> NodeTools | str:
    key = hashlib.sha256(str(NODE_DIR).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"wardgate-npm-{key}.lock"
    with open(lock_path, "w") as lock:  # concurrent sessions (xdist workers) install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            npm = shutil.which("npm")
            if npm is None:
                return "npm is not installed; the third-party MCP tests need Node.js and npm"
            failed = _install(npm)
            if failed:
                return failed
    node = MODULES / ".bin" / "node"
    if not node.exists():
        return f"{node} is missing after npm install (the node package's install script)"
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    if not version.startswith("v22."):
        return f"{node} is {version or 'not runnable'}, expected Node 22"
    return NodeTools(node=node)


def node_tools() -> NodeTools:
    """The installed tools, or a failure in CI / a skip elsewhere when they cannot be had."""
    found = _ensure()
    if isinstance(found, str):
        unavailable(found)
        raise AssertionError("unreachable")
    return found
