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


def test_picking_a_preset_fills_in_the_tool_fields_and_they_stay_editable(people) -> None:
    from proxy.presets import PRESETS

    client = client_for(people["admin"])
    response = client.post("/connections/new/", {
        "slug": "google-bq", "name": "Google", "transport": "http",
        "upstream_url": "https://bigquery.googleapis.com/mcp", "preset": "bigquery-remote",
        "sql_tools": "", "metadata_tools": "", "job_tools": "", "upstream_command": "[]",
        "column_classes": "{}", "bigquery_project": "p", "reason": "add Google's server"})
    assert response.status_code == 302, response.content[-2000:]
    conn = Connection.objects.get(slug="google-bq")
    remote = PRESETS["bigquery-remote"]
    assert conn.sql_tools == remote["sql_tools"]
    assert conn.sql_tools["execute_sql_readonly"]["statement_classes"] == ["select"]
    assert conn.job_tools == remote["job_tools"] and conn.project_argument == "projectId"
    # The admin edits a field; saving again keeps the edit.
    edited = {"execute_sql_readonly": {"argument": "query", "statement_classes": ["select"]}}
    response = client.post("/connections/google-bq/", {
        "slug": "google-bq", "name": "Google", "transport": "http",
        "upstream_url": "https://bigquery.googleapis.com/mcp", "preset": "bigquery-remote",
        "sql_tools": json.dumps(edited), "metadata_tools": json.dumps(conn.metadata_tools),
        "job_tools": json.dumps(conn.job_tools), "project_argument": "projectId",
        "upstream_command": "[]", "column_classes": "{}", "bigquery_project": "p",
        "reason": "no execute_sql"})
    assert response.status_code == 302, response.content[-2000:]
    conn.refresh_from_db()
    assert conn.sql_tools == edited
    # A malformed per-tool entry is refused with a clear error.
    bad = client.post("/connections/google-bq/", {
        "slug": "google-bq", "name": "Google", "transport": "http",
        "upstream_url": "https://bigquery.googleapis.com/mcp", "preset": "bigquery-remote",
        "sql_tools": '{"x": {"argument": "q", "statement_classes": "select"}}',
        "job_tools": '{"get_job": {"job": "jobId", "kind": "peek"}}', "upstream_command": "[]",
        "column_classes": "{}", "reason": "typo"})
    assert bad.status_code == 200 and b"statement_classes" in bad.content


def test_policy_yaml_preset_fills_in_what_the_file_leaves_out(people) -> None:
    policy_apply(data={"connections": {"toolbox": {
        "transport": "stdio", "upstream_command": ["toolbox", "--prebuilt", "bigquery",
                                                   "--stdio"],
        "preset": "toolbox", "bigquery_project": "p"}}}, by=None, reason="toolbox")
    conn = Connection.objects.get(slug="toolbox")
    assert conn.sql_tools == {"execute_sql": "sql"} and conn.project_argument == "project"
    policy_apply(data={"connections": {"bq-google": {"preset": "bigquery-remote",
                                                     "bigquery_project": "p"}}},
                 by=None, reason="Google's server")
    google = Connection.objects.get(slug="bq-google")
    assert google.upstream_url == "https://bigquery.googleapis.com/mcp"
    assert "get_query_results" in google.job_tools
    assert policy_export()["connections"]["toolbox"]["preset"] == "toolbox"
    with pytest.raises(PolicyError, match="preset"):
        policy_apply(data={"connections": {"x": {"upstream_url": "https://e/mcp",
                                                 "preset": "nope"}}}, by=None, reason="r")


def test_google_credentials_are_checked_and_stay_write_only(people, connection) -> None:
    client = client_for(people["admin"])
    bad = client.post(f"/connections/{connection.slug}/credentials/", {
        "credentials": json.dumps({"google": {"service_account": {"type": "authorized_user"}}}),
        "reason": "oops"})
    assert bad.status_code == 302
    assert b"not a service-account key" in client.get(bad.url).content
    insecure = {"type": "service_account", "client_email": "a@b", "private_key": "k",
                "token_uri": "http://evil.example/token"}
    bad = client.post(f"/connections/{connection.slug}/credentials/", {
        "credentials": json.dumps({"google": {"service_account": insecure}}), "reason": "x"})
    assert b"HTTPS" in client.get(bad.url).content
    assert connection.credentials_for_upstream() == {}
    good = client.post(f"/connections/{connection.slug}/credentials/", {
        "credentials": json.dumps({"google": {"application_default": True}}), "reason": "adc"})
    assert good.status_code == 302
    connection.refresh_from_db()
    assert connection.credentials_for_upstream() == {"google": {"application_default": True}}
