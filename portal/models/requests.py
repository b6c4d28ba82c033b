from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models


class AccessRequest(models.Model):
    """An engineer asks for a role on a connection for a while; an approver decides (AC-2)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        DENIED = "denied"
        CANCELLED = "cancelled"

    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                  related_name="access_requests")
    connection = models.ForeignKey("portal.Connection", on_delete=models.CASCADE,
                                   related_name="access_requests")
    role = models.ForeignKey("portal.Role", on_delete=models.PROTECT,
                             related_name="access_requests")
    duration_hours = models.PositiveIntegerField()
    justification = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING,
                              db_index=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)
    grant = models.OneToOneField("portal.Grant", null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="access_request")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.requester} -> {self.role} on {self.connection} ({self.status})"

    @property
    def duration(self) -> dt.timedelta:
        return dt.timedelta(hours=self.duration_hours)
