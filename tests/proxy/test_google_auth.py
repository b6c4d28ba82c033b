"""Google access tokens (proxy.google_auth): service-account keys and ADC through google-auth
against a loopback token endpoint; bad configurations refused; minting failures fail closed."""

from __future__ import annotations

import asyncio
import json

import pytest

from proxy.google_auth import GoogleTokenError, GoogleTokenSource, google_auth_config
from tests.google_token_endpoint import GoogleTokenEndpoint

pytestmark = pytest.mark.asyncio


@pytest.fixture
def endpoint():  # type: ignore[no-untyped-def]
    running = GoogleTokenEndpoint(lifetime=2).start()
    yield running
    running.stop()


async def test_service_account_token_is_reused_then_refreshed_before_expiry(endpoint) -> None:  # type: ignore[no-untyped-def]
    source = GoogleTokenSource({"service_account": endpoint.service_account()})
    first = await source.token()
    assert endpoint.valid(first) and await source.token() == first  # cached
    await asyncio.sleep(1.6)  # three quarters of its 2 s life have passed: refreshed
    second = await source.token()
    assert second != first and endpoint.valid(second) and source.refreshes == 2


async def test_application_default_credentials(endpoint, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "adc.json"
    key.write_text(json.dumps(endpoint.service_account()))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    token = await GoogleTokenSource(google_auth_config(
        {"google": {"application_default": True}}) or {}).token()
    assert endpoint.valid(token)


async def test_minting_failure_fails_closed_without_secrets(endpoint, caplog) -> None:  # type: ignore[no-untyped-def]
    sa = endpoint.service_account()
    endpoint.fail = True
    with pytest.raises(GoogleTokenError) as caught:
        await GoogleTokenSource({"service_account": sa}).token()
    assert "could not mint" in caught.value.message
    assert "endpoint told to fail" not in caught.value.message + caplog.text
    assert sa["private_key"][40:80] not in caught.value.message + caplog.text


@pytest.mark.parametrize(("google", "message"), [
    ("x", "must be an object"),
    ({}, "exactly one"),
    ({"service_account": {"type": "authorized_user"}}, "not a service-account key"),
    ({"application_default": True, "service_account": {"type": "service_account"}},
     "exactly one"),
    ({"service_account": {"type": "service_account", "client_email": "a", "private_key": "k",
                          "token_uri": "http://token.example/"}}, "HTTPS"),
    ({"application_default": True, "scopes": "bigquery"}, "scopes"),
])
async def test_bad_configurations_are_refused(google, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GoogleTokenError, match=message):
        google_auth_config({"google": google})
    assert google_auth_config({"headers": {}}) is None
