"""A random secret made for one installation and kept in a file (no Django, no app imports:
settings use it).

The demo needs secrets that are neither in the database nor derivable from the source code: a
key derived from the demo's built-in Django secret is public, so it protects nothing against
someone who can write the database (the audit chain key is such a secret).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

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
