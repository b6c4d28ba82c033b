from __future__ import annotations

from django.conf import settings
from django.db import models


class GatewaySession(models.Model):
    """A live MCP session on a gateway process (session-based protocol revisions), so admins
    can see who is connected and kill one session (IR-4)."""

    session_key = models.CharField(max_length=200, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="gateway_sessions")
    connection = models.ForeignKey("portal.Connection", on_delete=models.CASCADE,
                                   related_name="gateway_sessions")
    auth_method = models.CharField(max_length=20)
    process = models.CharField(max_length=200, help_text="host:pid of the gateway process")
    source_ip = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=200, blank=True)
    kill_requested_at = models.DateTimeField(null=True, blank=True)
    kill_requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                          on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["user", "closed_at"], name="portal_gate_user_id_3f1c2a_idx")]

    def __str__(self) -> str:
        return f"{self.session_key[:12]}… {self.user} on {self.connection}"

    @property
    def is_live(self) -> bool:
        return self.closed_at is None
