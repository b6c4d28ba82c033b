"""Who an OIDC token is: keyed by issuer + subject, never a local account picked by a name in the
token; groups only through the configured group map; every group change recorded. Real tokens
from a local JWKS, the real gateway on uvicorn."""

from __future__ import annotations

import httpx
import pytest

from proxy.db import run_db
from tests.conftest import make_user
from tests.proxy.test_gateway_auth import LIST, assert_refused, post

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def groups_of(username: str) -> list[str]:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username=username)
    return sorted(user.groups.values_list("name", flat=True))


def last_record(event: str):  # type: ignore[no-untyped-def]
    from audit.models import AuditRecord

    return AuditRecord.objects.filter(event=event).order_by("-seq").first()


async def test_a_token_naming_a_local_account_neither_strips_nor_becomes_it(
        gateway, oidc_issuer, demo_policy) -> None:  # type: ignore[no-untyped-def]
    await run_db(lambda: (make_user("admin", "admin"), make_user("engineer", "engineer")))
    # preferred_username: admin with no groups used to strip the local admin's role.
    stripped = await post(gateway, oidc_issuer.token("admin", [], sub="idp-1"))
    await assert_refused(stripped, 403, "access.no_grant")
    assert await run_db(groups_of, "admin") == ["admin"]
    record = await run_db(last_record, "mcp.rejected")
    assert record.actor != "admin" and record.actor.startswith("admin@")
    # preferred_username: engineer used to run (and be audited) as the local engineer.
    taken = await post(gateway, oidc_issuer.token("engineer", [], sub="idp-2"))
    await assert_refused(taken, 403, "access.no_grant")
    assert (await run_db(last_record, "mcp.rejected")).actor.startswith("engineer@")
    assert await run_db(groups_of, "engineer") == ["engineer"]


async def test_raw_group_claims_grant_nothing_and_mapped_ones_are_recorded(
        gateway, oidc_issuer, demo_policy, configure) -> None:  # type: ignore[no-untyped-def]
    from portal.config import portal_config
    from portal.services.security import security_revision_current

    # groups: [admin, approver] used to make a new portal admin.
    await assert_refused(await post(gateway, oidc_issuer.token("mallory", ["admin", "approver",
                                                                          "engineer"])),
                         403, "access.no_grant")
    assert await run_db(groups_of, "mallory") == []
    provisioned = await run_db(last_record, "portal.account_provisioned")
    assert provisioned.detail["unmapped_claim_values"] == ["admin", "approver", "engineer"]

    configure(portal_config, sso_group_map={"idp-data-eng": "engineer"})
    revision = await run_db(security_revision_current)
    ok = await post(gateway, oidc_issuer.token("carol", ["idp-data-eng"]))
    assert ok.status_code == 200, ok.text
    assert await run_db(groups_of, "carol") == ["engineer"]
    assert await run_db(security_revision_current) > revision
    # The same subject under another name is the same account; losing the IdP group is
    # recorded and bumps the revision.
    revision = await run_db(security_revision_current)
    await assert_refused(await post(gateway, oidc_issuer.token("carol-renamed", [], sub="sub-carol")),
                         403, "access.no_grant")
    assert await run_db(groups_of, "carol") == []
    changed = await run_db(last_record, "portal.account_groups_changed")
    assert changed.detail["removed"] == ["engineer"] and changed.detail["account"] == "carol"
    assert await run_db(security_revision_current) > revision


async def test_two_authorization_headers_are_refused_and_recorded(
        gateway, engineer_token, oidc_issuer) -> None:  # type: ignore[no-untyped-def]
    headers = [("content-type", "application/json"),
               ("accept", "application/json, text/event-stream"),
               ("authorization", f"Bearer {oidc_issuer.token('someone', [])}"),
               ("authorization", f"Bearer {engineer_token}")]
    async with httpx.AsyncClient() as http:
        response = await http.post(gateway.url("demo-bigquery"), json=LIST,
                                   headers=httpx.Headers(headers))
    await assert_refused(response, 400, "request.repeated_header")
