"""Demo accounts and the demo connection, created idempotently by `manage.py demo`."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from portal.models import Connection
from portal.roles import Role

DEMO_CONNECTION_SLUG = "demo-bigquery"


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
def demo_users_ensure() -> list[DemoLogin]:
    user_model = get_user_model()
    for login in DEMO_LOGINS:
        group, _ = Group.objects.get_or_create(name=login.role.value)
        user, _ = user_model.objects.get_or_create(username=login.username)
        user.is_active = True
        user.is_staff = user.is_superuser = login.role is Role.ADMIN
        user.set_password(login.password)
        user.save()
        user.groups.add(group)
    return DEMO_LOGINS


@transaction.atomic
def demo_connection_ensure(
    *, upstream_url: str, bigquery_project: str, bigquery_endpoint: str, dataset: str
) -> Connection:
    conn, _ = Connection.objects.update_or_create(
        slug=DEMO_CONNECTION_SLUG,
        defaults={
            "name": "Demo BigQuery (emulator)",
            "transport": Connection.Transport.HTTP,
            "upstream_url": upstream_url,
            "sql_tools": {"execute_sql": "sql", "dry_run_sql": "sql"},
            "bigquery_project": bigquery_project,
            "bigquery_endpoint": bigquery_endpoint,
            "default_dataset": dataset,
            "enabled": True,
        },
    )
    return conn
