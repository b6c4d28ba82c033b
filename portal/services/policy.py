"""Connections, roles and masking classes (admins), the "try it" panel, and policy as YAML.

Every change that alters what the gateway allows makes a new policy version
(portal.services.approvals.policy_version_create) and bumps the security revision."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from portal.models import Connection, Grant, Role, ToolCatalogEntry
from portal.services.errors import ServiceError
from portal.services.events import SYSTEM, RequestMeta, portal_event
from portal.services.security import security_revision_bump
from proxy.config import gateway_config

# Connection fields that policy (and so the YAML) carries. Credentials never.
CONNECTION_POLICY_FIELDS = ("name", "transport", "upstream_url", "upstream_command", "preset",
                            "sql_tools", "metadata_tools", "job_tools", "project_argument",
                            "bigquery_project", "bigquery_endpoint", "default_dataset",
                            "column_classes", "allow_sampling", "allow_elicitation", "enabled")


class PolicyError(ServiceError):
    """A connection, role or policy file a rule refuses; `errors` names the fields at fault."""

    default_code = "policy_invalid"

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message, field_errors=errors)

    @property
    def errors(self) -> dict[str, list[str]]:
        return self.field_errors


def _validation_errors(exc: ValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {k: [str(m) for e in v for m in e.messages] for k, v in exc.error_dict.items()}
    return {"__all__": [str(m) for m in exc.messages]}


def _require_reason(reason: str) -> str:
    if not (reason or "").strip():
        raise PolicyError("Give a reason: policy changes are versioned with who and why.",
                          {"reason": ["This field is required."]})
    return reason.strip()


def _new_policy_version(by: Any, reason: str, meta: RequestMeta) -> int:
    from portal.services.approvals import policy_version_create

    return policy_version_create(by=by, reason=reason, snapshot=policy_export(),
                                 meta=meta).number


def validate_connection(connection: Connection) -> None:
    from policy.classify import ColumnClassifier

    try:
        connection.full_clean(exclude=["credentials_sealed"])
        ColumnClassifier.from_config(connection.column_classes or {})
    except ValidationError as exc:
        raise PolicyError("The connection is not valid.", _validation_errors(exc)) from exc
    except ValueError as exc:
        raise PolicyError("The connection is not valid.", {"column_classes": [str(exc)]}) from exc
    if not isinstance(connection.upstream_command, list) or not all(
            isinstance(a, str) for a in connection.upstream_command):
        raise PolicyError("The connection is not valid.",
                          {"upstream_command": ["A list of strings (argv)."]})


def connection_fill_preset(connection: Connection, before: dict[str, Any] | None = None) -> None:
    """Fill in what the connection's preset knows (proxy.presets): fields still empty get the
    preset's value, and when the preset changed, so do fields left as they were before. Fields
    the admin set themselves are kept."""
    from proxy.presets import PRESETS, preset_fields

    if connection.preset not in PRESETS:
        return  # "" (by hand) or unknown (validate_connection says so)
    changed = before is not None and before.get("preset") != connection.preset
    for name, value in preset_fields(connection.preset).items():
        current = getattr(connection, name)
        if not current or (changed and current == before.get(name)):
            setattr(connection, name, value)


@transaction.atomic
def connection_save(*, connection: Connection, by: Any, reason: str,
                    meta: RequestMeta = SYSTEM) -> Connection:
    reason = _require_reason(reason)
    before = (Connection.objects.filter(pk=connection.pk).values(*CONNECTION_POLICY_FIELDS).first()
              if connection.pk else None)
    connection_fill_preset(connection, before)
    validate_connection(connection)
    connection.save()
    after = {f: getattr(connection, f) for f in CONNECTION_POLICY_FIELDS}
    changed = sorted(f for f in CONNECTION_POLICY_FIELDS if before is None or before[f] != after[f])
    if changed:
        version = _new_policy_version(by, f"connection {connection.slug}: {reason}", meta)
        security_revision_bump()
        portal_event("connection_saved", by=by, meta=meta, connection=connection.slug,
                     detail={"connection": connection.slug, "created": before is None,
                             "changed": changed, "reason": reason, "policy_version": version,
                             "before": {f: before[f] for f in changed} if before else None,
                             "after": {f: after[f] for f in changed}})
    return connection


@transaction.atomic
def connection_credentials_set(*, connection: Connection, credentials: dict[str, Any], by: Any,
                               reason: str, meta: RequestMeta = SYSTEM) -> Connection:
    """Write-only: sealed at rest, never shown again; the record names only the keys."""
    reason = _require_reason(reason)
    if not isinstance(credentials, dict):
        raise PolicyError("Credentials must be a JSON object.",
                          {"credentials": ["A JSON object, e.g. {\"headers\": {...}}."]})
    from proxy.google_auth import GoogleTokenError, google_auth_config

    try:
        google_auth_config(credentials)
    except GoogleTokenError as exc:
        raise PolicyError("The Google credentials are not usable.",
                          {"credentials": [exc.message]}) from exc
    connection.set_credentials(credentials)
    connection.save(update_fields=["credentials_sealed", "updated_at"])
    security_revision_bump()
    portal_event("connection_credentials_set", by=by, meta=meta, connection=connection.slug,
                 detail={"connection": connection.slug, "keys": sorted(credentials),
                         "reason": reason})
    return connection


def validate_role(role: Role) -> None:
    try:
        role.full_clean()
    except ValidationError as exc:
        raise PolicyError("The role is not valid.", _validation_errors(exc)) from exc


@transaction.atomic
def role_save(*, role: Role, by: Any, reason: str, meta: RequestMeta = SYSTEM) -> Role:
    reason = _require_reason(reason)
    validate_role(role)
    before = Role.objects.filter(pk=role.pk).values("rules", "description").first() \
        if role.pk else None
    role.save()
    if before is None or before["rules"] != role.rules or before["description"] != role.description:
        version = _new_policy_version(by, f"role {role.name}: {reason}", meta)
        security_revision_bump()
        portal_event("role_saved", by=by, meta=meta,
                     detail={"role": role.name, "created": before is None, "reason": reason,
                             "policy_version": version,
                             "before": before["rules"] if before else None, "after": role.rules})
    return role


# ----------------------------------------------------------------------------- try it

@dataclass
class TryResult:
    allowed: bool
    reasons: list[dict[str, Any]]
    role: str
    tables: list[str] = field(default_factory=list)
    statement_classes: list[str] = field(default_factory=list)
    bytes_processed: int | None = None
    column_classes: dict[str, list[str]] = field(default_factory=dict)
    approval_rule: str | None = None
    sample: dict[str, Any] | None = None
    masking: list[Any] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _sample_rows(connection: Connection, sql: str, facts: Any) -> dict[str, Any]:
    """Run the statement on the connection's BigQuery (first 5 rows) in the MCP result shape."""
    from bigquery_mcp.serialize import to_json_value

    result = facts._bq().query(sql).result(max_results=5)
    columns = [{"name": f.name, "type": f.field_type} for f in result.schema]
    rows = [{k: to_json_value(v) for k, v in row.items()} for row in result]
    payload = {"columns": columns, "rows": rows, "row_count": len(rows)}
    return {"content": [{"type": "text", "text": json.dumps(payload)}],
            "structuredContent": payload}


