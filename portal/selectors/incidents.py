"""Incidents and quarantines (IR-4) as admins and auditors list them."""

from __future__ import annotations

from django.db.models import QuerySet

from portal.models import Incident, Quarantine


def incident_list() -> QuerySet[Incident]:
    return Incident.objects.select_related("user", "reviewed_by")


def quarantine_list(*, lifted: bool | None = None) -> QuerySet[Quarantine]:
    """Quarantines; only those still in force (`lifted=False`) or only lifted ones (`True`)."""
    quarantines = Quarantine.objects.select_related("user", "connection", "created_by")
    if lifted is None:
        return quarantines
    return quarantines.filter(lifted_at__isnull=not lifted)
