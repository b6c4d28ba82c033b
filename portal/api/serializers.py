from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import serializers

from audit.models import AuditRecord
from portal.config import portal_config
from portal.models import AccessRequest, Connection, Grant, Incident, Quarantine, QueryApproval
from portal.models import Role as PolicyRole
from portal.permissions import ALL_ROLES
from portal.selectors.accounts import grant_state


class AccessRequestSerializer(serializers.ModelSerializer):
    requester = serializers.CharField(source="requester.username", read_only=True)
    connection = serializers.SlugRelatedField(slug_field="slug",
                                              queryset=Connection.objects.filter(enabled=True))
    role = serializers.SlugRelatedField(slug_field="name", queryset=PolicyRole.objects.all())
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, default=None)
    duration_hours = serializers.IntegerField(min_value=1)
    justification = serializers.CharField(min_length=10)

    class Meta:
        model = AccessRequest
        fields = ["id", "requester", "connection", "role", "duration_hours", "justification",
                  "status", "decided_by", "decided_at", "decision_comment", "grant",
                  "created_at"]
        read_only_fields = ["status", "decided_at", "decision_comment", "grant", "created_at"]

    def validate_duration_hours(self, value: int) -> int:
        limit = portal_config().access_request_max_hours
        if value > limit:
            raise serializers.ValidationError(f"At most {limit} hours.")
        return value


class DecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["approve", "deny"])
    comment = serializers.CharField(required=False, allow_blank=True, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["decision"] == "deny" and not attrs.get("comment", "").strip():
            raise serializers.ValidationError({"comment": ["A denial needs a reason."]})
        return attrs


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField()


class QueryApprovalSerializer(serializers.ModelSerializer):
    requester = serializers.CharField(source="requester.username", read_only=True)
    connection = serializers.CharField(source="connection.slug", read_only=True)

    class Meta:
        model = QueryApproval
        fields = ["id", "requester", "connection", "tool", "sql_text", "arguments",
                  "bytes_estimate", "rule", "reason", "policy_version", "approver_groups",
                  "required_approvals", "status", "created_at", "expires_at", "decided_at"]
        read_only_fields = fields


class GrantSerializer(serializers.ModelSerializer):
    role = serializers.SlugRelatedField(slug_field="name", queryset=PolicyRole.objects.all())
    connection = serializers.SlugRelatedField(slug_field="slug",
                                              queryset=Connection.objects.all())
    user = serializers.SlugRelatedField(slug_field="username", required=False, allow_null=True,
                                        queryset=get_user_model().objects.all())
    group = serializers.SlugRelatedField(slug_field="name", required=False, allow_null=True,
                                         queryset=Group.objects.all())
    reason = serializers.CharField()
    state = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", read_only=True,
                                       default=None)

    class Meta:
        model = Grant
        fields = ["id", "role", "connection", "user", "group", "expires_at", "revoked_at",
                  "reason", "state", "created_by", "created_at"]
        read_only_fields = ["revoked_at", "created_at"]

    def get_state(self, grant: Grant) -> str:
        return grant_state(grant)


class AccountSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField()

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "email", "is_active", "roles", "last_login", "date_joined"]
        read_only_fields = fields

    def get_roles(self, user: Any) -> list[str]:
        return sorted(g.name for g in user.groups.all() if g.name in ALL_ROLES)


class AccountCreateSerializer(serializers.Serializer):
    username = serializers.RegexField(regex=r"^[\w.@+-]{1,150}$", max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    password = serializers.CharField(required=False, allow_blank=True, min_length=12,
                                     write_only=True, default="")
    roles = serializers.ListField(child=serializers.ChoiceField(choices=sorted(ALL_ROLES)),
                                  default=list)
    reason = serializers.CharField()


class IncidentSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)
    reviewed_by = serializers.CharField(source="reviewed_by.username", read_only=True,
                                        default=None)

    class Meta:
        model = Incident
        fields = ["id", "user", "rule", "observed", "threshold", "window_minutes", "status",
                  "quarantine", "created_at", "reviewed_by", "reviewed_at", "review_comment"]
        read_only_fields = fields


class QuarantineSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", required=False, allow_null=True,
                                        queryset=get_user_model().objects.all())
    connection = serializers.SlugRelatedField(slug_field="slug", required=False,
                                              allow_null=True, queryset=Connection.objects.all())
    created_by = serializers.CharField(source="created_by.username", read_only=True,
                                       default=None)

    class Meta:
        model = Quarantine
        fields = ["id", "user", "connection", "reason", "created_by", "created_at", "lifted_at"]
        # "Exactly one identity or one connection" is the service's rule (quarantine_create).
        read_only_fields = ["created_at", "lifted_at"]


class AuditRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditRecord
        fields = ["seq", "at", "event", "request_id", "actor", "auth_method", "source_ip",
                  "connection", "mcp_session_id", "jsonrpc_method", "tool", "sql_text",
                  "decision", "reasons", "masking", "row_count", "result_bytes",
                  "response_sha256", "detail", "hash"]
        read_only_fields = fields


class AuditQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    actor = serializers.CharField(required=False)
    connection = serializers.CharField(required=False)
    decision = serializers.ChoiceField(required=False, choices=[
        "allow", "deny", "hold", "withheld", "error", "info"])
    tool = serializers.CharField(required=False)
    table = serializers.CharField(required=False)
    event = serializers.CharField(required=False)