def policy_try(*, role: Role, connection: Connection, tool: str, arguments: dict[str, Any],
               run_sample: bool, by: Any, meta: RequestMeta = SYSTEM) -> TryResult:
    """Evaluate a call as `role` would see it on `connection`: the decision with its reasons,
    and (only when asked) a masked sample of at most 5 rows. The upstream MCP server is never
    called; BigQuery is asked for schemas and a dry run, as the gateway does."""
    from policy.classify import ColumnClassifier
    from policy.roles import AccessPlan, compile_role_rules
    from proxy.authorize import SqlToolContext, authorize_tool_call
    from proxy.bigquery_facts import BigQueryFacts
    from proxy.mask import UnmaskableResult, column_classes_for, mask_call_result
    from proxy.metadata_tools import MetadataTool

    try:
        compiled = compile_role_rules(role.name, role.rules,
                                      token_key=gateway_config().token_key)
        classifier = ColumnClassifier.from_config(connection.column_classes or {})
    except ValueError as exc:
        raise PolicyError(str(exc)) from exc
    plan = AccessPlan(roles=(compiled,))
    accepted = ToolCatalogEntry.objects.filter(connection=connection, name=tool,
                                               status=ToolCatalogEntry.Status.ACCEPTED).exists()
    sql_tool = connection.sql_tool(tool)
    argument = sql_tool[0] if sql_tool else None
    facts = None
    sql_ctx = None
    if sql_tool:
        facts = BigQueryFacts(project=connection.bigquery_project,
                              endpoint=connection.bigquery_endpoint or None,
                              credentials=connection.credentials_for_upstream(),
                              timeout_seconds=gateway_config().bigquery_timeout_seconds)
        sql_ctx = SqlToolContext(sql_argument=sql_tool[0], project=connection.bigquery_project,
                                 dataset=connection.default_dataset or None, facts=facts,
                                 classifier=classifier, statement_classes=sql_tool[1])
    metadata_spec = (connection.metadata_tools or {}).get(tool)
    metadata = MetadataTool.from_spec(metadata_spec, connection.bigquery_project,
                                      connection.default_dataset) if metadata_spec else None
    decision = async_to_sync(authorize_tool_call)(
        plan=plan, tool=tool, arguments=arguments, tool_is_accepted=accepted, sql_tool=sql_ctx,
        project_argument=connection.project_argument, project=connection.bigquery_project,
        metadata_tool=metadata)
    out = TryResult(allowed=decision.allowed, role=role.name,
                    reasons=[{k: v for k, v in r.as_dict().items() if v is not None}
                             for r in decision.reasons])
    sql = decision.sql
    if sql is not None:
        out.tables, out.statement_classes = list(sql.tables), list(sql.statement_classes)
        out.bytes_processed = sql.bytes_processed
    if decision.columns is not None:
        out.column_classes = {str(i): sorted(c)
                              for i, c in enumerate(decision.columns.by_position)}
    if decision.allowed and decision.role is not None:
        rule = decision.role.approval_rule_for(tool, tuple(out.tables),
                                               tuple(out.statement_classes), out.bytes_processed)
        out.approval_rule = rule.id if rule else None
    if run_sample and decision.allowed and facts is not None and decision.role is not None:
        raw = _sample_rows(connection, arguments[argument], facts)
        if decision.columns is not None:
            out.column_classes = {k: sorted(v) for k, v in
                                  column_classes_for(raw, decision.columns).items()}
        try:
            masked, summary = mask_call_result(raw, decision.columns, decision.role.masking)
            out.sample, out.masking = masked.get("structuredContent"), summary.as_list()
        except UnmaskableResult as exc:
            out.reasons.append({"rule": "mask.unmaskable", "message": str(exc)})
    portal_event("policy_tried", by=by, meta=meta, connection=connection.slug, tool=tool,
                 sql_text=str(arguments.get(argument, "")) if argument else "",
                 detail={"role": role.name, "allowed": out.allowed, "reasons": out.reasons,
                         "sample_rows": len((out.sample or {}).get("rows") or []),
                         "masking": out.masking})
    return out


