"""`manage.py policy_export > policy.yaml`: roles, group grants and connections' policy as YAML
(never credentials)."""

from __future__ import annotations

import yaml
from django.core.management.base import BaseCommand

from portal.services.policy import policy_export


class Command(BaseCommand):
    help = "Print the policy (roles, group grants, connections' policy fields) as YAML."

    def handle(self, *args, **opts) -> None:  # type: ignore[no-untyped-def]
        self.stdout.write(yaml.safe_dump(policy_export(), sort_keys=False, allow_unicode=True),
                          ending="")
