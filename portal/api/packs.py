"""Evidence packs over the API (auditors and admins), so a GRC tool can pull evidence with a
portal API token: list, request (create), follow a build (progress), download the signed zip,
fetch the public key that verifies it. The same services and selectors as the Evidence page;
every request and download is recorded with the caller's identity and authentication method."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from portal.api.permissions import PortalRoles
from portal.edge import meta_from_request
from portal.services.errors import ServiceError
from reports.catalog import ALL_LABELS
from reports.selectors import (
    PACK_ROLES,
    evidence_pack_get,
    evidence_pack_list,
    evidence_pack_progress,
)
from reports.services import PackRequestError, evidence_pack_request, period_from_dates
from reports.views import pack_download_response, public_key_response

PACK_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="the pack's id")


class PackRequestSerializer(serializers.Serializer):
    first_day = serializers.DateField(help_text="first day of the period (UTC), included")
    last_day = serializers.DateField(help_text="last day of the period (UTC), included")
    controls = serializers.ListField(child=serializers.ChoiceField(choices=ALL_LABELS),
                                     required=False, default=list,
                                     help_text="control ids; empty or absent: all")
    partial = serializers.BooleanField(
        required=False, default=False,
        help_text="allow a period that has not ended; the pack is then marked PARTIAL")


class ControlSummarySerializer(serializers.Serializer):
    control = serializers.CharField()
    status = serializers.CharField()
    gaps = serializers.IntegerField()


class PackSerializer(serializers.Serializer):
    """A pack and its build progress (what the Evidence page's progress bar shows)."""

    id = serializers.IntegerField()
    uuid = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["queued", "running", "exported", "failed"])
    progress = serializers.IntegerField(help_text="percent")
    stage = serializers.CharField()
    records_processed = serializers.IntegerField()
    finished = serializers.BooleanField()
    partial = serializers.BooleanField()
    requested_by = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField(help_text="exclusive")
    last_day = serializers.DateField()
    controls = serializers.ListField(child=serializers.CharField())
    trigger = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    file_name = serializers.CharField(allow_null=True)
    file_size = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(allow_null=True)
    manifest_sha256 = serializers.CharField(allow_null=True)
    key_id = serializers.CharField(allow_null=True)
    chain_head_seq = serializers.IntegerField(allow_null=True)
    summary = ControlSummarySerializer(many=True)
    error = serializers.CharField(allow_null=True)


class EvidencePackViewSet(viewsets.ViewSet):
    """Evidence packs (NIST SP 800-53 Rev. 5): signed zips of a period's evidence."""

    permission_classes = [PortalRoles]
    lookup_value_regex = r"[0-9]+"
    roles = {"list": PACK_ROLES, "create": PACK_ROLES, "progress": PACK_ROLES,
             "download": PACK_ROLES, "public_key": PACK_ROLES}

    def _pack(self, pk: str) -> Any:
        pack = evidence_pack_get(pk=int(pk))
        if pack is None:
            raise NotFound("no such evidence pack")
        return pack

    @extend_schema(responses=PackSerializer(many=True))
    def list(self, request: Request) -> Response:
        return Response([evidence_pack_progress(p) for p in evidence_pack_list()])

    @extend_schema(request=PackRequestSerializer, responses={202: PackSerializer})
    def create(self, request: Request) -> Response:
        data = PackRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            start, end = period_from_dates(v["first_day"], v["last_day"])
            pack = evidence_pack_request(period_start=start, period_end=end,
                                         controls=v["controls"], partial=v["partial"],
                                         created_by=request.user,
                                         origin=meta_from_request(request))
        except PackRequestError as exc:
            # The reports app's own refusal, answered like every portal service refusal.
            raise ServiceError(str(exc), code="pack_request_invalid") from None
        return Response(evidence_pack_progress(pack), status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=[PACK_ID], responses=PackSerializer)
    @action(detail=True, methods=["get"])
    def progress(self, request: Request, pk: str) -> Response:
        return Response(evidence_pack_progress(self._pack(pk)))

    @extend_schema(parameters=[PACK_ID], responses={(200, "application/zip"): OpenApiResponse(
        OpenApiTypes.BINARY, description="the signed pack; X-Pack-SHA256 carries its SHA-256")})
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str) -> HttpResponse:
        response = pack_download_response(self._pack(pk), user=request.user,
                                          origin=meta_from_request(request))
        if response is None:
            raise NotFound("the pack is not ready (or its file is gone)")
        return response

    @extend_schema(responses={(200, "application/x-pem-file"): OpenApiResponse(
        OpenApiTypes.STR, description="the Ed25519 public key (PEM); X-Key-Id its key id")})
    @action(detail=False, methods=["get"], url_path="public-key")
    def public_key(self, request: Request) -> HttpResponse:
        return public_key_response()
