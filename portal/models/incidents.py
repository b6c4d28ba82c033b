from __future__ import annotations

from django.conf import settings
from django.db import models


class Incident(models.Model):
    """Raised by an automatic quarantine rule (IR-4); the identity stays quarantined until an
    admin reviews the incident and lifts it."""

    class Rule(models.TextChoices):
        DENIED_CALLS = "denied_calls", "too many denied calls"
        RESULT_ROWS = "result_rows", "too many result rows"

    class Status(models.TextChoices):
        OPEN = "open"
        LIFTED = "lifted"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="incidents")
    rule = models.CharField(max_length=20, choices=Rule.choices)
    observed = models.BigIntegerField()
    threshold = models.BigIntegerField()
    window_minutes = models.PositiveIntegerField()
    detail = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN,
                              db_index=True)
    quarantine = models.ForeignKey("portal.Quarantine", null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="incidents")
    created_at = models.DateTimeField(auto_now_add=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"incident #{self.pk} {self.user} {self.rule} ({self.status})"
