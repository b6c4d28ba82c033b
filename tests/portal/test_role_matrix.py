"""Role checks for every portal view and API endpoint: each URL name, each method, each role.

A URL added without an entry here fails `test_every_url_is_covered`, so nobody can add a view
without saying who may use it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.urls import get_resolver, reverse
from django.utils import timezone

from tests.portal.conftest import client_for, portal_user

pytestmark = pytest.mark.django_db

ADMIN, ENGINEER, APPROVER, AUDITOR = "admin", "engineer", "approver", "auditor"
EVERYONE = frozenset({ADMIN, ENGINEER, APPROVER, AUDITOR})
NOBODY: frozenset[str] = frozenset()
PUBLIC = "public"  # reachable signed out

# (url name, method, kwargs key, roles allowed)
MATRIX: list[tuple[str, str, str, frozenset[str] | str]] = [
    ("home", "get", "", EVERYONE),
    ("healthz", "get", "", PUBLIC),
    ("requests", "get", "", {ENGINEER}),
    ("requests", "post", "", {ENGINEER}),
    ("requests_fragment", "get", "", {ENGINEER}),
    ("request_cancel", "post", "access_request", {ENGINEER}),
    ("tokens", "get", "", EVERYONE),
    ("tokens", "post", "", EVERYONE),
    ("token_revoke", "post", "token", EVERYONE),
    ("api_token_revoke", "post", "api_token", EVERYONE),
    ("approvals", "get", "", {APPROVER}),
    ("approvals_fragment", "get", "", {APPROVER}),
    ("access_request_decide", "post", "access_request", {APPROVER}),
    ("query_approval", "get", "query_approval", {APPROVER}),
    ("query_approval_decide", "post", "query_approval", {APPROVER}),
    ("accounts", "get", "", {ADMIN}),
    ("account_new", "get", "", {ADMIN}),
    ("account_new", "post", "", {ADMIN}),
    ("account_detail", "get", "account", {ADMIN}),
    ("account_disable", "post", "account", {ADMIN}),
    ("account_enable", "post", "account", {ADMIN}),
    ("account_roles", "post", "account", {ADMIN}),
    ("grants", "get", "", {ADMIN}),
    ("grants", "post", "", {ADMIN}),
    ("grant_revoke", "post", "grant", {ADMIN}),
    ("incidents", "get", "", {ADMIN, AUDITOR}),
    ("incidents", "post", "", {ADMIN}),
    ("incident_lift", "post", "incident", {ADMIN}),
    ("quarantine_lift", "post", "quarantine", {ADMIN}),
    ("session_kill", "post", "session", {ADMIN}),
    ("connections", "get", "", {ADMIN}),
    ("connection_new", "get", "", {ADMIN}),
    ("connection_new", "post", "", {ADMIN}),
    ("connection_edit", "get", "slug", {ADMIN}),
    ("connection_edit", "post", "slug", {ADMIN}),
    ("connection_credentials", "post", "slug", {ADMIN}),
    ("connection_catalog_accept", "post", "slug", {ADMIN}),
    ("roles", "get", "", {ADMIN}),
    ("role_new", "get", "", {ADMIN}),
    ("role_new", "post", "", {ADMIN}),
    ("role_edit", "get", "role", {ADMIN}),
    ("role_edit", "post", "role", {ADMIN}),
    ("policy_try", "get", "", {ADMIN}),
    ("policy_try", "post", "", {ADMIN}),
    ("policy_export", "get", "", {ADMIN, AUDITOR}),
    ("audit", "get", "", {ADMIN, AUDITOR}),
    ("audit_export", "get", "", {ADMIN, AUDITOR}),
    ("audit_record", "get", "seq", {ADMIN, AUDITOR}),
    ("evidence", "get", "", {ADMIN, AUDITOR}),
    ("evidence", "post", "", {ADMIN, AUDITOR}),
    ("evidence_history", "get", "", {ADMIN, AUDITOR}),
    ("evidence_public_key", "get", "", {ADMIN, AUDITOR}),
    ("evidence_detail", "get", "pack", {ADMIN, AUDITOR}),
    ("evidence_download", "get", "pack", {ADMIN, AUDITOR}),
    # API
    ("api-root", "get", "", EVERYONE),
    ("api_schema", "get", "", EVERYONE),
    ("access-request-list", "get", "", {ENGINEER}),
    ("access-request-list", "post", "", {ENGINEER}),
    ("access-request-detail", "get", "access_request", {ENGINEER}),
    ("access-request-cancel", "post", "access_request", {ENGINEER}),
    ("access-request-queue", "get", "", {APPROVER}),
    ("access-request-decide", "post", "access_request", {APPROVER}),
    ("query-approval-list", "get", "", {APPROVER}),
    ("query-approval-decide", "post", "query_approval", {APPROVER}),
    ("grant-list", "get", "", {ADMIN, AUDITOR}),
    ("grant-list", "post", "", {ADMIN}),
    ("grant-detail", "get", "grant", {ADMIN, AUDITOR}),
    ("grant-revoke", "post", "grant", {ADMIN}),
    ("account-list", "get", "", {ADMIN, AUDITOR}),
    ("account-list", "post", "", {ADMIN}),
    ("account-detail", "get", "account", {ADMIN, AUDITOR}),
    ("account-disable", "post", "account", {ADMIN}),
    ("account-enable", "post", "account", {ADMIN}),
    ("incident-list", "get", "", {ADMIN, AUDITOR}),
    ("incident-detail", "get", "incident", {ADMIN, AUDITOR}),
    ("incident-lift", "post", "incident", {ADMIN}),
    ("quarantine-list", "get", "", {ADMIN, AUDITOR}),
    ("quarantine-list", "post", "", {ADMIN}),
    ("quarantine-detail", "get", "quarantine", {ADMIN, AUDITOR}),
    ("quarantine-lift", "post", "quarantine", {ADMIN}),
    ("audit-list", "get", "", {ADMIN, AUDITOR}),
    ("evidence-pack-list", "get", "", {ADMIN, AUDITOR}),
    ("evidence-pack-list", "post", "", {ADMIN, AUDITOR}),
    ("evidence-pack-progress", "get", "pack", {ADMIN, AUDITOR}),
    ("evidence-pack-download", "get", "pack", {ADMIN, AUDITOR}),
    ("evidence-pack-public-key", "get", "", {ADMIN, AUDITOR}),
]

ROLES = [ADMIN, ENGINEER, APPROVER, AUDITOR, "anonymous"]


def _world() -> dict[str, Any]:
    """One of everything the URLs point at, owned by someone other than the test users."""
    from audit.services import AuditEntry
    from audit.writer import write_sync
    from portal.models import (
        AccessRequest,
        ApiToken,
        Connection,
        GatewaySession,
        Grant,
        Incident,
        PersonalToken,
        Quarantine,
        QueryApproval,
        Role,
    )
    from reports.models import EvidencePack

    owner = portal_user("owen-owner", ENGINEER)
    target = portal_user("tess-target", ENGINEER)
    conn = Connection.objects.create(slug="c1", name="c1", upstream_url="http://127.0.0.1:9/mcp")
    role = Role.objects.create(name="r1", rules={"tools": ["*"]})
    later = timezone.now() + dt.timedelta(days=1)
    req = AccessRequest.objects.create(requester=owner, connection=conn, role=role,
                                       duration_hours=2, justification="need it for a report")
    qa = QueryApproval.objects.create(requester=owner, connection=conn, tool="execute_sql",
                                      arguments_sha256="0" * 64, policy_version=0, rule="r",
                                      reason="big", approver_groups=[APPROVER],
                                      expires_at=later)
    grant = Grant.objects.create(role=role, connection=conn, user=target, reason="x")
    q = Quarantine.objects.create(user=target, reason="x")
    incident = Incident.objects.create(user=target, rule="denied_calls", observed=30,
                                       threshold=20, window_minutes=10, quarantine=q)
    session = GatewaySession.objects.create(session_key="s" * 32, user=target, connection=conn,
                                            auth_method="personal_token", process="h:1")
    token = PersonalToken.objects.create(user=owner, name="t", prefix="wgp_x",
                                         token_hash="1" * 64, expires_at=later)
    api_token = ApiToken.objects.create(user=owner, name="t", prefix="wga_x",
                                        token_hash="2" * 64, expires_at=later)
    record = write_sync(AuditEntry(event="test.seed", actor="owen-owner", decision="info"))
    pack = EvidencePack.objects.create(period_start=timezone.now() - dt.timedelta(days=2),
                                       period_end=timezone.now() - dt.timedelta(days=1),
                                       created_by=owner)
    return {"access_request": {"pk": req.pk}, "query_approval": {"pk": qa.pk},
            "grant": {"pk": grant.pk}, "quarantine": {"pk": q.pk},
            "incident": {"pk": incident.pk}, "session": {"pk": session.pk},
            "token": {"pk": token.pk}, "api_token": {"pk": api_token.pk},
            "account": {"pk": target.pk}, "slug": {"slug": conn.slug},
            "role": {"pk": role.pk}, "seq": {"seq": record.seq}, "pack": {"pk": pack.pk},
            "": {}}


def _id(case: tuple[str, str, str, Any]) -> str:
    return f"{case[0]}-{case[1]}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", MATRIX, ids=[_id(c) for c in MATRIX])
def test_role_check(case: tuple[str, str, str, Any], role: str) -> None:
    name, method, key, allowed = case
    world = _world()
    url = reverse(f"portal:{name}", kwargs=world[key])
    if role == "anonymous":
        from django.test import Client

        client = Client()
    else:
        client = client_for(portal_user(f"u-{role}", role))
    api = url.startswith("/api/")
    response = getattr(client, method)(url, **({"content_type": "application/json", "data": {}}
                                                if api and method == "post" else {}))
    if allowed == PUBLIC:
        assert response.status_code == 200
        return
    if role == "anonymous":
        if api:
            assert response.status_code in (401, 403), (url, response.status_code)
        else:
            assert response.status_code == 302 and "/accounts/login/" in response["Location"]
        return
    denied = response.status_code in (401, 403)
    if role in allowed:
        assert not denied, f"{role} should reach {method.upper()} {url}: {response.status_code}"
    else:
        assert denied, f"{role} must not reach {method.upper()} {url}: {response.status_code}"


def test_every_url_is_covered() -> None:
    names = set()

    def walk(patterns: Any, ns: str = "") -> None:
        for p in patterns:
            if hasattr(p, "url_patterns"):
                walk(p.url_patterns, p.namespace or ns)
            elif ns == "portal" and p.name:
                names.add(p.name)

    walk(get_resolver().url_patterns)
    covered = {name for name, *_ in MATRIX}
    assert names - covered == set(), f"URLs without a role check: {sorted(names - covered)}"
