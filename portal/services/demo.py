"""Demo accounts and the demo connection, created idempotently by `manage.py demo`."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal.config import portal_config
from portal.models import Connection, Grant
from portal.models import Role as PolicyRole
from portal.roles import Role
from portal.services.events import SYSTEM, RequestMeta, portal_event
from portal.services.security import security_revision_bump
from proxy.presets import preset_fields

DEMO_CONNECTION_SLUG = "demo-bigquery"

# Which demo columns hold which PII class (project and dataset left open with globs).
DEMO_COLUMN_CLASSES = {
    "*.*.customers.full_name": "name",
    "*.*.customers.email": "email",
    "*.*.customers.phone": "phone",
    "*.*.customers.ssn": "ssn",
    "*.*.customers.card_number": "card",
    "*.*.customers.date_of_birth": "dob",
    "*.*.customers.street_address": "address",
    "*.*.customers.ip_address": "ip",
    # Free-form JSON that holds PII in prose: read through the content detectors, never
    # computed on (encodings of it would slip past them).
    "*.*.events.payload": "free_text",
}

# Our BigQuery MCP server's tools that answer about tables.

# The engineers' role on the demo connection: read-only SQL on the shop tables, PII masked.
DEMO_ANALYST_RULES = {
    "tools": ["list_datasets", "list_tables", "get_table_schema", "execute_sql", "dry_run_sql"],
    "sql": {
        "allowed_statement_classes": ["select"],
        "allowed_tables": ["*.shop.customers", "*.shop.orders", "*.shop.events"],
        "denied_columns": [],
        "max_bytes_scanned": 10 * 1024**3,
    },
    "masking": {
        "actions": {
            "email": "partial", "phone": "partial", "card": "partial", "ssn": "redact",
            "name": "tokenize", "address": "redact", "dob": "partial", "ip": "partial",
            "iban": "partial", "free_text": "detect",
        },
        "default_action": "redact",
        "detect_content": True,
    },
}


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: Role


DEMO_LOGINS = [
    DemoLogin("admin", "admin-demo-pass", Role.ADMIN),
    DemoLogin("engineer", "engineer-demo-pass", Role.ENGINEER),
    DemoLogin("approver", "approver-demo-pass", Role.APPROVER),
    DemoLogin("auditor", "auditor-demo-pass", Role.AUDITOR),
]


@transaction.atomic
def demo_users_ensure(*, meta: RequestMeta = SYSTEM) -> list[DemoLogin]:
    """The demo's sign-ins, as the banner prints them: created, re-enabled (a demo account an
    admin disabled is enabled again), passwords set to the printed ones and roles restored.
    Recorded (`portal.demo_accounts_ensured`, by whoever ran the demo, with what changed
    beyond the passwords); a change bumps the security revision, like any change to accounts."""
    user_model = get_user_model()
    changes: dict[str, list[str]] = {}
    for login in DEMO_LOGINS:
        group, _ = Group.objects.get_or_create(name=login.role.value)
        user, created = user_model.objects.get_or_create(username=login.username)
        admin = login.role is Role.ADMIN
        changed = ["created"] if created else []
        if not created:
            changed += [what for what, differs in (
                ("enabled", not user.is_active),
                ("superuser", (user.is_staff, user.is_superuser) != (admin, admin)),
                (f"group_added:{group.name}", not user.groups.filter(pk=group.pk).exists()),
            ) if differs]
        user.is_active = True
        user.is_staff = user.is_superuser = admin
        user.set_password(login.password)
        user.save()
        user.groups.add(group)
        if changed:
            changes[login.username] = changed
    if changes:
        security_revision_bump()
    portal_event("demo_accounts_ensured", by=None, meta=meta,
                 detail={"passwords_set": [login.username for login in DEMO_LOGINS],
                         "changes": changes})
    return DEMO_LOGINS


# Why the demo's own writes were made, as their audit records and policy versions say.
DEMO_REASON = "manage.py demo: the demo's own connection and policy"


@transaction.atomic
def demo_connection_ensure(
    *, upstream_url: str, bigquery_project: str, bigquery_endpoint: str, dataset: str,
    meta: RequestMeta = SYSTEM,
) -> Connection:
    """The demo connection, pointed at this run's MCP server and emulator. Saved through the
    recorded service (`portal.connection_saved`, by whoever ran the demo, with what changed,
    a new policy version and a security revision bump); nothing is recorded when nothing
    changed."""
    from portal.services.policy import connection_save

    connection = (Connection.objects.filter(slug=DEMO_CONNECTION_SLUG).first()
                  or Connection(slug=DEMO_CONNECTION_SLUG))
    for name, value in {
        "name": "Demo BigQuery (emulator)",
        "transport": Connection.Transport.HTTP,
        "upstream_url": upstream_url,
        "preset": "wardgate-bigquery",
        **preset_fields("wardgate-bigquery"),
        "bigquery_project": bigquery_project,
        "bigquery_endpoint": bigquery_endpoint,
        "default_dataset": dataset,
        "column_classes": copy.deepcopy(DEMO_COLUMN_CLASSES),
        "enabled": True,
    }.items():
        setattr(connection, name, value)
    return connection_save(connection=connection, by=None, reason=DEMO_REASON, meta=meta)


@transaction.atomic
def demo_policy_ensure(connection: Connection, *, meta: RequestMeta = SYSTEM) -> PolicyRole:
    """The analyst role, granted to the engineer group on `connection`, through the recorded
    services: the role's rules restored (`portal.role_saved`) and the grant made again when
    there is no live one (`portal.grant_created`), each by whoever ran the demo and bumping
    the security revision; nothing is recorded when nothing changed."""
    from portal.services.grants import grant_create
    from portal.services.policy import role_save

    role = PolicyRole.objects.filter(name="analyst").first() or PolicyRole(name="analyst")
    role.description = "Read-only SQL on the shop tables; PII masked"
    role.rules = copy.deepcopy(DEMO_ANALYST_RULES)
    role = role_save(role=role, by=None, reason=DEMO_REASON, meta=meta)
    engineers, _ = Group.objects.get_or_create(name=Role.ENGINEER.value)
    live = (Grant.objects.filter(role=role, connection=connection, group=engineers,
                                 revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())))
    if not live.exists():
        grant_create(role=role, connection=connection, group=engineers, by=None, meta=meta,
                     reason="demo: engineers may query the demo shop")
    return role


def demo_login_notes() -> list[str]:
    """What the demo banner should say about signing in (MFA for admins and approvers)."""
    roles = ", ".join(portal_config().mfa_required_roles)
    return [
        f"Members of {roles} must enrol a TOTP authenticator (any authenticator app) on "
        "first sign-in; the portal takes them there before anything else.",
        "Engineers request access under 'My access'; approvers decide under 'Approvals'; "
        "the API schema is at /api/schema/ (portal API tokens on the 'Tokens' page).",
    ]
