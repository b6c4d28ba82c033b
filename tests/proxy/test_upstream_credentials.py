"""Upstream credentials as the upstream receives them, through the gateway: a Google access
token minted from a service-account key lands in a stdio child's environment (and a refreshed
token gets a fresh child), and static header credentials still reach an HTTP upstream (the
Google remote stand-in, which answers only with a live token in its Authorization header)."""

# ruff: noqa: F811  (the stand-in fixtures are imported from test_google_remote)
from __future__ import annotations

import asyncio
import sys

import httpx
import pytest

from proxy.db import run_db
from proxy.google_auth import GoogleTokenSource
from tests.conftest import DATASET, PROJECT, ROOT
from tests.google_token_endpoint import GoogleTokenEndpoint
from tests.proxy.test_gateway_auth import META
from tests.proxy.test_google_remote import (  # noqa: F401  (fixtures)
    _call,
    _reason,
    remote,
    standin_url,
    token_endpoint,
)
from tests.proxy.test_masking_adversarial import twin_dataset  # noqa: F401  (fixture)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ECHO_SERVER = ROOT / "tests" / "fixtures" / "stdio_echo_server.py"


@pytest.fixture
def echo_with_google_token(engineer):  # type: ignore[no-untyped-def]
    from portal.models import Connection, Grant, Role
    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.demo import DEMO_ANALYST_RULES
    from portal.services.events import SYSTEM
    from portal.services.policy import connection_credentials_set, connection_save
    from portal.services.security import security_revision_bump
    from portal.services.tokens import token_issue

    endpoint = GoogleTokenEndpoint(lifetime=3600).start()
    conn = Connection(slug="echo-google", name="echo", transport="stdio",
                      upstream_command=[sys.executable, str(ECHO_SERVER)],
                      bigquery_project=PROJECT)
    connection_save(connection=conn, by=None, reason="stdio with a Google token")
    connection_credentials_set(connection=conn, by=None, reason="sa", credentials={
        "google": {"service_account": endpoint.service_account(PROJECT)},
        "env": {"STATIC_SETTING": "kept"}})
    role = Role.objects.create(name="echo-env", rules={**DEMO_ANALYST_RULES, "tools": ["env"]})
    Grant.objects.create(role=role, connection=conn, group=engineer.groups.get(), reason="t")
    tool_catalog_refresh(connection=conn)
    tool_catalog_accept(connection=conn, by=None, meta=SYSTEM)
    security_revision_bump()
    _, token = token_issue(user=engineer, connections=[conn], by=None, meta=SYSTEM)
    yield {"token": token, "endpoint": endpoint}
    endpoint.stop()


async def test_stdio_child_gets_the_minted_token_and_a_fresh_one_after_refresh(
    gateway, echo_with_google_token
) -> None:  # type: ignore[no-untyped-def]
    # (The echo server's `env` tool answers with its environment; a real upstream would not.)
    url, token = gateway.url("echo-google"), echo_with_google_token["token"]
    endpoint = echo_with_google_token["endpoint"]

    async def child_env(name: str) -> str:
        result = await _call(url, token, "env", {"name": name})
        assert not result.is_error, _reason(result)
        return result.structured_content["result"]

    endpoint.lifetime = 1  # tokens minted from now on live one second
    first = await child_env("GOOGLE_OAUTH_ACCESS_TOKEN")
    minted = {g.token: g for g in endpoint.issued}
    assert first in minted  # (it may have expired by now: one second is short)
    assert minted[first].scope == "https://www.googleapis.com/auth/bigquery"
    assert await child_env("STATIC_SETTING") == "kept"  # static env credentials still there
    await asyncio.sleep(1.1)
    # Past its refresh point: a new token, and the child started with the old one is not reused.
    later = await child_env("GOOGLE_OAUTH_ACCESS_TOKEN")
    assert later != first and later in {g.token for g in endpoint.issued}


async def test_static_header_credentials_still_reach_an_http_upstream(
    gateway, remote, token_endpoint
) -> None:  # type: ignore[no-untyped-def]
    from portal.models import Connection
    from portal.services.policy import connection_credentials_set

    minted = await GoogleTokenSource({"service_account": remote["sa"]}).token()

    def set_headers(value: str) -> None:
        connection_credentials_set(connection=Connection.objects.get(slug="bq-remote"), by=None,
                                   reason="static header",
                                   credentials={"headers": {"Authorization": value}})

    await run_db(set_headers, f"Bearer {minted}")
    await asyncio.sleep(0.5)
    issued = len(token_endpoint.issued)
    ok = await _call(gateway.url("bq-remote"), remote["token"], "list_table_ids",
                     {"projectId": PROJECT, "datasetId": DATASET})
    assert not ok.is_error, _reason(ok)
    assert len(token_endpoint.issued) == issued  # nothing minted: the static header was sent
    await run_db(set_headers, "Bearer not-a-google-token")
    await asyncio.sleep(0.5)
    # A header Google would not take: the upstream refuses it, so the call fails.
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "list_table_ids", "_meta": META,
        "arguments": {"projectId": PROJECT, "datasetId": DATASET}}}
    async with httpx.AsyncClient() as http:
        refused = await http.post(gateway.url("bq-remote"), json=call, headers={
            "content-type": "application/json", "mcp-protocol-version": "2026-07-28",
            "accept": "application/json, text/event-stream", "mcp-method": "tools/call",
            "mcp-name": "list_table_ids", "authorization": f"Bearer {remote['token']}"})
    assert refused.status_code >= 400 or "error" in refused.json() \
        or refused.json()["result"].get("isError") is True, refused.text
    assert "ya29." not in refused.text  # no token echoed back
    assert len(token_endpoint.issued) == issued
