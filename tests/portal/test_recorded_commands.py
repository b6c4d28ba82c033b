"""Every state-changing management command records who ran it: the account named by --by,
else the operating-system user (os:<name>), with auth method "cli"."""

from __future__ import annotations

import getpass
import io

import pytest
import yaml
from django.core.management import CommandError, call_command

from audit.models import AuditRecord
from audit.verify import verify_chain
from portal.models import Connection, ToolCatalogEntry
from portal.services.catalog import tool_catalog_observe
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)
OS_USER = f"os:{getpass.getuser()}"


def last(event: str) -> AuditRecord:
    return AuditRecord.objects.filter(event=event).order_by("-seq").first()


@pytest.fixture
def connection() -> Connection:
    return Connection.objects.create(slug="demo-bigquery", name="d",
                                     upstream_url="http://127.0.0.1:9/mcp")


def test_issue_token_records_the_os_user_or_the_named_account(connection) -> None:  # type: ignore[no-untyped-def]
    make_user("dana")
    make_user("root-admin", "admin")
    out = io.StringIO()
    call_command("issue_token", "dana", "--connection", "demo-bigquery", stdout=out,
                 stderr=io.StringIO())
    issued = last("portal.token_issued")
    assert issued is not None, "issue_token left no audit record"
    assert issued.actor == OS_USER and issued.auth_method == "cli"
    assert issued.detail["account"] == "dana" and out.getvalue().strip() not in str(issued.detail)
    call_command("issue_token", "dana", "--connection", "demo-bigquery", "--by", "root-admin",
                 stdout=io.StringIO(), stderr=io.StringIO())
    assert last("portal.token_issued").actor == "root-admin"
    with pytest.raises(CommandError, match="no active account 'ghost'"):
        call_command("issue_token", "dana", "--connection", "demo-bigquery", "--by", "ghost")
    assert verify_chain().ok


def test_tool_catalog_accept_is_recorded(connection) -> None:  # type: ignore[no-untyped-def]
    tool_catalog_observe(connection=connection, tools=[{"name": "lookup", "inputSchema": {}}])
    call_command("tool_catalog", "demo-bigquery", "--accept", stdout=io.StringIO())
    assert ToolCatalogEntry.objects.get().status == ToolCatalogEntry.Status.ACCEPTED
    accepted = last("portal.tool_catalog_accepted")
    assert accepted is not None, "tool_catalog --accept left no audit record"
    assert accepted.actor == OS_USER and accepted.detail["tools"][0]["name"] == "lookup"


def test_policy_apply_without_by_records_the_os_user(connection, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"roles": {"viewer": {"description": "tables only",
                                                         "rules": {"tools": ["list_*"]}}}}))
    call_command("policy_apply", str(path), "--reason", "r", stdout=io.StringIO())
    applied = AuditRecord.objects.filter(event__startswith="portal.policy").order_by("-seq").first()
    assert applied is not None and applied.actor == OS_USER and applied.auth_method == "cli"


def test_the_demo_re_enabling_its_accounts_is_recorded() -> None:
    from audit.actors import command_actor
    from portal.services.accounts import account_disable
    from portal.services.demo import demo_users_ensure
    from portal.services.events import SYSTEM, meta_from_command
    from portal.services.security import security_revision_current

    demo_users_ensure()  # first start: the accounts are created (and that is recorded)
    first = last("portal.demo_accounts_ensured")
    assert first.detail["changes"]["engineer"] == ["created"]
    from django.contrib.auth import get_user_model

    engineer = get_user_model().objects.get(username="engineer")
    account_disable(account=engineer, by=None, reason="left", meta=SYSTEM)
    revision = security_revision_current()
    # The next `manage.py demo` enables the account an admin disabled: never silently.
    demo_users_ensure(meta=meta_from_command(command_actor("", "demo")))
    engineer.refresh_from_db()
    assert engineer.is_active
    again = last("portal.demo_accounts_ensured")
    assert again.actor == OS_USER and again.auth_method == "cli"
    assert again.detail["changes"] == {"engineer": ["enabled"]}
    assert security_revision_current() > revision
    assert verify_chain().ok


def test_the_demo_connection_role_and_grant_it_restores_are_recorded() -> None:
    from django.contrib.auth.models import Group

    from audit.actors import command_actor
    from portal.models import Grant
    from portal.services.demo import demo_connection_ensure, demo_policy_ensure
    from portal.services.events import meta_from_command
    from portal.services.grants import grant_revoke
    from portal.services.security import security_revision_current

    demo_meta = meta_from_command(command_actor("", "demo"))

    def demo_start(mcp_port: int) -> Connection:  # what `manage.py demo` ensures on each start
        connection = demo_connection_ensure(
            upstream_url=f"http://127.0.0.1:{mcp_port}/mcp", bigquery_project="p",
            bigquery_endpoint="http://127.0.0.1:9", dataset="shop", meta=demo_meta)
        demo_policy_ensure(connection, meta=demo_meta)
        return connection

    connection = demo_start(9001)
    saved, role, granted = (last("portal.connection_saved"), last("portal.role_saved"),
                            last("portal.grant_created"))
    assert saved is not None and role is not None and granted is not None, \
        "the demo's connection, role and grant were written without an audit record"
    versions = AuditRecord.objects.filter(event="portal.policy_changed")
    assert versions.count() == 2  # the connection's and the role's
    for record in (saved, role, granted, *versions):
        assert (record.actor, record.auth_method) == (OS_USER, "cli")
    assert saved.detail["created"] and saved.detail["connection"] == "demo-bigquery"
    assert role.detail["role"] == "analyst" and role.detail["created"]
    assert (granted.detail["group"], granted.detail["role"]) == ("engineer", "analyst")

    # An admin loosens the role, revokes the engineers' grant; the demo restarts elsewhere.
    from portal.models import Role as PolicyRole

    PolicyRole.objects.filter(name="analyst").update(rules={"tools": ["*"]})
    grant = Grant.objects.get(connection=connection, group=Group.objects.get(name="engineer"))
    grant_revoke(grant=grant, by=None, reason="audit finding", meta=demo_meta)
    revision, seq = security_revision_current(), last("portal.grant_revoked").seq
    demo_start(9002)
    assert security_revision_current() > revision
    assert last("portal.connection_saved").detail["changed"] == ["upstream_url"]
    assert last("portal.connection_saved").detail["after"] == {
        "upstream_url": "http://127.0.0.1:9002/mcp"}
    assert last("portal.role_saved").detail["before"] == {"tools": ["*"]}
    assert last("portal.grant_created").seq > seq
    assert Grant.objects.filter(connection=connection, revoked_at__isnull=True).count() == 1

    # Nothing changed: nothing recorded, the security revision stays.
    revision, seq = security_revision_current(), AuditRecord.objects.order_by("-seq").first().seq
    demo_start(9002)
    assert security_revision_current() == revision
    assert not AuditRecord.objects.filter(seq__gt=seq).exists()
    assert verify_chain().ok
