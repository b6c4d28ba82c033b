"""`manage.py audit_legal_hold`: list, place (--place REASON) or release (--release ID) legal
holds, recorded with who did it (--by USER, else the OS user). While one is active, retention
purges nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.actors import add_by_argument, command_actor
from audit.control_models import LegalHold
from audit.retention import legal_hold_place, legal_hold_release


class Command(BaseCommand):
    help = "List, place or release legal holds on the audit log."

    def add_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--place", metavar="REASON", default=None)
        action.add_argument("--release", metavar="ID", type=int, default=None)
        add_by_argument(parser)

    def handle(
        self, *args: Any, place: str | None, release: int | None, by: str, **options: Any
    ) -> None:
        who = command_actor(by, "audit_legal_hold").name
        if place:
            hold = legal_hold_place(reason=place, created_by=who)
            self.stdout.write(f"placed {hold}")
            return
        if release is not None:
            found = LegalHold.objects.filter(pk=release).first()
            if found is None:
                raise CommandError(f"no legal hold #{release}")
            self.stdout.write(f"released {legal_hold_release(found, released_by=who)}")
            return
        for hold in LegalHold.objects.all():
            self.stdout.write(
                f"#{hold.pk} {'active' if hold.active else 'released'} since "
                f"{hold.created_at:%Y-%m-%d} by {hold.created_by}: {hold.reason}"
            )
