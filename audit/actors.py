"""Who ran a state-changing management command (AU-3): `--by USERNAME` (an active account),
else the operating-system user, recorded as `os:<name>`. Every such command records it."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Any

from django.core.management.base import CommandError, CommandParser

CLI_AUTH_METHOD = "cli"


@dataclass(frozen=True, slots=True)
class CommandActor:
    name: str  # the account's username, or os:<user>
    user: Any  # the account named by --by, or None
    command: str

    @property
    def user_agent(self) -> str:
        return f"manage.py {self.command}"


def add_by_argument(parser: CommandParser) -> None:
    parser.add_argument("--by", default="", metavar="USERNAME",
                        help="the account running this (recorded; default: the OS user)")


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def command_actor(by: str, command: str) -> CommandActor:
    """Resolve `--by`; a name that is not an active account is an error, never a guess."""
    if by:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(username=by, is_active=True).first()
        if user is None:
            raise CommandError(f"--by: no active account {by!r}")
        return CommandActor(name=user.get_username(), user=user, command=command)
    return CommandActor(name=f"os:{os_user()}"[:150], user=None, command=command)
