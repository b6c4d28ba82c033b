"""The system's state when the pack is built (EXAMINE evidence): accounts, tokens, grants, roles,
connections, quarantines, incidents, approvals, checkpoints, legal holds, settings.

These are snapshots at `generated_at`, not as of the period: the audit-log populations say what
happened during the period. Secrets never enter a pack: token hashes, sealed credentials and
query arguments are described (format, length), not copied.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models

from audit.config import audit_config
from portal.config import portal_config
from proxy.config import gateway_config
from reports.config import reports_config
from reports.pack.archive import PackArchive
from wardgate.env import Env, deployment

from .base import EXAMINE, Evidence

# Never copied into a pack, whatever model they appear on.
SECRET_FIELDS = frozenset({"token_hash", "credentials_sealed", "password", "session_key",
                           "arguments", "sql_text", "secret", "snapshot", "response_body"})


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


@dataclass(frozen=True, slots=True)
class Snapshot:
    name: str
    path: str
    title: str
    description: str
    controls: tuple[str, ...]
    model: str  # "app_label.ModelName"
    count_by: str = ""  # a field whose values are counted into stats["by_<field>"]


def _columns(model: type[models.Model]) -> list[tuple[str, str]]:
    """(column name, values() lookup): concrete fields minus secrets; users by username."""
    user_model = get_user_model()
    out: list[tuple[str, str]] = []
    for f in model._meta.concrete_fields:
        if f.name in SECRET_FIELDS:
            continue
        if f.is_relation and f.related_model is user_model:
            out.append((f.name, f"{f.name}__username"))
        elif f.is_relation and f.related_model is not None:
            label = next((n for n in ("slug", "name") if any(
                x.name == n for x in f.related_model._meta.concrete_fields)), None)
            out.append((f.name, f"{f.name}__{label}" if label else f.attname))
        else:
            out.append((f.name, f.name))
    return out


def write_snapshot(archive: PackArchive, spec: Snapshot,
                   extra: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]] = ()) -> Evidence:
    """All rows of a model (secrets left out), or an 'unavailable' note if the model is absent."""
    try:
        model = apps.get_model(spec.model)
    except LookupError:
        entry = archive.write_csv(spec.path, ("note",), [(f"{spec.model} is not part of this "
                                                          "build",)])
        return Evidence(spec.name, entry.path, spec.title, spec.description,
                        selection=f"{spec.model}: not installed", method=EXAMINE,
                        controls=spec.controls, rows=0, expected_rows=None, sha256=entry.sha256,
                        bytes=entry.bytes, available=False,
                        notes=[f"{spec.model} does not exist in this build"])
    columns = _columns(model)
    lookups = [lookup for _, lookup in columns]
    pk = model._meta.pk.name if model._meta.pk is not None else "pk"
    queryset = model._default_manager.order_by(pk)

    def rows() -> Iterable[list[Any]]:
        for values in queryset.values(*lookups).iterator(chunk_size=2000):
            row = [_cell(values[lookup]) for lookup in lookups]
            row.extend(_cell(fn(values)) for _, fn in extra)
            yield row

    header = [name for name, _ in columns] + [name for name, _ in extra]
    entry = archive.write_csv(spec.path, header, rows())
    stats: dict[str, Any] = {}
    if spec.count_by:
        counted = (model._default_manager.values_list(spec.count_by)
                   .annotate(n=models.Count(pk)).order_by(spec.count_by))
        stats[f"by_{spec.count_by}"] = {str(value): n for value, n in counted}
    return Evidence(spec.name, entry.path, spec.title, spec.description,
                    selection=f"SELECT {', '.join(lookups)} FROM {model._meta.db_table} "
                              f"ORDER BY {pk}",
                    method=EXAMINE, controls=spec.controls, rows=entry.rows,
                    expected_rows=model._default_manager.count(), sha256=entry.sha256,
                    bytes=entry.bytes, stats=stats)


_EVERYTHING = {"*", "*.*", "*.*.*", "**"}


def role_findings() -> dict[str, Any]:
    """Least-privilege and de-identification findings over every role's rules."""
    from portal.models import Role

    broad: list[str] = []
    unmasked: list[str] = []
    for role in Role.objects.order_by("name"):
        rules = role.rules if isinstance(role.rules, dict) else {}
        tools = rules.get("tools") or []
        tables = (rules.get("sql") or {}).get("allowed_tables") or []
        if any(t in _EVERYTHING for t in tools):
            broad.append(f"role {role.name} may call every tool ({tools})")
        if any(t in _EVERYTHING for t in tables):
            broad.append(f"role {role.name} may read every table ({tables})")
        masking = rules.get("masking") or {}
        if str(masking.get("default_action", "redact")).lower() == "allow":
            unmasked.append(f"role {role.name} lets unlisted PII classes through unmasked "
                            "(default_action: allow)")
    return {"broad": broad, "unmasked_by_default": unmasked}


