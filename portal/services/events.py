"""Every portal action is an audit event in the same hash-chained log as the gateway's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from audit.models import AuditRecord
from audit.services import AuditEntry
from audit.writer import write_sync
from portal.services.errors import ServiceError

SYSTEM_ACTOR = "system"


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Where an action came from: the portal (session), the API (token) or a scheduled job.
    Built at the edge (portal.edge.meta_from_request, meta_from_command) and passed in."""

    source_ip: str = ""
    user_agent: str = ""
    auth_method: str = "session"
    # Who acted when there is no account (`by` is None): e.g. os:<user> for a command.
    actor: str = ""


SYSTEM = RequestMeta(auth_method="")


def meta_from_command(actor: Any) -> RequestMeta:
    """A management command's audit metadata (audit.actors.CommandActor)."""
    return RequestMeta(user_agent=actor.user_agent, auth_method="cli", actor=actor.name)


def actor_name(user: Any) -> str:
    return user.get_username() if user is not None else SYSTEM_ACTOR


def portal_event(action: str, *, by: Any, meta: RequestMeta, detail: dict[str, Any],
                 connection: str = "", decision: str = "info",
                 reasons: list[dict[str, Any]] | None = None, sql_text: str = "",
                 tool: str = "", actor: str | None = None) -> AuditRecord:
    """Record `portal.<action>`. Call inside the service's transaction so the record commits
    (or rolls back) with the change it describes."""
    return write_sync(AuditEntry(
        event=f"portal.{action}",
        actor=actor if actor is not None else (
            meta.actor if by is None and meta.actor else actor_name(by)),
        auth_method=meta.auth_method,
        source_ip=meta.source_ip, user_agent=meta.user_agent, connection=connection,
        decision=decision, reasons=reasons or [], detail=detail, sql_text=sql_text, tool=tool,
    ))


@contextmanager
def refusals_recorded(action: str, *, by: Any, meta: RequestMeta, detail: dict[str, Any],
                      errors: tuple[type[Exception], ...], connection: str = "") -> Iterator[None]:
    """Record `portal.<action>` (decision deny, the error as its reason) when the block raises
    one of `errors`, then re-raise. Use it outside the service's transaction, so the refusal is
    kept although the attempted change rolls back (e.g. a blocked self-approval)."""
    try:
        yield
    except errors as exc:
        portal_event(action, by=by, meta=meta, decision="deny", connection=connection,
                     reasons=[{"rule": f"portal.{action}", "message": str(exc)}], detail=detail)
        if isinstance(exc, ServiceError):
            exc.recorded = True
        raise
