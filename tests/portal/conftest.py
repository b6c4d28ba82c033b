"""Portal test helpers: accounts per role (with TOTP where the role requires it)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from tests.conftest import make_user

TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def totp_now(secret: str = TOTP_SECRET, offset: int = 0, margin: float = 8.0) -> str:
    """The current code, taken early enough in its 30 s window that the server still accepts
    it when the browser submits it (allauth allows no clock tolerance): near the end of a
    window, wait for the next one."""
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    left = 30 - time.time() % 30
    if left < margin:
        time.sleep(left + 0.05)
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + offset))


def enrol_totp(user: Any, secret: str = TOTP_SECRET) -> None:
    from allauth.mfa.totp.internal.auth import TOTP

    TOTP.activate(user, secret)


def portal_user(username: str, *roles: str, mfa: bool = True, **extra: Any) -> Any:
    user = make_user(username, *roles)
    for key, value in extra.items():
        setattr(user, key, value)
    if extra:
        user.save()
    if mfa and {"admin", "approver"} & set(roles):
        enrol_totp(user)
    return user


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def people(db: Any) -> dict[str, Any]:
    return {
        "admin": portal_user("alice-admin", "admin"),
        "engineer": portal_user("erin-engineer", "engineer"),
        "approver": portal_user("avery-approver", "approver"),
        "auditor": portal_user("aud-auditor", "auditor"),
        "approver2": portal_user("bo-approver", "approver", "engineer"),
    }


@pytest.fixture
def connection(db: Any) -> Any:
    from portal.models import Connection

    return Connection.objects.create(
        slug="demo-bigquery", name="Demo", upstream_url="http://127.0.0.1:9/mcp",
        sql_tools={"execute_sql": "sql"}, bigquery_project="p", default_dataset="shop",
        column_classes={"*.*.customers.email": "email"})


@pytest.fixture
def analyst(db: Any) -> Any:
    from portal.models import Role
    from portal.services.demo import DEMO_ANALYST_RULES

    return Role.objects.create(name="analyst", rules=DEMO_ANALYST_RULES)
