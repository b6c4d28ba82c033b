"""`manage.py audit_checkpoint [--export]`: sign the audit chain head; optionally copy every
checkpoint not yet exported to WARDGATE_CHECKPOINT_EXPORT (write-once)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.checkpoints import CheckpointError, checkpoint_create, checkpoint_export, store_for


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

    def handle(self, *args: Any, export: bool, to: str | None, **options: Any) -> None:
        try:
            checkpoint = checkpoint_create()
            if checkpoint is None:
                self.stdout.write("audit log is empty: nothing to checkpoint")
            else:
                self.stdout.write(
                    f"checkpoint #{checkpoint.seq} {checkpoint.hash} signed at "
                    f"{checkpoint.at.isoformat()} by key {checkpoint.key_id}"
                )
            if export or to:
                exported = checkpoint_export(store=store_for(to) if to else None)
                self.stdout.write(
                    f"exported {len(exported)} checkpoint(s)"
                    + (f": #{exported[0].seq}..#{exported[-1].seq}" if exported else "")
                )
        except CheckpointError as exc:
            raise CommandError(str(exc), returncode=1) from exc
