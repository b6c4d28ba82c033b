"""Authentication at the gateway: every request needs a valid bearer token, and every refusal
is recorded. OIDC tokens are verified against a real local JWKS endpoint."""

from __future__ import annotations

import datetime as dt

import httpx
import jwt
import pytest
from mcp.client import Client

from portal.config import portal_config
from portal.services.events import SYSTEM
from proxy.db import run_db
from tests.conftest import make_user
from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

# A stateless (2026-07-28) tools/list, as the official client sends it.
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}


async def post(gateway, token: str | None, payload=LIST, slug: str = "demo-bigquery") -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient() as http:
        return await http.post(gateway.url(slug), json=payload, headers=headers)


def rejections() -> list:
    from audit.models import AuditRecord

    return list(AuditRecord.objects.filter(event="mcp.rejected").order_by("seq"))


async def assert_refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["data"]["reason"] == reason
    records = await run_db(rejections)
    assert records[-1].reasons[0]["rule"] == reason
    assert records[-1].request_id == response.json()["error"]["data"]["request_id"]


async def test_missing_malformed_and_forged_tokens_are_refused_and_recorded(gateway, demo_policy) -> None:  # type: ignore[no-untyped-def]
    missing = await post(gateway, None)
    await assert_refused(missing, 401, "auth.missing_token")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    await assert_refused(await post(gateway, "wgp_" + "A" * 43), 401, "auth.unknown_token")
    await assert_refused(await post(gateway, "not-a-token"), 401, "auth.invalid_token")
    async with httpx.AsyncClient() as http:
        basic = await http.post(gateway.url("demo-bigquery"), json=LIST,
                                headers={"authorization": "Basic dXNlcjpwYXNz"})
    await assert_refused(basic, 401, "auth.malformed")


def last_rejection():  # type: ignore[no-untyped-def]
    from audit.models import AuditRecord

    return AuditRecord.objects.filter(event="mcp.rejected").order_by("-seq").first()


async def test_expired_and_revoked_personal_tokens_are_refused(gateway, engineer, demo_connection, demo_policy) -> None:  # type: ignore[no-untyped-def]
    from django.utils import timezone

    from portal.services.events import SYSTEM
    from portal.services.tokens import token_issue, token_revoke

    def issue_two():  # type: ignore[no-untyped-def]
        expired, expired_plain = token_issue(user=engineer, connections=[demo_connection], by=None, meta=SYSTEM)
        expired.expires_at = timezone.now() - dt.timedelta(seconds=1)
        expired.save()
        live, live_plain = token_issue(user=engineer, connections=[demo_connection], by=None, meta=SYSTEM)
        return expired_plain, live, live_plain

    expired_plain, live, live_plain = await run_db(issue_two)
    await assert_refused(await post(gateway, expired_plain), 401, "auth.expired_token")
    # A known token, refused: the refusal is the owner's, not anonymous.
    assert (await run_db(last_rejection)).actor == "engineer"
    assert (await post(gateway, live_plain)).status_code == 200
    await run_db(lambda: token_revoke(token=live, by=None, meta=SYSTEM))
    await gateway.refresh()
    await assert_refused(await post(gateway, live_plain), 401, "auth.revoked_token")
    assert (await run_db(last_rejection)).actor == "engineer"


async def test_disabled_or_quarantined_identity_is_refused_with_a_valid_token(gateway, engineer, engineer_token) -> None:  # type: ignore[no-untyped-def]
    from portal.models import Quarantine
    from portal.services.security import security_revision_bump

    assert (await post(gateway, engineer_token)).status_code == 200

    def quarantine() -> None:
        Quarantine.objects.create(user=engineer, reason="test incident")
        security_revision_bump()

    await run_db(quarantine)
    await gateway.refresh()
    await assert_refused(await post(gateway, engineer_token), 401, "auth.quarantined")

    def disable() -> None:
        Quarantine.objects.update(lifted_at=dt.datetime.now(dt.UTC))
        engineer.is_active = False
        engineer.save()
        security_revision_bump()

    await run_db(disable)
    await gateway.refresh()
    await assert_refused(await post(gateway, engineer_token), 401, "auth.account_disabled")


async def test_token_scope_and_missing_grant_are_forbidden(gateway, engineer_token, demo_connection) -> None:  # type: ignore[no-untyped-def]
    from portal.models import Connection
    from portal.services.tokens import token_issue

    def other_connection_and_outsider():  # type: ignore[no-untyped-def]
        other = Connection.objects.create(slug="other", name="other",
                                          upstream_url="http://127.0.0.1:9/mcp")
        outsider = make_user("outsider", "contractors")
        return other, token_issue(user=outsider, connections=[demo_connection], by=None, meta=SYSTEM)[1]

    other, outsider_token = await run_db(other_connection_and_outsider)
    await assert_refused(await post(gateway, engineer_token, slug="other"), 403,
                         "token.out_of_scope")
    await assert_refused(await post(gateway, outsider_token), 403, "access.no_grant")


async def test_oidc_token_with_groups_claim_works_through_the_official_client(gateway, oidc_issuer, demo_policy, configure) -> None:  # type: ignore[no-untyped-def]
    configure(portal_config, sso_group_map={"idp-engineers": "engineer", "idp-data": "data-team"})
    token = oidc_issuer.token("alice", ["idp-engineers", "idp-data", "unmapped"])
    async with gateway_client(gateway.url("demo-bigquery"), token) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("execute_sql", {"sql": "SELECT email FROM shop.customers LIMIT 1"})
    assert "execute_sql" in names
    assert "***@" in result.structured_content["rows"][0]["email"]

    def alice():  # type: ignore[no-untyped-def]
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.get(username="alice")
        return sorted(user.groups.values_list("name", flat=True)), user.has_usable_password()

    groups, usable_password = await run_db(alice)
    assert groups == ["data-team", "engineer"] and not usable_password  # provisioned on first use
    from audit.models import AuditRecord

    outcome = await run_db(lambda: AuditRecord.objects.filter(event="mcp.outcome").last())
    assert outcome.actor == "alice" and outcome.auth_method == "oidc"


async def test_bad_oidc_tokens_are_refused(gateway, oidc_issuer, demo_policy) -> None:  # type: ignore[no-untyped-def]
    await assert_refused(await post(gateway, oidc_issuer.token("bob", ["engineer"], expires_in=-120)),
                         401, "token.expired")
    await assert_refused(await post(gateway, oidc_issuer.token("bob", ["engineer"], aud="someone-else")),
                         401, "token.bad_audience")
    await assert_refused(await post(gateway, oidc_issuer.token("bob", ["engineer"], iss="https://evil.example")),
                         401, "token.bad_issuer")
    good = oidc_issuer.token("bob", ["engineer"])
    header, payload, signature = good.split(".")
    forged_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b'"bob"', b'"eve"')).decode()
    await assert_refused(await post(gateway, f"{header}.{forged_payload}.{signature}"), 401,
                         "token.bad_signature")
    hmac_token = jwt.encode({"iss": oidc_issuer.issuer, "aud": "wardgate", "sub": "x",
                             "exp": 9999999999}, "secret", algorithm="HS256")
    await assert_refused(await post(gateway, hmac_token), 401, "token.alg_not_allowed")


async def test_direct_upstream_needs_no_gateway_credentials(mcp_server_url) -> None:  # type: ignore[no-untyped-def]
    # The upstream itself is reachable only from the gateway in production; here we only show
    # the gateway does not pass the caller's token on (it is not needed upstream).
    async with Client(mcp_server_url) as client:
        assert (await client.list_tools()).tools
