"""What each person has to act on: approval queues and their own requests."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from portal.models import AccessRequest, QueryApproval


def access_requests_pending(*, for_user: Any) -> QuerySet[AccessRequest]:
    """Pending access requests an approver may decide (never their own)."""
    return (AccessRequest.objects.filter(status=AccessRequest.Status.PENDING)
            .exclude(requester=for_user)
            .select_related("requester", "role", "connection").order_by("created_at"))


def query_approvals_pending(*, for_user: Any) -> list[QueryApproval]:
    """Pending query approvals this approver may vote on: in one of its approver groups, not
    their own, not yet voted on by them, not expired."""
    groups = set(for_user.groups.values_list("name", flat=True))
    pending = (QueryApproval.objects.filter(status=QueryApproval.Status.PENDING,
                                            expires_at__gt=timezone.now())
               .exclude(requester=for_user).exclude(votes__approver=for_user)
               .select_related("requester", "connection").order_by("created_at"))
    return [a for a in pending if groups & set(a.approver_groups or [])]


def access_requests_mine(user: Any) -> QuerySet[AccessRequest]:
    return (AccessRequest.objects.filter(requester=user)
            .select_related("requester", "role", "connection", "decided_by", "grant"))


def query_approvals_mine(user: Any) -> QuerySet[QueryApproval]:
    return QueryApproval.objects.filter(requester=user).select_related("connection") \
        .prefetch_related("votes__approver")


def query_approval_get(pk: int) -> QueryApproval | None:
    """One held query with its votes (the page the gateway links the caller to)."""
    return (QueryApproval.objects.select_related("requester", "connection")
            .prefetch_related("votes__approver").filter(pk=pk).first())
