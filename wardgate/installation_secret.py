"""A random secret made for one installation and kept in a file (no Django, no app imports:
settings use it).

The demo needs secrets that are neither in the database nor derivable from the source code: a
key derived from the demo's built-in Django secret is public, so it protects nothing against
someone who can write the database (the audit chain key is such a secret).
`demo_installation_key` is how each app's configuration reads such a key: its variable, or in
the demo one made for the installation.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from wardgate.env import Env, deployment

MIN_LENGTH = 32


class InstallationSecretError(ValueError):
    """The secret file exists but does not hold a usable secret."""


def _read(path: Path) -> str:
    value = path.read_text(encoding="ascii").strip()
    if len(value) < MIN_LENGTH:
        raise InstallationSecretError(f"{path} holds no secret of {MIN_LENGTH}+ characters")
    return value


def installation_secret(path: Path) -> str:
    """The secret kept in `path`, made (64 random hex digits, file mode 0600) on first use and
    never overwritten. Processes starting together agree: the file appears whole or not at all
    (written aside, then hard-linked into place), and the first one linked wins."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)
    return _read(path)


def demo_installation_key(env: Env, variable: str, file_name: str, *, what: str,
                          derive: Callable[[str], str] = str) -> tuple[str, bool]:
    """The key `variable` configures, and whether the demo's was made here.

    Unset, production has none (""; its configuration notes the missing key). The demo's is
    `derive`d from the installation secret in VAR_DIR/`file_name` (0600), and exported, so the
    processes started from this one (the demo's web server and worker, test gateways with a
    VAR_DIR of their own) use the same key. A secret file that cannot be used is noted as a
    problem naming `what` and the variable that replaces it."""
    value = env.optional_text(variable)
    if value is not None:
        return value, False
    deploy = deployment(env)
    if deploy.production:
        return "", False
    key_file = deploy.var_dir / file_name
    try:
        value = derive(installation_secret(key_file))
    except (OSError, ValueError) as exc:
        env.problem(f"the demo's {what} cannot be kept in {key_file} ({exc}); set {variable}")
        return "", False
    env.export(variable, value)
    return value, True
