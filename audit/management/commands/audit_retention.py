"""`manage.py audit_retention [--dry-run] [--by USER]`: purge audit records past retention that a signed
checkpoint and an exported evidence pack cover (never under a legal hold). The purge record names who ran it (--by, else the OS user)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.actors import CLI_AUTH_METHOD, add_by_argument, command_actor
from audit.retention import RetentionError, retention_purge


class Command(BaseCommand):
    help = "Purge audit records older than WARDGATE_AUDIT_RETENTION_DAYS that may be purged."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="say what would be purged")
        parser.add_argument("--days", type=int, default=None, help="override the retention days")
        add_by_argument(parser)

    def handle(self, *args: Any, dry_run: bool, days: int | None, by: str,
               **options: Any) -> None:
        actor = command_actor(by, "audit_retention")
        try:
            result = retention_purge(retention_days=days, dry_run=dry_run, by=actor.name,
                                     auth_method=CLI_AUTH_METHOD)
        except RetentionError as exc:
            raise CommandError(str(exc), returncode=1) from exc
        if result.purged and not dry_run:
            self.stdout.write(
                f"purged records {result.from_seq}..{result.to_seq} ({result.purged}); "
                f"recorded as #{result.purge_record_seq}, checkpoint #{result.checkpoint_seq}"
            )
        elif result.purged:
            self.stdout.write(
                f"would purge records {result.from_seq}..{result.to_seq} ({result.purged})"
            )
        else:
            self.stdout.write(f"nothing purged: {result.skipped}")
        if result.export_error:
            raise CommandError(f"checkpoint export failed: {result.export_error}", returncode=1)
