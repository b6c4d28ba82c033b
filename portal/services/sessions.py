"""Live gateway sessions: killing one (IR-4); who is connected: portal.selectors.sessions."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit.services import AuditEntry
from audit.writer import write_sync
from portal.models import GatewaySession
from portal.services.errors import InvalidServiceInput
from portal.services.security import security_revision_bump


@transaction.atomic
def session_kill(*, session: GatewaySession, by: AbstractBaseUser | None, reason: str) -> GatewaySession:
    """Close this session now: it is refused from then on, and every gateway process (told
    through the security revision) cuts its open calls and ends its stdio subprocess. Closed
    here, not by whichever process happens to hold a call, so none stays "closing"."""
    if not reason.strip():
        raise InvalidServiceInput("killing a session needs a reason")
    session = GatewaySession.objects.select_for_update().get(pk=session.pk)
    now = timezone.now()
    if session.kill_requested_at is None:
        session.kill_requested_at = now
        session.kill_requested_by = by
    if session.closed_at is None:
        session.closed_at = now
        session.close_reason = f"killed: {reason}"[:200]
    session.save(update_fields=["kill_requested_at", "kill_requested_by", "closed_at",
                                "close_reason"])
    write_sync(AuditEntry(
        event="portal.session_killed", actor=by.get_username() if by else "",
        auth_method="session", connection=session.connection.slug,
        mcp_session_id=session.session_key, decision="info",
        detail={"session_owner": session.user.get_username(), "reason": reason}))
    security_revision_bump()
    return session


def sessions_close_for(*, user: AbstractBaseUser, reason: str) -> list[str]:
    """Close every open MCP session of `user` (idle ones too; the caller bumps the security
    revision so gateways cut what is live). Returns the session keys closed."""
    open_sessions = GatewaySession.objects.filter(user=user, closed_at__isnull=True)
    keys = list(open_sessions.values_list("session_key", flat=True))
    open_sessions.update(closed_at=timezone.now(), close_reason=reason[:200])
    return keys
