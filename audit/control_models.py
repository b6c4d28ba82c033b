"""Models for the controls around the audit log: signed checkpoints, SIEM export cursors and
legal holds.

They live outside the chain's own module and are imported at the end of `audit.models`, so
their tables and migrations belong to the `audit` app like the records they protect.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .signing import checkpoint_message


class AuditCheckpoint(models.Model):
    """A signed statement "the chain had `hash` at record `seq`, at time `at`".

    The signed fields never change (a trigger from migration 0004 refuses it); `exported_at`
    records when the checkpoint reached the external write-once location. Someone with write
    access to the database can still delete or replace these rows, which is why `audit_verify
    --checkpoints-from` verifies against the exported copies instead.
    """

    seq = models.BigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    at = models.DateTimeField()
    signature = models.CharField(max_length=128)  # base64 of the 64-byte Ed25519 signature
    key_id = models.CharField(max_length=32)
    exported_at = models.DateTimeField(null=True, blank=True)
    export_location = models.CharField(max_length=1000, blank=True, default="")

    class Meta:
        app_label = "audit"
        db_table = "audit_checkpoint"
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"audit checkpoint #{self.seq} {self.hash[:12]} at {self.at:%Y-%m-%d %H:%M:%S}"

    def message(self) -> bytes:
        return checkpoint_message(self.seq, self.hash, self.at)


class ExportCursor(models.Model):
    """How far one SIEM sink has been delivered: every record with seq <= `seq` was accepted.

    The lease (`leased_by`, `lease_expires`) keeps two exporters (say, the Celery task and a
    `--follow` process) from delivering the same sink at once, which would duplicate records
    beyond the documented window.
    """

    name = models.CharField(max_length=100, unique=True)
    seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)
    delivered = models.BigIntegerField(default=0)
    leased_by = models.CharField(max_length=64, blank=True, default="")
    lease_expires = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "audit"
        db_table = "audit_export_cursor"

    def __str__(self) -> str:
        return f"export cursor {self.name} at #{self.seq}"


class LegalHold(models.Model):
    """While any hold is unreleased, retention purges nothing. Placing and releasing a hold are
    audit events themselves (`audit.retention.legal_hold_place` / `legal_hold_release`).

    `created_by` / `released_by` are usernames, not foreign keys: like audit records, holds must
    outlive the accounts that placed them.
    """

    reason = models.TextField()
    created_by = models.CharField(max_length=254)
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.CharField(max_length=254, blank=True, default="")

    class Meta:
        app_label = "audit"
        db_table = "audit_legal_hold"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        state = "released" if self.released_at else "active"
        return f"legal hold #{self.pk} ({state}): {self.reason[:60]}"

    @property
    def active(self) -> bool:
        return self.released_at is None


class AuditVerifiedThrough(models.Model):
    """A signed statement "a verification at `verified_at` recomputed every record up to `seq`,
    which had `hash`, the hash of the signed, exported checkpoint #seq" (one row per advance).

    It lets the next verification start after `seq` instead of at record 1. Someone with write
    access to the database can delete these rows (verification is then full again) or replay an
    older one (it starts earlier), but not forge or move one: the signature is made with the
    checkpoint signing key, which the database does not hold, and a marker whose signature does
    not verify fails the verification. `keyed_since` (the first record under the chain key, if
    any by `seq`) is signed too: the rule "no legacy record after a keyed one" spans the skip.
    """

    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    keyed_since = models.BigIntegerField(null=True, blank=True)
    verified_at = models.DateTimeField()
    signature = models.CharField(max_length=128)
    key_id = models.CharField(max_length=32)

    class Meta:
        app_label = "audit"
        db_table = "audit_verified_through"
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"audit verified through #{self.seq} at {self.verified_at:%Y-%m-%d %H:%M:%S}"