# ------------------------------------------------------------------------- YAML import/export

def policy_export() -> dict[str, Any]:
    """Roles with their rules, grants to groups, connections' policy fields. No credentials,
    no grants to individual accounts (those are lifecycle, not policy)."""
    now = timezone.now()
    roles = {r.name: {"description": r.description, "rules": r.rules}
             for r in Role.objects.order_by("name")}
    connections = {}
    for c in Connection.objects.order_by("slug"):
        connections[c.slug] = {f: getattr(c, f) for f in CONNECTION_POLICY_FIELDS}
    grants = []
    for g in (Grant.objects.filter(group__isnull=False, revoked_at__isnull=True)
              .select_related("group", "role", "connection")
              .order_by("group__name", "connection__slug", "role__name")):
        if g.expires_at is not None and g.expires_at <= now:
            continue
        item: dict[str, Any] = {"group": g.group.name, "role": g.role.name,
                                "connection": g.connection.slug}
        if g.expires_at is not None:
            item["expires_at"] = g.expires_at.isoformat()
        if g.reason:
            item["reason"] = g.reason
        grants.append(item)
    return {"version": 1, "roles": roles, "connections": connections, "grants": grants}


@dataclass
class PolicyDiff:
    lines: list[str] = field(default_factory=list)
    role_changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    connection_changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    grants_add: list[dict[str, Any]] = field(default_factory=list)
    grants_revoke: list[Grant] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.role_changes or self.connection_changes or self.grants_add
                    or self.grants_revoke)


