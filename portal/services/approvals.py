"""Just-in-time query approvals and policy versions.

An approval is bound to the exact call — identity, connection, tool, SHA-256 of the canonical
arguments and the policy version — and is single-use and expiring. Nobody approves their own
request. Proposal, each decision and the use are separate audit events.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from audit.services import AuditEntry
from audit.writer import write_sync
from portal.models import ApprovalVote, PolicyVersion, QueryApproval
from portal.services.errors import InvalidServiceInput, ServiceError
from portal.services.events import SYSTEM, RequestMeta, portal_event, refusals_recorded
from portal.services.security import security_revision_bump


class ApprovalError(ServiceError):
    """A decision that may not be made (separation of duties, wrong group, not pending)."""

    default_code = "approval_refused"


# ------------------------------------------------------------------------- policy versions

def policy_version_current() -> int:
    return PolicyVersion.objects.aggregate(n=Max("number"))["n"] or 0


@transaction.atomic
def policy_version_create(*, by: AbstractBaseUser | None, reason: str,
                          snapshot: dict[str, Any] | None = None,
                          meta: RequestMeta = SYSTEM) -> PolicyVersion:
    """A new policy version (after any change to roles, rules or masking). Approvals granted
    under an older version no longer unlock calls."""
    if not reason.strip():
        raise InvalidServiceInput("a policy change needs a reason")
    number = policy_version_current() + 1
    version = PolicyVersion.objects.create(number=number, created_by=by, reason=reason,
                                           snapshot=snapshot or {})
    # Recorded like the change that made it: by whoever made it, from where (a command's
    # operating-system user when no account is named).
    portal_event("policy_changed", by=by, meta=meta,
                 detail={"policy_version": number, "reason": reason})
    security_revision_bump()
    return version


# ------------------------------------------------------------------------- query approvals

def query_approval_find_usable(*, requester_id: int, connection_id: int, tool: str,
                               arguments_sha256: str, policy_version: int) -> QueryApproval | None:
    return QueryApproval.objects.filter(
        requester_id=requester_id, connection_id=connection_id, tool=tool,
        arguments_sha256=arguments_sha256, policy_version=policy_version,
        status=QueryApproval.Status.APPROVED, expires_at__gt=timezone.now(),
    ).order_by("created_at").first()


@transaction.atomic
def query_approval_propose(
    *, requester_id: int, requester_name: str, connection_id: int, connection_slug: str,
    tool: str, arguments: Any, arguments_sha256: str, policy_version: int, sql_text: str,
    bytes_estimate: int | None, rule: str, reason: str, approver_groups: list[str],
    required_approvals: int, request_id: str, ttl: dt.timedelta,
) -> tuple[QueryApproval, bool]:
    """The pending approval for this exact call, created if there is none; (approval, created)."""
    existing = QueryApproval.objects.select_for_update().filter(
        requester_id=requester_id, connection_id=connection_id, tool=tool,
        arguments_sha256=arguments_sha256, policy_version=policy_version,
        status=QueryApproval.Status.PENDING, expires_at__gt=timezone.now(),
    ).first()
    if existing is not None:
        return existing, False
    approval = QueryApproval.objects.create(
        requester_id=requester_id, connection_id=connection_id, tool=tool,
        arguments_sha256=arguments_sha256, arguments=arguments if isinstance(arguments, dict) else {},
        sql_text=sql_text, bytes_estimate=bytes_estimate, policy_version=policy_version,
        rule=rule, reason=reason, approver_groups=approver_groups,
        required_approvals=required_approvals, request_id=request_id,
        expires_at=timezone.now() + ttl,
    )
    write_sync(AuditEntry(
        event="approval.proposed", request_id=request_id, actor=requester_name,
        auth_method="gateway", connection=connection_slug, tool=tool, sql_text=sql_text,
        decision="hold", reasons=[{"rule": rule, "message": reason}],
        detail={"approval_id": approval.pk, "arguments_sha256": arguments_sha256,
                "policy_version": policy_version, "approver_groups": approver_groups,
                "required_approvals": required_approvals, "bytes_estimate": bytes_estimate},
    ))
    return approval, True


def query_approval_consume(*, approval_id: int, request_id: str, actor: str) -> bool:
    """Use an approval once. True only for the one caller that flips it to consumed."""
    now = timezone.now()
    used = QueryApproval.objects.filter(
        pk=approval_id, status=QueryApproval.Status.APPROVED, expires_at__gt=now,
    ).update(status=QueryApproval.Status.CONSUMED, consumed_at=now)
    if used:
        write_sync(AuditEntry(event="approval.consumed", request_id=request_id, actor=actor,
                              auth_method="gateway", decision="allow",
                              detail={"approval_id": approval_id}))
    return bool(used)


def query_approval_decide(*, approval: QueryApproval, approver: AbstractBaseUser, approve: bool,
                          comment: str = "", meta: RequestMeta | None = None,
                          source_ip: str = "", user_agent: str = "") -> QueryApproval:
    """One approver's vote on a held call. Refusals (their own request, not pending, not in an
    approver group, ...) are recorded as `portal.approval_refused`. Where the vote came from is
    `meta` (built at the edge) or, for older callers, `source_ip` and `user_agent`; the records
    name the session as the way in, as they always have."""
    if meta is not None:
        source_ip, user_agent = meta.source_ip, meta.user_agent
    meta = RequestMeta(source_ip=source_ip, user_agent=user_agent[:512])
    with refusals_recorded("approval_refused", by=approver, meta=meta, errors=(ApprovalError,),
                           detail={"approval_id": approval.pk, "approve": approve,
                                   "requester_id": approval.requester_id}):
        return _query_approval_decide(approval=approval, approver=approver, approve=approve,
                                      comment=comment, source_ip=source_ip,
                                      user_agent=user_agent)


def _query_approval_decide(*, approval: QueryApproval, approver: AbstractBaseUser, approve: bool,
                           comment: str, source_ip: str, user_agent: str) -> QueryApproval:
    with transaction.atomic():
        decided = _query_approval_vote(approval=approval, approver=approver, approve=approve,
                                       comment=comment, source_ip=source_ip,
                                       user_agent=user_agent)
    if decided is None:
        # Refused once the expiry is committed: raising inside the transaction rolled the
        # expiry back (until the beat task marked it again).
        raise ApprovalError("This approval request has expired")
    return decided


def _query_approval_vote(*, approval: QueryApproval, approver: AbstractBaseUser, approve: bool,
                         comment: str, source_ip: str, user_agent: str) -> QueryApproval | None:
    """The vote, in the caller's transaction; None when the approval had expired (it is then
    marked expired and recorded, as `query_approvals_expire` does)."""
    approval = QueryApproval.objects.select_for_update().get(pk=approval.pk)
    if approval.requester_id == approver.pk:
        raise ApprovalError("Separation of duties: nobody approves their own request",
                            code="separation_of_duties", status=403)
    if approval.status != QueryApproval.Status.PENDING:
        raise ApprovalError(f"This approval is {approval.status}, not pending")
    if approval.expires_at <= timezone.now():
        approval.status = QueryApproval.Status.EXPIRED
        approval.decided_at = approval.expires_at
        approval.save(update_fields=["status", "decided_at"])
        _approvals_expired_record([approval.pk], 1)
        return None
    groups = set(approver.groups.values_list("name", flat=True))
    if not groups & set(approval.approver_groups):
        raise ApprovalError("You are not in an approver group for this request")
    if ApprovalVote.objects.filter(approval=approval, approver=approver).exists():
        raise ApprovalError("You have already decided on this request")
    if not approve and not comment.strip():
        raise ApprovalError("A denial needs a comment")
    ApprovalVote.objects.create(approval=approval, approver=approver, approve=approve,
                                comment=comment)
    if not approve:
        approval.status = QueryApproval.Status.DENIED
    elif approval.votes.filter(approve=True).count() >= approval.required_approvals:
        approval.status = QueryApproval.Status.APPROVED
    if approval.status != QueryApproval.Status.PENDING:
        approval.decided_at = timezone.now()
    approval.save(update_fields=["status", "decided_at"])
    write_sync(AuditEntry(
        event="portal.approval_decided", request_id=approval.request_id,
        actor=approver.get_username(), auth_method="session", source_ip=source_ip,
        user_agent=user_agent[:512], connection=approval.connection.slug, tool=approval.tool,
        sql_text=approval.sql_text, decision="allow" if approve else "deny",
        reasons=[{"rule": "approval.vote", "message": comment or ("approved" if approve else "")}],
        detail={"approval_id": approval.pk, "status": approval.status,
                "requester": approval.requester.get_username(),
                "votes_for": approval.votes.filter(approve=True).count(),
                "required_approvals": approval.required_approvals},
    ))
    return approval


def query_approval_denial_note(approval_id: int) -> str:
    """'denied by NAME: "comment"' for each denying vote (what the caller is told)."""
    votes = (ApprovalVote.objects.filter(approval_id=approval_id, approve=False)
             .select_related("approver").order_by("at"))
    return "; ".join(f"denied by {v.approver.get_username()}: \"{v.comment.strip()}\""
                     for v in votes)


def query_approval_last_denial(*, requester_id: int, connection_id: int, tool: str,
                               arguments_sha256: str, policy_version: int) -> str:
    """'#N denied by NAME: "comment"' for the latest denied approval of this exact call, so a
    caller who re-runs it learns why the last one was refused; "" if none."""
    last = QueryApproval.objects.filter(
        requester_id=requester_id, connection_id=connection_id, tool=tool,
        arguments_sha256=arguments_sha256, policy_version=policy_version,
        status=QueryApproval.Status.DENIED).order_by("-decided_at", "-pk").first()
    return f"#{last.pk} {query_approval_denial_note(last.pk)}" if last is not None else ""


def query_approval_status(approval_id: int) -> str | None:
    row = QueryApproval.objects.filter(pk=approval_id).values_list("status", "expires_at").first()
    if row is None:
        return None
    status, expires_at = row
    if status == QueryApproval.Status.PENDING and expires_at <= timezone.now():
        return QueryApproval.Status.EXPIRED
    return status


@transaction.atomic
def query_approvals_expire(now: dt.datetime | None = None) -> int:
    """Mark pending approvals past their expiry as expired, recorded (Celery beat runs this
    every minute: portal.expire_approvals)."""
    due = QueryApproval.objects.select_for_update().filter(
        status=QueryApproval.Status.PENDING, expires_at__lte=now or timezone.now())
    ids = sorted(due.values_list("pk", flat=True))
    if not ids:
        return 0
    count = QueryApproval.objects.filter(pk__in=ids).update(
        status=QueryApproval.Status.EXPIRED, decided_at=F("expires_at"))
    _approvals_expired_record(ids, count)
    return count


def _approvals_expired_record(ids: list[int], count: int) -> None:
    """`portal.approvals_expired` for approvals just marked expired (by the beat task, or by a
    vote that came too late)."""
    write_sync(AuditEntry(event="portal.approvals_expired", actor="system", decision="info",
                          detail={"approval_ids": ids[:1000], "count": count}))