def write_accounts(archive: PackArchive) -> Evidence:
    user_model = get_user_model()
    users = user_model._default_manager.order_by("pk").prefetch_related("groups")
    active = inactive = 0

    def rows() -> Iterable[tuple[Any, ...]]:
        nonlocal active, inactive
        for u in users.iterator(chunk_size=1000):
            if u.is_active:
                active += 1
            else:
                inactive += 1
            yield (u.pk, u.get_username(), u.is_active, u.is_staff, u.is_superuser,
                   _cell(u.date_joined), _cell(u.last_login),
                   ";".join(sorted(g.name for g in u.groups.all())))

    columns = ("id", "username", "is_active", "is_staff", "is_superuser", "date_joined",
               "last_login", "groups")
    entry = archive.write_csv("csv/state/accounts.csv", columns, rows())
    return Evidence("accounts", entry.path, "Accounts", "Every portal/gateway account with its "
                    "state (active or disabled), privileges and groups (which carry roles and "
                    "grants). Email addresses are left out.",
                    selection=f"SELECT id, username, is_active, ... FROM "
                              f"{user_model._meta.db_table} ORDER BY id",
                    method=EXAMINE, controls=("AC-2",), rows=entry.rows,
                    expected_rows=user_model._default_manager.count(), sha256=entry.sha256,
                    bytes=entry.bytes, stats={"active": active, "disabled": inactive})


def fernet_format(blob: bytes | memoryview | None) -> str:
    """Whether sealed credentials look like a Fernet token (version 0x80, IV, AES-CBC blocks,
    HMAC) and not like plaintext. The pack never decrypts them."""
    if not blob:
        return "none"
    raw = bytes(blob)
    try:
        json.loads(raw)
        return "PLAINTEXT"
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        token = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        return "unknown"
    if token[:1] == b"\x80" and len(token) >= 73 and (len(token) - 57) % 16 == 0:
        return "fernet"
    return "unknown"


def write_connections(archive: PackArchive) -> Evidence:
    from portal.models import Connection

    formats: dict[str, int] = {}

    def rows() -> Iterable[tuple[Any, ...]]:
        for c in Connection.objects.order_by("pk").iterator(chunk_size=500):
            blob = c.credentials_sealed
            fmt = fernet_format(blob)
            formats[fmt] = formats.get(fmt, 0) + 1
            yield (c.pk, c.slug, c.transport, c.enabled, bool(blob), fmt,
                   len(bytes(blob)) if blob else 0,
                   hashlib.sha256(bytes(blob)).hexdigest()[:16] if blob else "",
                   _cell(c.updated_at))

    columns = ("id", "slug", "transport", "enabled", "has_credentials", "stored_format",
               "sealed_bytes", "sealed_sha256_prefix", "updated_at")
    entry = archive.write_csv("csv/state/connections.csv", columns, rows())
    return Evidence("connections", entry.path, "Upstream credentials at rest",
                    "Each connection's upstream credentials as stored: Fernet tokens "
                    "(AES-128-CBC + HMAC-SHA256) under a key from WARDGATE_FIELD_ENCRYPTION_KEY. "
                    "The format is checked without decrypting; the ciphertext is not copied.",
                    selection="SELECT id, slug, transport, enabled, credentials_sealed (format "
                              "only) FROM portal_connection ORDER BY id",
                    method=EXAMINE, controls=("SC-28",), rows=entry.rows,
                    expected_rows=Connection.objects.count(), sha256=entry.sha256,
                    bytes=entry.bytes, stats={"formats": formats})


