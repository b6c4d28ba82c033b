"""`manage.py audit_checkpoint [--export] [--by USER]`: sign the audit chain head; optionally copy
every checkpoint not yet exported to WARDGATE_CHECKPOINT_EXPORT (write-once). Recorded with who
ran it (--by USER, else the OS user), refusals included."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.actors import CLI_AUTH_METHOD, add_by_argument, command_actor
from audit.checkpoints import CheckpointError, checkpoint_run, store_for


class Command(BaseCommand):
    help = "Sign a checkpoint of the audit chain head (and export checkpoints with --export)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--export",
            action="store_true",
            help="copy checkpoints not yet exported to WARDGATE_CHECKPOINT_EXPORT",
        )
        parser.add_argument(
            "--to",
            metavar="DIR_OR_GS_URI",
            default=None,
            help="export to this location instead of WARDGATE_CHECKPOINT_EXPORT",
        )
        add_by_argument(parser)

    def handle(
        self, *args: Any, export: bool, to: str | None, by: str, **options: Any
    ) -> None:
        actor = command_actor(by, "audit_checkpoint")
        try:
            run = checkpoint_run(by=actor.name, auth_method=CLI_AUTH_METHOD,
                                 user_agent=actor.user_agent, export=export,
                                 store=store_for(to) if to else None)
        except CheckpointError as exc:
            raise CommandError(str(exc), returncode=1) from exc
        checkpoint = run.checkpoint
        if checkpoint is None:
            self.stdout.write("audit log is empty: nothing to checkpoint")
        else:
            self.stdout.write(
                f"checkpoint #{checkpoint.seq} {checkpoint.hash} signed at "
                f"{checkpoint.at.isoformat()} by key {checkpoint.key_id}"
            )
        if export or to:
            exported = run.exported
            self.stdout.write(
                f"exported {len(exported)} checkpoint(s)"
                + (f": #{exported[0].seq}..#{exported[-1].seq}" if exported else "")
            )
