"""The security revision: bumped by every change that can take access away."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from portal.models import SecurityRevision


def security_revision_bump() -> None:
    """Tell every gateway process to drop cached identities, grants and policies.

    Runs on commit so a gateway never reloads before the change is visible to it.
    """

    def bump() -> None:
        updated = SecurityRevision.objects.filter(pk=1).update(value=F("value") + 1)
        if not updated:
            SecurityRevision.objects.get_or_create(pk=1, defaults={"value": 1})

    transaction.on_commit(bump)


def security_revision_current() -> int:
    row = SecurityRevision.objects.filter(pk=1).values_list("value", flat=True).first()
    return row or 0