def key_source(value: str, purpose: str) -> str:
    if not value:
        return "NOT SET"
    return ("derived from the secret key (demo)"
            if value == deployment(Env()).demo_key(purpose) else "configured")


def settings_rows(pack_key_id: str) -> list[tuple[str, str, str]]:
    """(setting, value, meaning): the configuration auditors ask about; never a secret."""
    audit, gateway, portal = audit_config(), gateway_config(), portal_config()
    return [
        ("WARDGATE_MODE", settings.WARDGATE_MODE, "demo or production"),
        ("WARDGATE_AUDIT_RETENTION_DAYS", str(audit.retention_days),
         "audit records older than this are purged (once signed and in an exported pack)"),
        ("WARDGATE_CHECKPOINT_INTERVAL_MINUTES", str(audit.checkpoint_interval_minutes),
         "how often the chain head is signed"),
        ("WARDGATE_CHECKPOINT_EXPORT", "set" if audit.checkpoint_export else "not set",
         "write-once location of checkpoint copies"),
        ("WARDGATE_SIEM_SINKS", ", ".join(str(s.get("name")) for s in audit.siem_sinks) or "none",
         "SIEM sinks the log is exported to"),
        ("WARDGATE_AUDIT_RESPONSE_CAP_BYTES", str(gateway.audit_response_cap_bytes),
         "response bytes kept per record (its SHA-256 covers all)"),
        ("WARDGATE_FIELD_ENCRYPTION_KEY", key_source(portal.field_encryption_key, "fields"),
         "key for upstream credentials at rest (value not shown)"),
        ("WARDGATE_TOKEN_HMAC_KEY", key_source(gateway.token_key.decode(), "tokenize"),
         "key for masking by keyed tokenization, HMAC-SHA256 (value not shown)"),
        ("WARDGATE_PACK_SIGNING_KEY", f"Ed25519 key id {pack_key_id}",
         "key signing evidence-pack manifests (public key: manage.py pack_public_key)"),
        ("WARDGATE_PACK_DISABLE_SLA_SECONDS", _number(reports_config().disable_sla_seconds),
         "how soon a disabled account must stop getting through"),
        ("WARDGATE_INACTIVE_ACCOUNT_DAYS", str(portal.inactive_account_days),
         "accounts unused this long are disabled automatically"),
    ]


def _number(value: float) -> str:
    # As the variable is written: 1, not 1.0.
    return str(int(value)) if float(value).is_integer() else str(value)


def write_settings(archive: PackArchive, pack_key_id: str) -> Evidence:
    rows = settings_rows(pack_key_id)
    entry = archive.write_csv("csv/state/settings.csv", ("setting", "value", "meaning"), rows)
    return Evidence("settings", entry.path, "Security-relevant settings",
                    "Retention, checkpoints, SIEM export, key sources (never key values).",
                    selection="django.conf.settings at build time", method=EXAMINE,
                    controls=("AU-11", "SC-13", "SC-28"), rows=entry.rows,
                    expected_rows=len(rows), sha256=entry.sha256, bytes=entry.bytes,
                    stats={name: value for name, value, _ in rows})


