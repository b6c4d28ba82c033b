"""Live gateway sessions: who is connected, and killing one (IR-4)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.services import AuditEntry
from audit.writer import write_sync
from portal.models import GatewaySession
from portal.services.security import security_revision_bump


def sessions_live(*, user: AbstractBaseUser | None = None) -> QuerySet[GatewaySession]:
    sessions = GatewaySession.objects.filter(closed_at__isnull=True).select_related(
        "user", "connection")
    return sessions.filter(user=user) if user is not None else sessions


@transaction.atomic
def session_kill(*, session: GatewaySession, by: AbstractBaseUser | None, reason: str) -> GatewaySession:
    """Ask every gateway process to close this session now; it is refused from then on."""
    if not reason.strip():
        raise ValueError("killing a session needs a reason")
    session = GatewaySession.objects.select_for_update().get(pk=session.pk)
    if session.kill_requested_at is None:
        session.kill_requested_at = timezone.now()
        session.kill_requested_by = by
        session.save(update_fields=["kill_requested_at", "kill_requested_by"])
    write_sync(AuditEntry(
        event="portal.session_killed", actor=by.get_username() if by else "",
        auth_method="session", connection=session.connection.slug,
        mcp_session_id=session.session_key, decision="info",
        detail={"session_owner": session.user.get_username(), "reason": reason}))
    security_revision_bump()
    return session
