"""Access requests: an engineer asks for a role on a connection for a while; an approver (never
the requester) approves — which creates a time-bound grant — or denies with a reason."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from portal.config import portal_config
from portal.models import AccessRequest, Connection, Role
from portal.permissions import has_role
from portal.roles import Role as PortalRole
from portal.services.errors import ServiceError
from portal.services.events import SYSTEM, RequestMeta, portal_event, refusals_recorded
from portal.services.grants import grant_create


class AccessRequestError(ServiceError):
    """An access request, decision or withdrawal a rule refuses."""

    default_code = "access_request_refused"


def _detail(req: AccessRequest) -> dict[str, Any]:
    return {"access_request_id": req.pk, "account": req.requester.get_username(),
            "role": req.role.name, "connection": req.connection.slug,
            "duration_hours": req.duration_hours}


@transaction.atomic
def access_request_create(*, requester: Any, connection: Connection, role: Role,
                          duration_hours: int, justification: str,
                          meta: RequestMeta = SYSTEM) -> AccessRequest:
    justification = (justification or "").strip()
    if not requester.is_active:
        raise AccessRequestError("Disabled accounts cannot request access.")
    if not connection.enabled:
        raise AccessRequestError("This connection is disabled.")
    limit = portal_config().access_request_max_hours
    if not 1 <= int(duration_hours) <= limit:
        raise AccessRequestError(f"The duration must be between 1 and {limit} hours.")
    if len(justification) < 10:
        raise AccessRequestError("Say why you need this access (at least 10 characters).")
    if AccessRequest.objects.filter(requester=requester, connection=connection, role=role,
                                    status=AccessRequest.Status.PENDING).exists():
        raise AccessRequestError("You already have a pending request for this role here.")
    req = AccessRequest.objects.create(requester=requester, connection=connection, role=role,
                                       duration_hours=int(duration_hours),
                                       justification=justification)
    portal_event("access_requested", by=requester, meta=meta, connection=connection.slug,
                 detail={**_detail(req), "justification": justification})
    return req


def access_request_decide(*, access_request: AccessRequest, by: Any, approve: bool,
                          comment: str = "", meta: RequestMeta = SYSTEM) -> AccessRequest:
    """Approve (a time-bound grant) or deny. Refusals, a self-approval first of all, are
    recorded as `portal.access_request_refused`."""
    with refusals_recorded("access_request_refused", by=by, meta=meta,
                           errors=(AccessRequestError,),
                           detail={"access_request": access_request.pk, "approve": approve,
                                   "requester_id": access_request.requester_id}):
        return _access_request_decide(access_request=access_request, by=by, approve=approve,
                                      comment=comment, meta=meta)


@transaction.atomic
def _access_request_decide(*, access_request: AccessRequest, by: Any, approve: bool,
                           comment: str, meta: RequestMeta) -> AccessRequest:
    req = (AccessRequest.objects.select_for_update(of=("self",))
           .select_related("requester", "role", "connection").get(pk=access_request.pk))
    comment = (comment or "").strip()
    if req.requester_id == by.pk:
        raise AccessRequestError("Separation of duties: nobody approves their own request.",
                                 code="separation_of_duties", status=403)
    if not has_role(by, PortalRole.APPROVER):
        raise AccessRequestError("Only approvers decide access requests.")
    if req.status != AccessRequest.Status.PENDING:
        raise AccessRequestError(f"This request is {req.status}, not pending.")
    if not approve and not comment:
        raise AccessRequestError("A denial needs a reason.")
    now = timezone.now()
    req.status = AccessRequest.Status.APPROVED if approve else AccessRequest.Status.DENIED
    req.decided_by, req.decided_at, req.decision_comment = by, now, comment
    if approve:
        if not req.requester.is_active:
            raise AccessRequestError("The requester's account is disabled.")
        req.grant = grant_create(
            role=req.role, connection=req.connection, user=req.requester, by=by, meta=meta,
            expires_at=now + dt.timedelta(hours=req.duration_hours),
            reason=f"access request #{req.pk}: {req.justification}",
        )
    req.save(update_fields=["status", "decided_by", "decided_at", "decision_comment", "grant"])
    portal_event("access_request_decided", by=by, meta=meta, connection=req.connection.slug,
                 decision="allow" if approve else "deny",
                 reasons=([{"rule": "access_request.decision", "message": comment}]
                          if comment else []),
                 detail={**_detail(req), "status": req.status, "comment": comment,
                         "grant_id": req.grant_id})
    return req


@transaction.atomic
def access_request_cancel(*, access_request: AccessRequest, by: Any,
                          meta: RequestMeta = SYSTEM) -> AccessRequest:
    req = AccessRequest.objects.select_for_update().get(pk=access_request.pk)
    if req.requester_id != by.pk:
        raise AccessRequestError("Only the requester can withdraw a request.")
    if req.status != AccessRequest.Status.PENDING:
        raise AccessRequestError(f"This request is {req.status}, not pending.")
    req.status = AccessRequest.Status.CANCELLED
    req.decided_at = timezone.now()
    req.save(update_fields=["status", "decided_at"])
    portal_event("access_request_cancelled", by=by, meta=meta, connection=req.connection.slug,
                 detail=_detail(req))
    return req