SNAPSHOTS = (
    Snapshot("personal-tokens", "csv/state/personal-tokens.csv", "Personal access tokens",
             "Gateway tokens: owner, scope, expiry, revocation, last use. Stored only as "
             "SHA-256 hashes (not copied).", ("AC-2", "IA-2"), "portal.PersonalToken"),
    Snapshot("api-tokens", "csv/state/api-tokens.csv", "Portal API tokens",
             "Portal API tokens: owner, expiry, revocation, last use (hashes not copied).",
             ("AC-2",), "portal.ApiToken"),
    Snapshot("access-requests", "csv/state/access-requests.csv", "Access requests",
             "Requests for a role on a connection and who decided them.", ("AC-2", "AC-6"),
             "portal.AccessRequest"),
    Snapshot("grants", "csv/state/grants.csv", "Grants",
             "Who (user or group) holds which role on which connection, until when, granted by "
             "whom; revoked grants included.", ("AC-3", "AC-6"), "portal.Grant"),
    Snapshot("roles", "csv/state/roles.csv", "Roles and policy rules",
             "Each role's rules: callable tools, SQL statement classes, tables, denied columns, "
             "bytes cap, masking actions per PII class, approval rules.",
             ("AC-3", "AC-6", "SI-19", "SI-12(1)"), "portal.Role"),
    Snapshot("quarantines", "csv/state/quarantines.csv", "Quarantines",
             "Identities and connections cut off by incident response, and when lifted.",
             ("IR-4",), "portal.Quarantine"),
    Snapshot("incidents", "csv/state/incidents.csv", "Incidents",
             "Incidents raised by the automatic rules and their review.", ("IR-4",),
             "portal.Incident", count_by="status"),
    Snapshot("query-approvals", "csv/state/query-approvals.csv", "Query approvals",
             "Calls held for a human approval: pending, approved, denied, expired, used "
             "(arguments left out; their SHA-256 is kept).", ("IR-4",), "portal.QueryApproval",
             count_by="status"),
    Snapshot("checkpoints", "csv/state/checkpoints.csv", "Signed chain checkpoints",
             "Ed25519-signed statements of the chain head (seq, hash, time) and where each "
             "was exported.", ("AU-9", "AU-9(3)", "AU-10"), "audit.AuditCheckpoint"),
    Snapshot("legal-holds", "csv/state/legal-holds.csv", "Legal holds",
             "Holds that stop retention purges while active.", ("AU-11",), "audit.LegalHold"),
    Snapshot("export-cursors", "csv/state/siem-export-cursors.csv", "SIEM export progress",
             "How far each SIEM sink has received the log.", ("AU-6",), "audit.ExportCursor"),
    Snapshot("evidence-packs", "csv/state/evidence-packs.csv", "Evidence packs",
             "Evidence packs requested, built and exported (this one included, as running).",
             ("AU-6",), "reports.EvidencePack", count_by="status"),
)


# Portal roles that hold privileges over others' access or over the system (IA-2(1)).
PRIVILEGED_ROLES = ("admin", "approver")
SECOND_FACTORS = ("totp", "webauthn")


def write_privileged_mfa(archive: PackArchive) -> Evidence:
    """IA-2(1): every privileged account (portal admin or approver, superuser, staff) and whether
    a second factor (TOTP or WebAuthn) is enrolled; an active one without is a gap."""
    from allauth.mfa.models import Authenticator
    from django.db.models import Q

    user_model = get_user_model()
    privileged = (user_model._default_manager
                  .filter(Q(groups__name__in=PRIVILEGED_ROLES) | Q(is_superuser=True)
                          | Q(is_staff=True))
                  .distinct().order_by("pk").prefetch_related("groups"))
    factors: dict[int, dict[str, Any]] = {}
    for user_id, kind, created, used in Authenticator.objects.filter(
            type__in=SECOND_FACTORS).values_list("user_id", "type", "created_at", "last_used_at"):
        entry = factors.setdefault(user_id, {"types": set(), "since": created, "used": used})
        entry["types"].add(kind)
        entry["since"] = min(entry["since"], created)
        if used and (entry["used"] is None or used > entry["used"]):
            entry["used"] = used
    required = {str(r) for r in portal_config().mfa_required_roles}
    without: list[str] = []
    rows = []
    for u in privileged:
        roles = sorted(g.name for g in u.groups.all() if g.name in {"admin", "approver",
                                                                   "engineer", "auditor"})
        if u.is_superuser:
            roles.append("superuser")
        f = factors.get(u.pk)
        enrolled = f is not None
        if u.is_active and not enrolled:
            without.append(u.get_username())
        rows.append((u.pk, u.get_username(), ";".join(roles), u.is_active,
                     bool(required & set(roles)) or u.is_superuser, enrolled,
                     ";".join(sorted(f["types"])) if f else "",
                     _cell(f["since"]) if f else "", _cell(f["used"]) if f else "",
                     _cell(u.last_login)))
    columns = ("id", "username", "roles", "is_active", "mfa_required_by_policy", "mfa_enrolled",
               "factors", "enrolled_at", "factor_last_used_at", "last_login")
    entry = archive.write_csv("csv/state/privileged-accounts-mfa.csv", columns, rows)
    return Evidence(
        "privileged-mfa", entry.path, "Privileged accounts and their MFA (IA-2(1))",
        "Every privileged account (portal admin or approver, Django superuser or staff) with "
        "its roles, state and enrolled second factors (TOTP, WebAuthn; recovery codes do not "
        "count). An active privileged account without one is a gap.",
        selection="SELECT DISTINCT u.* FROM auth_user u JOIN groups WHERE group IN "
                  f"{PRIVILEGED_ROLES} OR is_superuser OR is_staff; mfa_authenticator WHERE "
                  f"type IN {SECOND_FACTORS}",
        method=EXAMINE, controls=("IA-2",), rows=entry.rows, expected_rows=privileged.count(),
        sha256=entry.sha256, bytes=entry.bytes,
        stats={"privileged": len(rows), "without_mfa": without,
               "enrolled": sum(1 for r in rows if r[5])})


