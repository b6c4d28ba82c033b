from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class Role(models.Model):
    """What a grant lets its holder do on a connection.

    `rules` (plain data so it round-trips through YAML):
      tools:   glob patterns of callable/visible tool names, e.g. ["execute_sql", "list_*"]
      resources / prompts: glob patterns of readable resource URIs / usable prompt names
      sql:     statement classes, tables, denied columns, bytes cap (policy.sql_policy.SqlRules)
      masking: PII class -> action for this role (policy.masking.MaskingPolicy)
    """

    name = models.SlugField(unique=True)
    description = models.TextField(blank=True)
    rules = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from policy.roles import compile_role_rules

        try:
            compile_role_rules(self.name, self.rules, token_key=b"validation-only")
        except ValueError as exc:
            raise ValidationError({"rules": str(exc)}) from exc


class Grant(models.Model):
    """Identity or group -> role -> connection, optionally until a time (AC-2, AC-3, AC-6)."""

    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="grants")
    connection = models.ForeignKey("portal.Connection", on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.CASCADE, related_name="grants")
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="grants")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False, group__isnull=True)
                           | Q(user__isnull=True, group__isnull=False)),
                name="grant_user_xor_group",
            )
        ]

    def __str__(self) -> str:
        who = self.user or f"group:{self.group}"
        return f"{who} -> {self.role} on {self.connection}"


class ToolCatalogEntry(models.Model):
    """One observed version (name + description + input schema) of an upstream tool.

    Calls go only to tools whose current version an admin accepted; a changed or new tool
    (a "rug pull" or a poisoned description) stays hidden until then.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        SUPERSEDED = "superseded"

    connection = models.ForeignKey("portal.Connection", on_delete=models.CASCADE,
                                   related_name="tool_catalog")
    name = models.CharField(max_length=200)
    digest = models.CharField(max_length=64)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["connection", "name", "-first_seen_at"]
        constraints = [models.UniqueConstraint(fields=["connection", "name", "digest"],
                                               name="tool_catalog_unique_version")]

    def __str__(self) -> str:
        return f"{self.connection}:{self.name}@{self.digest[:8]} ({self.status})"


class Quarantine(models.Model):
    """An identity or a connection cut off by incident response (IR-4) until lifted."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.CASCADE, related_name="quarantines")
    connection = models.ForeignKey("portal.Connection", null=True, blank=True,
                                   on_delete=models.CASCADE, related_name="quarantines")
    reason = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False, connection__isnull=True)
                           | Q(user__isnull=True, connection__isnull=False)),
                name="quarantine_user_xor_connection",
            )
        ]


class SecurityRevision(models.Model):
    """A counter bumped by every change that can take access away (revocation, disable,
    quarantine, grant or policy change). Every gateway process watches it and drops its
    caches when it moves, so no decision lives only in one process's memory."""

    value = models.BigIntegerField(default=0)
