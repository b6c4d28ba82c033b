"""`manage.py policy_apply policy.yaml [--dry-run] --reason TEXT [--by USER]`: print what would
change, then apply it (group grants are declarative: those not listed are revoked). Recorded
with who ran it (--by, else the OS user)."""

from __future__ import annotations

import yaml
from django.core.management.base import BaseCommand, CommandError

from audit.actors import add_by_argument, command_actor
from portal.services.events import meta_from_command
from portal.services.policy import PolicyError, policy_apply, policy_diff


class Command(BaseCommand):
    help = "Apply a policy YAML file (see policy_export); prints the diff first."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("file")
        parser.add_argument("--dry-run", action="store_true", help="print the diff only")
        parser.add_argument("--reason", default="", help="why (recorded with the policy version)")
        add_by_argument(parser)

    def handle(self, *args, **opts) -> None:  # type: ignore[no-untyped-def]
        try:
            with open(opts["file"], encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError) as exc:
            raise CommandError(f"Cannot read {opts['file']}: {exc}") from exc
        actor = command_actor(opts["by"], "policy_apply")
        try:
            diff = policy_diff(data)
        except PolicyError as exc:
            raise CommandError(f"Invalid policy: {exc}") from exc
        if diff.empty:
            self.stdout.write("No changes.")
            return
        for line in diff.lines:
            self.stdout.write(line)
        if opts["dry_run"]:
            self.stdout.write(f"{len(diff.lines)} change(s); dry run, nothing applied.")
            return
        reason = opts["reason"] or f"manage.py policy_apply {opts['file']}"
        try:
            policy_apply(data=data, by=actor.user, reason=reason, meta=meta_from_command(actor))
        except PolicyError as exc:
            raise CommandError(f"Invalid policy: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"Applied {len(diff.lines)} change(s)."))
