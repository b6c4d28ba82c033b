"""`manage.py policy_apply policy.yaml [--dry-run] --reason TEXT [--by USER]`: print what would
change, then apply it (group grants are declarative: those not listed are revoked)."""

from __future__ import annotations

import yaml
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.services.policy import PolicyError, policy_apply, policy_diff


class Command(BaseCommand):
    help = "Apply a policy YAML file (see policy_export); prints the diff first."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("file")
        parser.add_argument("--dry-run", action="store_true", help="print the diff only")
        parser.add_argument("--reason", default="", help="why (recorded with the policy version)")
        parser.add_argument("--by", default="", help="the admin account applying it")

    def handle(self, *args, **opts) -> None:  # type: ignore[no-untyped-def]
        try:
            with open(opts["file"], encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError) as exc:
            raise CommandError(f"Cannot read {opts['file']}: {exc}") from exc
        by = None
        if opts["by"]:
            by = get_user_model().objects.filter(username=opts["by"], is_active=True).first()
            if by is None:
                raise CommandError(f"No active user {opts['by']!r}")
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
            policy_apply(data=data, by=by, reason=reason)
        except PolicyError as exc:
            raise CommandError(f"Invalid policy: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"Applied {len(diff.lines)} change(s)."))
