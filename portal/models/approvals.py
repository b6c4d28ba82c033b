from __future__ import annotations

from django.conf import settings
from django.db import models


class PolicyVersion(models.Model):
    """Every policy change makes a new version, recorded with who and why. Approvals name the
    version they were granted under, so a policy change invalidates them."""

    number = models.PositiveIntegerField(unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    reason = models.TextField()
    snapshot = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"policy v{self.number}"


class QueryApproval(models.Model):
    """A just-in-time approval bound to one exact call (IR-4): identity, connection, tool,
    SHA-256 of the canonical arguments and the policy version. Single use; expires."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        DENIED = "denied"
        EXPIRED = "expired"
        CONSUMED = "consumed"

    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                  related_name="query_approvals")
    connection = models.ForeignKey("portal.Connection", on_delete=models.CASCADE,
                                   related_name="query_approvals")
    tool = models.CharField(max_length=200)
    arguments_sha256 = models.CharField(max_length=64)
    arguments = models.JSONField(default=dict, blank=True)
    sql_text = models.TextField(blank=True)
    bytes_estimate = models.BigIntegerField(null=True, blank=True)
    policy_version = models.PositiveIntegerField()
    rule = models.CharField(max_length=200)
    reason = models.TextField()
    approver_groups = models.JSONField(default=list)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["requester", "connection", "tool", "arguments_sha256"]),
                   models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"approval #{self.pk} {self.tool} ({self.status})"


class ApprovalVote(models.Model):
    approval = models.ForeignKey(QueryApproval, on_delete=models.CASCADE, related_name="votes")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                 related_name="approval_votes")
    approve = models.BooleanField()
    comment = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at"]
        constraints = [models.UniqueConstraint(fields=["approval", "approver"],
                                               name="one_vote_per_approver")]
