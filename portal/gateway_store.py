"""The portal's side of the gateway's `GatewayStore`: every read and write the gateway makes in
the portal's database, in one place, answering with the gateway's frozen records.

The gateway calls these methods in a worker thread on cache misses (`proxy.db.run_db`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from portal.models import (
    Connection,
    GatewaySession,
    Grant,
    PersonalToken,
    Quarantine,
    ToolCatalogEntry,
    UpstreamJob,
)
from portal.services.approvals import (
    policy_version_current,
    query_approval_consume,
    query_approval_denial_note,
    query_approval_find_usable,
    query_approval_last_denial,
    query_approval_propose,
    query_approval_status,
)
from portal.services.events import RequestMeta
from portal.services.identity import (
    ExternalIdentityRefused,
    external_identity_resolve,
    provider_for_issuer,
)
from portal.services.security import security_revision_current
from proxy.store import (
    AccessCutoffs,
    AccessGrants,
    ConnectionRecord,
    GrantedRole,
    IdentityRefused,
    PersonalTokenRecord,
    SeenJob,
    SessionOwner,
    UserRecord,
    UserStanding,
)


def _groups_of(user: Any) -> tuple[str, ...]:
    return tuple(sorted(user.groups.values_list("name", flat=True)))


class PortalGatewayStore:
    """`proxy.store.GatewayStore` on the portal's models and services."""

    # ----------------------------------------------------------------- identities

    def user_standing(self, user_id: int) -> UserStanding:
        active = get_user_model().objects.filter(pk=user_id, is_active=True).exists()
        quarantined = Quarantine.objects.filter(user_id=user_id, lifted_at__isnull=True).exists()
        return UserStanding(active=active, quarantined=quarantined)

    def personal_token_find(self, token_hash: str) -> PersonalTokenRecord | None:
        token = (PersonalToken.objects.select_related("user")
                 .filter(token_hash=token_hash).first())
        if token is None:
            return None
        return PersonalTokenRecord(
            token_id=token.pk,
            user_id=token.user.pk,
            username=token.user.get_username(),
            groups=_groups_of(token.user),
            connection_ids=frozenset(token.connections.values_list("pk", flat=True)),
            revoked=token.revoked_at is not None,
            expires_at=token.expires_at.timestamp(),
        )

    def personal_token_mark_used(self, token_id: int) -> None:
        PersonalToken.objects.filter(pk=token_id).update(last_used_at=timezone.now())

    def oidc_identity_resolve(self, *, issuer: str, subject: str, username_hint: str,
                              email: str, claims: Mapping[str, Any],
                              raw_groups: Iterable[Any]) -> UserRecord:
        # The same path as portal single sign-on (portal.services.identity).
        try:
            user = external_identity_resolve(
                provider=provider_for_issuer(issuer), subject=subject,
                username_hint=username_hint, email=email, claims=claims,
                raw_groups=raw_groups, meta=RequestMeta(auth_method="oidc"))
        except ExternalIdentityRefused as exc:
            raise IdentityRefused(str(exc)) from None
        return UserRecord(user_id=user.pk, username=user.get_username(),
                          groups=_groups_of(user))

    # ----------------------------------------------------------------- connections

    def connection_find(self, slug: str) -> ConnectionRecord | None:
        conn = Connection.objects.filter(slug=slug, enabled=True).first()
        if conn is None:
            return None
        quarantined = Quarantine.objects.filter(connection=conn, lifted_at__isnull=True).exists()
        return ConnectionRecord(
            slug=conn.slug,
            transport=conn.transport,
            url=conn.upstream_url,
            command=tuple(conn.upstream_command or ()),
            credentials=conn.credentials_for_upstream(),
            sql_tools=dict(conn.sql_tools or {}),
            metadata_tools=dict(conn.metadata_tools or {}),
            job_tools=dict(conn.job_tools or {}),
            project_argument=conn.project_argument,
            bigquery_project=conn.bigquery_project,
            bigquery_endpoint=conn.bigquery_endpoint,
            default_dataset=conn.default_dataset,
            allow_sampling=conn.allow_sampling,
            allow_elicitation=conn.allow_elicitation,
            connection_id=conn.pk,
            quarantined=quarantined,
            column_classes=dict(conn.column_classes or {}),
        )

    # ----------------------------------------------------------------- grants

    def access_grants(self, user_id: int, groups: tuple[str, ...],
                      connection_id: int) -> AccessGrants:
        now = timezone.now()
        grants = (
            Grant.objects.filter(connection_id=connection_id, revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .filter(Q(user_id=user_id) | Q(group__name__in=groups))
            .select_related("role")
        )
        roles = {}
        valid_until = float("inf")
        for grant in grants:
            roles[grant.role.name] = grant.role
            if grant.expires_at is not None:
                valid_until = min(valid_until, grant.expires_at.timestamp())
        return AccessGrants(
            roles=tuple(GrantedRole(name, roles[name].rules) for name in sorted(roles)),
            valid_until=valid_until, policy_version=policy_version_current())

    # ----------------------------------------------------------------- tool catalogue

    def tools_accepted(self, connection_id: int) -> dict[str, str]:
        rows = ToolCatalogEntry.objects.filter(
            connection_id=connection_id, status=ToolCatalogEntry.Status.ACCEPTED
        ).values_list("name", "digest")
        return dict(rows)

    def tool_accepted_schema(self, connection_id: int, name: str) -> dict[str, Any] | None:
        row = ToolCatalogEntry.objects.filter(
            connection_id=connection_id, name=name, status=ToolCatalogEntry.Status.ACCEPTED
        ).values_list("input_schema", flat=True).first()
        return row if isinstance(row, dict) else None

    def tool_versions_add(self, connection_id: int,
                          tools: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
        new: list[str] = []
        for name, digest, tool in tools:
            _, created = ToolCatalogEntry.objects.get_or_create(
                connection_id=connection_id, name=name, digest=digest,
                defaults={"description": str(tool.get("description") or ""),
                          "input_schema": tool.get("inputSchema") or {}},
            )
            if created:
                new.append(name)
        return new

    # ----------------------------------------------------------------- approvals

    def approval_consume_usable(self, *, user_id: int, username: str, connection_id: int,
                                tool: str, arguments_sha256: str, policy_version: int,
                                request_id: str) -> int | None:
        approval = query_approval_find_usable(
            requester_id=user_id, connection_id=connection_id, tool=tool,
            arguments_sha256=arguments_sha256, policy_version=policy_version)
        if approval is not None and query_approval_consume(approval_id=approval.pk,
                                                           request_id=request_id, actor=username):
            return approval.pk
        return None

    def approval_propose(self, *, user_id: int, username: str, connection_id: int,
                         connection_slug: str, tool: str, arguments: Any,
                         arguments_sha256: str, policy_version: int, sql_text: str,
                         bytes_estimate: int | None, rule: str, reason: str,
                         approver_groups: list[str], required_approvals: int,
                         request_id: str, ttl: dt.timedelta) -> tuple[int, bool]:
        approval, created = query_approval_propose(
            requester_id=user_id, requester_name=username, connection_id=connection_id,
            connection_slug=connection_slug, tool=tool, arguments=arguments,
            arguments_sha256=arguments_sha256, policy_version=policy_version,
            sql_text=sql_text, bytes_estimate=bytes_estimate, rule=rule, reason=reason,
            approver_groups=approver_groups, required_approvals=required_approvals,
            request_id=request_id, ttl=ttl)
        return approval.pk, created

    def approval_status(self, approval_id: int) -> str | None:
        return query_approval_status(approval_id)

    def approval_denial_note(self, approval_id: int) -> str:
        return query_approval_denial_note(approval_id)

    def approval_last_denial(self, *, user_id: int, connection_id: int, tool: str,
                             arguments_sha256: str, policy_version: int) -> str:
        return query_approval_last_denial(
            requester_id=user_id, connection_id=connection_id, tool=tool,
            arguments_sha256=arguments_sha256, policy_version=policy_version)

    # ----------------------------------------------------------------- sessions

    def session_open(self, *, session_key: str, user_id: int, connection_id: int,
                     auth_method: str, process: str, source_ip: str, user_agent: str) -> None:
        GatewaySession.objects.get_or_create(session_key=session_key, defaults=dict(
            user_id=user_id, connection_id=connection_id, auth_method=auth_method,
            process=process, source_ip=source_ip, user_agent=user_agent))

    def sessions_close(self, session_keys: set[str], reason: str) -> None:
        GatewaySession.objects.filter(session_key__in=session_keys, closed_at__isnull=True
                                      ).update(closed_at=timezone.now(), close_reason=reason)

    def session_owner(self, session_key: str) -> SessionOwner | None:
        row = (GatewaySession.objects.filter(session_key=session_key)
               .values_list("user_id", "connection_id", "closed_at", "kill_requested_at")
               .first())
        if row is None:
            return None
        return SessionOwner(row[0], row[1], row[2] is not None or row[3] is not None)

    def sessions_over(self, session_keys: set[str]) -> set[str]:
        return set(GatewaySession.objects.filter(session_key__in=session_keys)
                   .exclude(kill_requested_at__isnull=True, closed_at__isnull=True)
                   .values_list("session_key", flat=True))

    def access_cutoffs(self, *, user_ids: set[int], token_ids: set[int],
                       session_keys: set[str], connection_ids: set[int]) -> AccessCutoffs:
        active = set(get_user_model().objects.filter(pk__in=user_ids, is_active=True)
                     .values_list("pk", flat=True))
        quarantined = set(Quarantine.objects.filter(user_id__in=user_ids, lifted_at__isnull=True)
                          .values_list("user_id", flat=True))
        live_tokens = set(PersonalToken.objects.filter(
            pk__in=token_ids, revoked_at__isnull=True, expires_at__gt=timezone.now())
            .values_list("pk", flat=True))
        bad_connections = set(Quarantine.objects.filter(
            connection_id__in=connection_ids, lifted_at__isnull=True)
            .values_list("connection_id", flat=True))
        return AccessCutoffs(
            users=frozenset((user_ids - active) | quarantined),
            tokens=frozenset(token_ids - live_tokens),
            sessions=frozenset(self.sessions_over(session_keys)),
            connections=frozenset(bad_connections),
        )

    # ----------------------------------------------------------------- invalidation

    def security_revision(self) -> int:
        return security_revision_current()

    # ----------------------------------------------------------------- upstream jobs

    def job_remember(self, *, connection_id: int, job_id: str, user_id: int, tool: str,
                     statement: str, fingerprint: str, tables: list[str],
                     column_plan: dict[str, Any], role: str, policy_version: int,
                     request_id: str) -> bool:
        _, created = UpstreamJob.objects.get_or_create(
            connection_id=connection_id, job_id=job_id,
            defaults={"user_id": user_id, "tool": tool, "statement": statement,
                      "fingerprint": fingerprint, "tables": tables, "column_plan": column_plan,
                      "role": role, "policy_version": policy_version,
                      "request_id": request_id})
        return created

    def job_find(self, connection_id: int, job_id: str) -> SeenJob | None:
        row = UpstreamJob.objects.filter(connection_id=connection_id, job_id=job_id).first()
        if row is None:
            return None
        return SeenJob(row.job_id, row.user_id, row.tool, row.statement, row.request_id,
                       row.policy_version)
