"""The portal API: the same actions as the pages, through the same services (thin views).

Each action parses its input (a serializer), calls one service and serializes the result. A
service's refusal (ServiceError) is answered by the one exception handler,
portal.api.exceptions.exception_handler; reads come from portal.selectors.

Authentication: a portal API token (`Authorization: Bearer wga_…`, issued on the Tokens page)
or the signed-in session (with its CSRF token). Permissions per portal role; deny by default.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audit.models import AuditRecord
from portal.api import serializers as s
from portal.api.permissions import PortalRoles
from portal.edge import meta_from_request
from portal.models import AccessRequest, QueryApproval
from portal.roles import Role
from portal.selectors.accounts import account_list
from portal.selectors.audit import AuditFilter, audit_search
from portal.selectors.grants import grant_list
from portal.selectors.incidents import incident_list, quarantine_list
from portal.selectors.queues import (
    access_requests_mine,
    access_requests_pending,
    query_approvals_pending,
)
from portal.services.access_requests import (
    access_request_cancel,
    access_request_create,
    access_request_decide,
)
from portal.services.accounts import account_create, account_disable, account_enable
from portal.services.approvals import query_approval_decide
from portal.services.grants import grant_create, grant_revoke
from portal.services.incidents import incident_lift, quarantine_create, quarantine_lift

ADMIN, ENGINEER, APPROVER, AUDITOR = Role.ADMIN, Role.ENGINEER, Role.APPROVER, Role.AUDITOR


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class AccessRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                           mixins.CreateModelMixin, viewsets.GenericViewSet):
    """Engineers' own access requests; approvers decide others' (`queue`, `decide`)."""

    serializer_class = s.AccessRequestSerializer
    queryset = AccessRequest.objects.none()  # per request: see get_queryset
    permission_classes = [PortalRoles]
    roles = {"list": (ENGINEER,), "retrieve": (ENGINEER,), "create": (ENGINEER,),
             "cancel": (ENGINEER,), "queue": (APPROVER,), "decide": (APPROVER,)}

    def get_queryset(self) -> Any:
        if self.action in ("queue", "decide"):
            return access_requests_pending(for_user=self.request.user)
        return access_requests_mine(self.request.user)

    def perform_create(self, serializer: Any) -> None:
        serializer.instance = access_request_create(
            requester=self.request.user, meta=meta_from_request(self.request),
            connection=serializer.validated_data["connection"],
            role=serializer.validated_data["role"],
            duration_hours=serializer.validated_data["duration_hours"],
            justification=serializer.validated_data["justification"])

    @extend_schema(request=None, responses=s.AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        req = self.get_object()
        req = access_request_cancel(access_request=req, by=request.user,
                                    meta=meta_from_request(request))
        return Response(s.AccessRequestSerializer(req).data)

    @extend_schema(responses=s.AccessRequestSerializer(many=True))
    @action(detail=False, methods=["get"])
    def queue(self, request: Request) -> Response:
        return Response(s.AccessRequestSerializer(self.get_queryset(), many=True).data)

    @extend_schema(request=s.DecisionSerializer, responses=s.AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def decide(self, request: Request, pk: str) -> Response:
        req = get_object_or_404(AccessRequest, pk=pk)
        data = _valid(s.DecisionSerializer, request.data)
        req = access_request_decide(access_request=req, by=request.user,
                                    approve=data["decision"] == "approve",
                                    comment=data["comment"], meta=meta_from_request(request))
        return Response(s.AccessRequestSerializer(req).data)


class QueryApprovalViewSet(viewsets.GenericViewSet):
    """Held queries waiting for this approver (never their own)."""

    serializer_class = s.QueryApprovalSerializer
    permission_classes = [PortalRoles]
    roles = {"list": (APPROVER,), "decide": (APPROVER,)}
    pagination_class = None

    queryset = QueryApproval.objects.none()

    def list(self, request: Request) -> Response:
        return Response(s.QueryApprovalSerializer(
            query_approvals_pending(for_user=request.user), many=True).data)

    @extend_schema(request=s.DecisionSerializer, responses=s.QueryApprovalSerializer)
    @action(detail=True, methods=["post"])
    def decide(self, request: Request, pk: str) -> Response:
        approval = get_object_or_404(QueryApproval, pk=pk)
        data = _valid(s.DecisionSerializer, request.data)
        approval = query_approval_decide(approval=approval, approver=request.user,
                                         approve=data["decision"] == "approve",
                                         comment=data["comment"], meta=meta_from_request(request))
        return Response(s.QueryApprovalSerializer(approval).data)


class GrantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                   viewsets.GenericViewSet):
    serializer_class = s.GrantSerializer
    permission_classes = [PortalRoles]
    roles = {"list": (ADMIN, AUDITOR), "retrieve": (ADMIN, AUDITOR), "create": (ADMIN,),
             "revoke": (ADMIN,)}
    queryset = grant_list()

    def perform_create(self, serializer: Any) -> None:
        d = serializer.validated_data
        serializer.instance = grant_create(
            role=d["role"], connection=d["connection"], user=d.get("user"),
            group=d.get("group"), expires_at=d.get("expires_at"), reason=d["reason"],
            by=self.request.user, meta=meta_from_request(self.request))

    @extend_schema(request=s.ReasonSerializer, responses=s.GrantSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        data = _valid(s.ReasonSerializer, request.data)
        grant = grant_revoke(grant=self.get_object(), by=request.user,
                             reason=data["reason"], meta=meta_from_request(request))
        return Response(s.GrantSerializer(grant).data)


class AccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.AccountSerializer
    permission_classes = [PortalRoles]
    roles = {"list": (ADMIN, AUDITOR), "retrieve": (ADMIN, AUDITOR), "create": (ADMIN,),
             "disable": (ADMIN,), "enable": (ADMIN,)}
    queryset = account_list()

    @extend_schema(request=s.AccountCreateSerializer, responses={201: s.AccountSerializer})
    def create(self, request: Request) -> Response:
        d = _valid(s.AccountCreateSerializer, request.data)
        user = account_create(username=d["username"], email=d["email"],
                              password=d["password"] or None, roles=d["roles"],
                              by=request.user, reason=d["reason"],
                              meta=meta_from_request(request))
        return Response(s.AccountSerializer(user).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ReasonSerializer, responses=s.AccountSerializer)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str) -> Response:
        data = _valid(s.ReasonSerializer, request.data)
        user = account_disable(account=self.get_object(), by=request.user,
                               reason=data["reason"], meta=meta_from_request(request))
        return Response(s.AccountSerializer(user).data)

    @extend_schema(request=s.ReasonSerializer, responses=s.AccountSerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str) -> Response:
        data = _valid(s.ReasonSerializer, request.data)
        user = account_enable(account=self.get_object(), by=request.user, reason=data["reason"],
                              meta=meta_from_request(request))
        return Response(s.AccountSerializer(user).data)


class IncidentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.IncidentSerializer
    permission_classes = [PortalRoles]
    roles = {"list": (ADMIN, AUDITOR), "retrieve": (ADMIN, AUDITOR), "lift": (ADMIN,)}
    queryset = incident_list()

    @extend_schema(request=s.ReasonSerializer, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def lift(self, request: Request, pk: str) -> Response:
        data = _valid(s.ReasonSerializer, request.data)
        incident = incident_lift(incident=self.get_object(), by=request.user,
                                 comment=data["reason"], meta=meta_from_request(request))
        return Response(s.IncidentSerializer(incident).data)


class QuarantineViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                        mixins.CreateModelMixin, viewsets.GenericViewSet):
    serializer_class = s.QuarantineSerializer
    permission_classes = [PortalRoles]
    roles = {"list": (ADMIN, AUDITOR), "retrieve": (ADMIN, AUDITOR), "create": (ADMIN,),
             "lift": (ADMIN,)}
    queryset = quarantine_list()

    def perform_create(self, serializer: Any) -> None:
        d = serializer.validated_data
        serializer.instance = quarantine_create(
            user=d.get("user"), connection=d.get("connection"), reason=d["reason"],
            by=self.request.user, meta=meta_from_request(self.request))

    @extend_schema(request=s.ReasonSerializer, responses=s.QuarantineSerializer)
    @action(detail=True, methods=["post"])
    def lift(self, request: Request, pk: str) -> Response:
        data = _valid(s.ReasonSerializer, request.data)
        q = quarantine_lift(quarantine=self.get_object(), by=request.user,
                            reason=data["reason"], meta=meta_from_request(request))
        return Response(s.QuarantineSerializer(q).data)


class AuditViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Search the audit trail (newest first); filters as query parameters."""

    serializer_class = s.AuditRecordSerializer
    queryset = AuditRecord.objects.none()  # per request: see get_queryset
    permission_classes = [PortalRoles]
    roles = {"list": (ADMIN, AUDITOR)}

    def get_queryset(self) -> Any:
        data = _valid(s.AuditQuerySerializer, self.request.query_params)
        return audit_search(AuditFilter(**data))

    @extend_schema(parameters=[s.AuditQuerySerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)
