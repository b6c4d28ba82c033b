"""Nothing unattributed at the gateway: refusals of known but revoked, expired or disabled
credentials name their owner; 405s, bodies that break the parser and data methods sent as
notifications are refused and recorded (never a 500, never relayed)."""

from __future__ import annotations

import httpx
import pytest

from portal.services.events import SYSTEM
from proxy.db import run_db
from tests.proxy.test_gateway_auth import LIST, assert_refused, post

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def last_rejection():  # type: ignore[no-untyped-def]
    from audit.models import AuditRecord

    return AuditRecord.objects.filter(event="mcp.rejected").order_by("-seq").first()


async def test_refusals_of_known_credentials_name_their_owner(gateway, engineer, engineer_token) -> None:  # type: ignore[no-untyped-def]
    from portal.services.accounts import account_disable

    assert (await post(gateway, engineer_token)).status_code == 200
    await run_db(lambda: account_disable(account=engineer, by=None, reason="left the company",
                                         meta=SYSTEM))
    await gateway.refresh()
    await assert_refused(await post(gateway, engineer_token), 401, "auth.revoked_token")
    record = await run_db(last_rejection)
    assert record.actor == "engineer" and record.detail["token_id"]


async def test_a_disabled_oidc_account_is_refused_by_name(gateway, oidc_issuer, demo_policy) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    token = oidc_issuer.token("olga", [])
    await post(gateway, token)  # provisions olga
    await run_db(lambda: get_user_model().objects.filter(username="olga").update(is_active=False))
    await gateway.forget_caches()
    await assert_refused(await post(gateway, token), 401, "auth.account_disabled")
    assert (await run_db(last_rejection)).actor == "olga"


async def test_http_405_is_recorded_with_the_caller(gateway, engineer_token) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient() as http:
        response = await http.put(gateway.url("demo-bigquery"), json=LIST,
                                  headers={**HEADERS, "authorization": f"Bearer {engineer_token}"})
    await assert_refused(response, 405, "request.bad_method")
    assert response.headers["allow"] == "GET, POST, DELETE"
    assert (await run_db(last_rejection)).actor == "engineer"


async def test_a_body_nested_100000_deep_is_a_clear_400_and_recorded(gateway, engineer_token) -> None:  # type: ignore[no-untyped-def]
    body = b"[" * 100_000 + b"]" * 100_000
    async with httpx.AsyncClient() as http:
        response = await http.post(gateway.url("demo-bigquery"), content=body,
                                   headers={**HEADERS, "authorization": f"Bearer {engineer_token}"})
    await assert_refused(response, 400, "request.too_deep")
    assert (await run_db(last_rejection)).actor == "engineer"


async def test_a_data_method_sent_as_a_notification_is_refused(gateway, engineer_token) -> None:  # type: ignore[no-untyped-def]
    from audit.models import AuditRecord

    call = {"jsonrpc": "2.0", "method": "tools/call",
            "params": {"name": "execute_sql", "arguments": {"sql": "SELECT ssn FROM shop.customers"}}}
    async with httpx.AsyncClient() as http:
        response = await http.post(gateway.url("demo-bigquery"), json=call,
                                   headers={**HEADERS, "authorization": f"Bearer {engineer_token}"})
    await assert_refused(response, 400, "request.missing_id")
    record = await run_db(last_rejection)
    assert record.jsonrpc_method == "tools/call" and record.actor == "engineer"
    relayed = await run_db(lambda: AuditRecord.objects.filter(event="mcp.notification").count())
    assert relayed == 0
