"""Connections, roles, credentials (write-only), policy versions, YAML export/apply."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from django.core.management import call_command

from audit.models import AuditRecord
from audit.verify import verify_chain
from portal.models import Connection, Grant, PolicyVersion, Role
from portal.services.policy import PolicyError, policy_apply, policy_export
from tests.portal.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_credentials_are_write_only(people, connection) -> None:
    client = client_for(people["admin"])
    secret = "Bearer super-secret-upstream-token"
    client.post(f"/connections/{connection.slug}/credentials/",
                {"credentials": json.dumps({"headers": {"Authorization": secret}}),
                 "reason": "rotate"})
    connection.refresh_from_db()
    assert connection.credentials_for_upstream() == {"headers": {"Authorization": secret}}
    page = client.get(f"/connections/{connection.slug}/")
    assert secret.encode() not in page.content and b"credentials are set" in page.content
    record = AuditRecord.objects.get(event="portal.connection_credentials_set")
    assert record.detail["keys"] == ["headers"] and secret not in str(record.detail)
    assert "super-secret" not in yaml.safe_dump(policy_export())


def test_role_rules_are_validated_and_versioned(people, analyst) -> None:
    client = client_for(people["admin"])
    bad = client.post(f"/roles/{analyst.pk}/", {"name": "analyst", "description": "",
                                                "rules": '{"tools": "execute_sql"}',
                                                "reason": "typo"})
    assert bad.status_code == 200 and b"must be a list" in bad.content
    assert not PolicyVersion.objects.exists()
    good = client.post(f"/roles/{analyst.pk}/", {"name": "analyst", "description": "narrower",
                                                 "rules": '{"tools": ["execute_sql"]}',
                                                 "reason": "least privilege"})
    assert good.status_code == 302
    analyst.refresh_from_db()
    assert analyst.rules == {"tools": ["execute_sql"]}
    version = PolicyVersion.objects.get()
    assert "least privilege" in version.reason and version.created_by == people["admin"]
    assert version.snapshot["roles"]["analyst"]["rules"] == {"tools": ["execute_sql"]}
    saved = AuditRecord.objects.get(event="portal.role_saved")
    assert saved.detail["after"] == {"tools": ["execute_sql"]}


def test_connection_form_validation(people) -> None:
    client = client_for(people["admin"])
    response = client.post("/connections/new/", {
        "slug": "new-conn", "name": "n", "transport": "http", "upstream_url": "",
        "sql_tools": "{}", "column_classes": '{"email": "email"}', "upstream_command": "[]",
        "reason": "add"})
    assert response.status_code == 200
    assert b"needs an upstream URL" in response.content or b"column_classes" in response.content
    assert not Connection.objects.filter(slug="new-conn").exists()


def test_policy_export_apply_roundtrip(people, connection, analyst, tmp_path) -> None:
    from django.contrib.auth.models import Group

    Grant.objects.create(role=analyst, connection=connection,
                         group=Group.objects.get(name="engineer"), reason="base")
    out = io.StringIO()
    call_command("policy_export", stdout=out)
    data = yaml.safe_load(out.getvalue())
    assert set(data) == {"version", "roles", "connections", "grants"}
    assert "credentials" not in str(data["connections"])
    assert data["grants"] == [{"group": "engineer", "role": "analyst",
                               "connection": "demo-bigquery", "reason": "base"}]
    data["roles"]["viewer"] = {"description": "tables only", "rules": {"tools": ["list_*"]}}
    data["grants"] = [{"group": "auditor", "role": "viewer", "connection": "demo-bigquery"}]
    data["connections"]["demo-bigquery"]["column_classes"]["*.*.customers.ssn"] = "ssn"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))

    dry = io.StringIO()
    call_command("policy_apply", str(path), "--dry-run", stdout=dry)
    assert "+ role viewer" in dry.getvalue()
    assert "~ connection demo-bigquery (column_classes)" in dry.getvalue()
    assert "+ grant group auditor -> viewer on demo-bigquery" in dry.getvalue()
    assert "- grant group engineer -> analyst on demo-bigquery" in dry.getvalue()
    assert not Role.objects.filter(name="viewer").exists()

    call_command("policy_apply", str(path), "--reason", "quarterly review",
                 "--by", people["admin"].username, stdout=io.StringIO())
    assert Role.objects.filter(name="viewer").exists()
    live = Grant.objects.filter(revoked_at__isnull=True)
    assert [(g.group.name, g.role.name) for g in live] == [("auditor", "viewer")]
    connection.refresh_from_db()
    assert connection.column_classes["*.*.customers.ssn"] == "ssn"
    assert PolicyVersion.objects.count() == 1
    again = io.StringIO()
    call_command("policy_apply", str(path), stdout=again)
    assert "No changes." in again.getvalue()
    assert verify_chain().ok


def test_policy_apply_refuses_bad_files(people) -> None:
    with pytest.raises(PolicyError, match="credentials"):
        policy_apply(data={"connections": {"x": {"credentials": {"a": 1}}}}, by=None,
                     reason="r")
    with pytest.raises(PolicyError, match="unknown role"):
        policy_apply(data={"grants": [{"group": "g", "role": "nope", "connection": "c"}]},
                     by=None, reason="r")
    with pytest.raises(PolicyError, match="tools"):
        policy_apply(data={"roles": {"r": {"rules": {"tools": "x"}}}}, by=None, reason="r")
