"""The audit store: one row per audited event, linked into a SHA-256 hash chain.

Rows are written only by `audit.services.append_records` (which assigns seq, at, prev_hash and
hash under the chain-head lock) and are never changed: database triggers installed by migration
0002 refuse UPDATE, and DELETE/TRUNCATE outside a maintenance window (`audit.maintenance`).
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.db import models


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete an audit record through the ORM."""


# The known vocabularies, for callers and for display. Not enforced on append: refusing a record
# over an unfamiliar value would fail the audited call closed; recording it is the safer error.
class Decision(models.TextChoices):
    ALLOW = "allow"
    DENY = "deny"
    ERROR = "error"
    HOLD = "hold"
    WITHHELD = "withheld"  # allowed, but the result was held back (e.g. could not be masked)
    INFO = "info"
    CANCELLED = "cancelled"  # the client went away or access was revoked before the answer
    NONE = "", "none"


class AuthMethod(models.TextChoices):
    OIDC = "oidc", "OIDC"
    PERSONAL_TOKEN = "personal_token", "personal token"
    SESSION = "session"
    NONE = "none", "anonymous"
    UNSET = "", "not applicable"  # e.g. records written by background jobs


class AuditRecord(models.Model):
    # The chain position, 1..N without gaps; part of the hashed content so rows cannot be
    # reordered. Not the primary key: `id` stays a plain surrogate so nothing else in the
    # project has to special-case this model.
    seq = models.BigIntegerField(unique=True)
    request_id = models.CharField(max_length=64, blank=True, default="")
    event = models.CharField(max_length=64)
    at = models.DateTimeField()

    # Who and from where. `actor` is the identity's username, "" for anonymous callers.
    actor = models.CharField(max_length=254, blank=True, default="")
    auth_method = models.CharField(
        max_length=32, choices=AuthMethod.choices, blank=True, default=""
    )
    source_ip = models.CharField(max_length=64, blank=True, default="")
    user_agent = models.CharField(max_length=512, blank=True, default="")

    # What was called. `connection` is the slug, not a foreign key: records outlive the rows.
    connection = models.CharField(max_length=100, blank=True, default="")
    mcp_session_id = models.CharField(max_length=128, blank=True, default="")
    jsonrpc_method = models.CharField(max_length=128, blank=True, default="")
    tool = models.CharField(max_length=128, blank=True, default="")
    arguments = models.JSONField(default=dict, blank=True)
    sql_text = models.TextField(blank=True, default="")
    sql_fingerprint = models.CharField(max_length=64, blank=True, default="")

    # The decision and the outcome.
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True, default="")
    reasons = models.JSONField(default=list, blank=True)
    masking = models.JSONField(default=list, blank=True)
    row_count = models.BigIntegerField(null=True, blank=True)
    result_bytes = models.BigIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    response_sha256 = models.CharField(max_length=64, blank=True, default="")
    upstream_latency_ms = models.FloatField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        db_table = "audit_record"
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["at"], name="audit_record_at_idx"),
            models.Index(fields=["actor", "at"], name="audit_record_actor_idx"),
            models.Index(fields=["connection", "at"], name="audit_record_conn_idx"),
            models.Index(fields=["decision", "at"], name="audit_record_decision_idx"),
            models.Index(fields=["tool", "at"], name="audit_record_tool_idx"),
            models.Index(fields=["request_id"], name="audit_record_request_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.event} {self.actor or '-'} {self.decision or '-'}"

    # The database refuses these anyway; failing in Python first gives a clearer error and
    # keeps a transaction from being poisoned on PostgreSQL.
    def save(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError(
            "audit records are append-only: write them with audit.services.append_records"
        )

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit records are append-only: they cannot be deleted")


class AuditChainHead(models.Model):
    """The single row holding the chain's last (seq, hash).

    Every append locks this row, which serialises appenders across processes and threads, and
    lets `verify_chain` notice a deleted tail (the head says N, the last row is < N).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        db_table = "audit_chain_head"

    def __str__(self) -> str:
        return f"audit chain head #{self.seq} {self.hash[:12]}"


# Checkpoints, export cursors and legal holds live in their own module; importing them here
# registers them with the app.
from .control_models import (  # noqa: E402, F401
    AuditCheckpoint,
    AuditVerifiedThrough,
    ExportCursor,
    LegalHold,
)