def write_access_review(archive: PackArchive, *, head_seq: int) -> Evidence:
    """AC-2(j): who holds what (one row per grant and holder; group grants expanded to their
    members), granted by whom and when (with the audit record of the grant's creation), until
    when, and when the holder last used it. A grant with no `created_by` or no creation event is
    a gap: nothing shows who decided it."""
    from django.db.models import Max

    from audit.models import AuditRecord
    from portal.models import Grant

    created_event: dict[int, int] = {}
    for seq, detail in (AuditRecord.objects.filter(event="portal.grant_created", seq__lte=head_seq)
                        .values_list("seq", "detail").iterator(chunk_size=2000)):
        grant_id = (detail or {}).get("grant_id") if isinstance(detail, dict) else None
        if isinstance(grant_id, int):
            created_event.setdefault(grant_id, seq)
    last_used = {(actor, conn): at for actor, conn, at in (
        AuditRecord.objects.filter(event="mcp.decision", decision="allow", seq__lte=head_seq)
        .order_by().values("actor", "connection").annotate(last=Max("at"))
        .values_list("actor", "connection", "last"))}
    now = dt.datetime.now(dt.UTC)
    without_creator: list[int] = []
    without_event: list[int] = []
    grants = (Grant.objects.select_related("role", "connection", "user", "group", "created_by")
              .prefetch_related("group__user_set").order_by("pk"))

    def status(g: Grant) -> str:
        if g.revoked_at:
            return "revoked"
        if g.expires_at and g.expires_at <= now:
            return "expired"
        return "active"

    def rows() -> Iterable[tuple[Any, ...]]:
        for g in grants:
            if g.created_by_id is None:
                without_creator.append(g.pk)
            if g.pk not in created_event:
                without_event.append(g.pk)
            holders = ([g.user] if g.user_id else sorted(g.group.user_set.all(),
                                                          key=lambda u: u.get_username()))
            via = "user" if g.user_id else f"group:{g.group.name}"
            for holder in holders or [None]:
                name = holder.get_username() if holder is not None else ""
                used = last_used.get((name, g.connection.slug)) if name else None
                yield (g.pk, name, holder.is_active if holder is not None else "", via,
                       g.role.name, g.connection.slug, status(g), _cell(g.created_at),
                       g.created_by.get_username() if g.created_by else "",
                       created_event.get(g.pk, ""), _cell(g.expires_at), _cell(g.revoked_at),
                       _cell(used) if used else "never")

    columns = ("grant_id", "holder", "holder_active", "via", "role", "connection", "status",
               "granted_at", "granted_by", "creation_event_seq", "expires_at", "revoked_at",
               "last_used_at")
    entry = archive.write_csv("csv/state/access-review.csv", columns, rows())
    return Evidence(
        "access-review", entry.path, "Access review (AC-2(j)): who holds what",
        "One row per grant and holder (group grants expanded to the group's members): role, "
        "connection, status, when and by whom it was granted with the seq of its "
        "portal.grant_created audit record, expiry or revocation, and when the holder last made "
        "an allowed call on the connection.",
        selection="SELECT * FROM portal_grant JOIN members; audit_record WHERE event = "
                  "'portal.grant_created' (creation), MAX(at) WHERE event = 'mcp.decision' AND "
                  f"decision = 'allow' GROUP BY actor, connection (last use); seq <= {head_seq}",
        method=EXAMINE, controls=("AC-2", "AC-6"), rows=entry.rows, sha256=entry.sha256,
        bytes=entry.bytes,
        stats={"grants": Grant.objects.count(), "without_creator": without_creator,
               "without_creation_event": without_event})