def _grant_key(group: str, role: str, connection: str) -> tuple[str, str, str]:
    return (group, role, connection)


def policy_diff(data: Any) -> PolicyDiff:
    """Validate a policy document and say what applying it would change."""
    from policy.roles import compile_role_rules

    if not isinstance(data, dict):
        raise PolicyError("The policy file must be a mapping with roles, connections, grants.")
    unknown = set(data) - {"version", "roles", "connections", "grants"}
    if unknown:
        raise PolicyError(f"Unknown top-level keys: {sorted(unknown)}")
    diff = PolicyDiff()
    current = policy_export()
    roles = data.get("roles") or {}
    if not isinstance(roles, dict):
        raise PolicyError("roles must map role names to {description, rules}")
    for name, spec in sorted(roles.items()):
        if not isinstance(spec, dict) or not isinstance(spec.get("rules", {}), dict):
            raise PolicyError(f"role {name!r}: expected {{description, rules}}")
        try:
            compile_role_rules(str(name), spec.get("rules") or {}, token_key=b"validation-only")
        except ValueError as exc:
            raise PolicyError(f"role {name!r}: {exc}") from exc
        new = {"description": str(spec.get("description") or ""), "rules": spec.get("rules") or {}}
        old = current["roles"].get(name)
        if old != new:
            diff.role_changes.append((str(name), new))
            diff.lines.append(f"{'~' if old else '+'} role {name}"
                              + (_changed_keys(old, new) if old else ""))
    connections = data.get("connections") or {}
    if not isinstance(connections, dict):
        raise PolicyError("connections must map slugs to their settings")
    for slug, spec in sorted(connections.items()):
        if not isinstance(spec, dict):
            raise PolicyError(f"connection {slug!r}: expected a mapping")
        if "credentials" in spec or "credentials_sealed" in spec:
            raise PolicyError(f"connection {slug!r}: credentials never travel in policy files")
        bad = set(spec) - set(CONNECTION_POLICY_FIELDS)
        if bad:
            raise PolicyError(f"connection {slug!r}: unknown keys {sorted(bad)}")
        old = current["connections"].get(slug)
        merged = {**(old or {}), **spec}
        probe = Connection(slug=str(slug), **{k: v for k, v in merged.items()})
        if old is not None:
            probe.pk = Connection.objects.get(slug=slug).pk
            probe._state.adding = False
        if not probe.name:
            probe.name = str(slug)
        connection_fill_preset(probe, old)
        merged = {**merged, **{f: getattr(probe, f) for f in CONNECTION_POLICY_FIELDS}}
        try:
            validate_connection(probe)
        except PolicyError as exc:
            raise PolicyError(f"connection {slug!r}: {exc.errors or exc}") from exc
        if old != {f: getattr(probe, f) for f in CONNECTION_POLICY_FIELDS}:
            diff.connection_changes.append((str(slug), merged))
            diff.lines.append(f"{'~' if old else '+'} connection {slug}"
                              + (_changed_keys(old, merged) if old else ""))
    grants = data.get("grants") or []
    if not isinstance(grants, list):
        raise PolicyError("grants must be a list of {group, role, connection}")
    role_names = set(current["roles"]) | {n for n, _ in diff.role_changes}
    conn_slugs = set(current["connections"]) | {s for s, _ in diff.connection_changes}
    wanted = {}
    for i, g in enumerate(grants):
        if not isinstance(g, dict) or not all(isinstance(g.get(k), str)
                                              for k in ("group", "role", "connection")):
            raise PolicyError(f"grants[{i}]: needs group, role and connection")
        if g["role"] not in role_names:
            raise PolicyError(f"grants[{i}]: unknown role {g['role']!r}")
        if g["connection"] not in conn_slugs:
            raise PolicyError(f"grants[{i}]: unknown connection {g['connection']!r}")
        if g.get("expires_at"):
            try:
                dt.datetime.fromisoformat(str(g["expires_at"]))
            except ValueError as exc:
                raise PolicyError(f"grants[{i}]: bad expires_at") from exc
        wanted[_grant_key(g["group"], g["role"], g["connection"])] = g
    live = {_grant_key(g["group"], g["role"], g["connection"]) for g in current["grants"]}
    for key, g in sorted(wanted.items()):
        if key not in live:
            diff.grants_add.append(g)
            diff.lines.append(f"+ grant group {key[0]} -> {key[1]} on {key[2]}")
    now = timezone.now()
    for grant in (Grant.objects.filter(group__isnull=False, revoked_at__isnull=True)
                  .select_related("group", "role", "connection")):
        if grant.expires_at is not None and grant.expires_at <= now:
            continue
        if _grant_key(grant.group.name, grant.role.name, grant.connection.slug) not in wanted:
            diff.grants_revoke.append(grant)
            diff.lines.append(f"- grant group {grant.group.name} -> {grant.role.name} "
                              f"on {grant.connection.slug}")
    return diff


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return f" ({', '.join(keys)})" if keys else ""


