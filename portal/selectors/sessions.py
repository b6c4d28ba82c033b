"""Live gateway (MCP) sessions: who is connected now."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from portal.models import GatewaySession


def gateway_sessions_live(*, user: Any = None) -> QuerySet[GatewaySession]:
    """Open gateway sessions (of `user` when given), with their account and connection."""
    sessions = GatewaySession.objects.filter(closed_at__isnull=True).select_related(
        "user", "connection")
    return sessions.filter(user=user) if user is not None else sessions
