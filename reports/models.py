"""Evidence packs: one row per pack requested, built by Celery, signed and stored as a zip."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class EvidencePack(models.Model):
    """A signed zip of evidence for a period of audit records and a set of NIST controls.

    The period is [period_start, period_end): `period_end` is exclusive (a pack "to 31 March"
    ends at 1 April 00:00 UTC). `audit.retention` treats a pack with status EXPORTED as holding
    the records of its period, so EXPORTED is set only once the zip is complete, signed and
    stored under WARDGATE_PACK_DIR; a pack for a subset of controls may not hold every record
    (`includes_records` says whether it does).
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        EXPORTED = "exported"  # built, signed and stored
        FAILED = "failed"

    class Trigger(models.TextChoices):
        MANUAL = "manual"
        SCHEDULE = "schedule"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    controls = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)  # percent
    stage = models.CharField(max_length=200, blank=True, default="")
    records_processed = models.BigIntegerField(default=0)  # audit records read so far
    # A period that had not ended when the pack was requested: built only when asked for, and
    # then marked PARTIAL on the cover, in the manifest and in OSCAL.
    partial = models.BooleanField(default=False)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    task_id = models.CharField(max_length=64, blank=True, default="")
    parameters = models.JSONField(default=dict, blank=True)
    # The result: where the zip is (relative to WARDGATE_PACK_DIR), its SHA-256, the base64
    # Ed25519 signature over its manifest.json and the signing key's id.
    file_name = models.CharField(max_length=300, blank=True, default="")
    file_size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    manifest_sha256 = models.CharField(max_length=64, blank=True, default="")
    signature = models.CharField(max_length=128, blank=True, default="")
    key_id = models.CharField(max_length=32, blank=True, default="")
    summary = models.JSONField(default=dict, blank=True)  # per-control status and counts
    # Whether the pack holds every audit record of its period (csv/audit-records.csv): only such
    # packs can stand in for records that retention purges.
    includes_records = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "period_start"], name="reports_pack_status_idx")]
        constraints = [
            models.CheckConstraint(condition=models.Q(period_end__gt=models.F("period_start")),
                                   name="reports_pack_period_order"),
        ]

    def __str__(self) -> str:
        return (f"evidence pack {self.uuid} {self.period_start:%Y-%m-%d}.."
                f"{self.period_end:%Y-%m-%d} ({self.status})")

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.EXPORTED, self.Status.FAILED}