@transaction.atomic
def policy_apply(*, data: Any, by: Any, reason: str, dry_run: bool = False,
                 meta: RequestMeta = SYSTEM) -> PolicyDiff:
    """Apply a policy document (declarative for group grants: those not listed are revoked)."""
    from portal.services.grants import grant_create, grant_revoke

    reason = _require_reason(reason)
    diff = policy_diff(data)
    if dry_run or diff.empty:
        return diff
    for name, spec in diff.role_changes:
        role = Role.objects.filter(name=name).first() or Role(name=name)
        role.description, role.rules = spec["description"], spec["rules"]
        role.full_clean()
        role.save()
    for slug, spec in diff.connection_changes:
        conn = Connection.objects.filter(slug=slug).first() or Connection(slug=slug)
        for key, value in spec.items():
            setattr(conn, key, value)
        if not conn.name:
            conn.name = slug
        validate_connection(conn)
        conn.save()
    for g in diff.grants_add:
        expires = dt.datetime.fromisoformat(g["expires_at"]) if g.get("expires_at") else None
        if expires is not None and timezone.is_naive(expires):
            expires = timezone.make_aware(expires, dt.UTC)
        grant_create(role=Role.objects.get(name=g["role"]),
                     connection=Connection.objects.get(slug=g["connection"]),
                     group=Group.objects.get_or_create(name=g["group"])[0], by=by, meta=meta,
                     expires_at=expires, reason=g.get("reason") or f"policy file: {reason}")
    for grant in diff.grants_revoke:
        grant_revoke(grant=grant, by=by, meta=meta, reason=f"not in policy file: {reason}")
    version = _new_policy_version(by, f"policy file applied: {reason}", meta)
    security_revision_bump()
    portal_event("policy_applied", by=by, meta=meta,
                 detail={"reason": reason, "changes": diff.lines, "policy_version": version})
    return diff
