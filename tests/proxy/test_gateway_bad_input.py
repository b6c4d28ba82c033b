"""Bad input gets a clear error, is recorded, and nothing reaches the upstream."""

from __future__ import annotations

import json

import httpx
import pytest

from bigquery_mcp.emulator import free_port
from proxy.db import run_db
from tests.conftest import RunningGateway

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


class CountingUpstream:
    """An upstream that answers every JSON-RPC request with an empty result, and counts."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append(body)
        try:
            id_ = json.loads(body).get("id")
        except ValueError:
            id_ = None
        out = json.dumps({"jsonrpc": "2.0", "id": id_, "result": {"tools": []}}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out})


@pytest.fixture
async def counted(gateway, engineer_token, demo_policy, demo_connection):  # type: ignore[no-untyped-def]
    """A connection whose upstream counts what reaches it; engineers hold the analyst role."""
    from portal.models import Grant

    upstream = CountingUpstream()
    server = RunningGateway(upstream, free_port()).start()

    def point_at_counter() -> None:
        demo_connection.upstream_url = f"{server.base_url}/mcp"
        demo_connection.save()
        assert Grant.objects.filter(connection=demo_connection).exists()

    await run_db(point_at_counter)
    await gateway.forget_caches()
    yield upstream
    server.stop()


async def send_raw(gateway, token, body: bytes, **headers: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    base = {"authorization": f"Bearer {token}", "content-type": "application/json",
            "accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient() as http:
        return await http.post(gateway.url("demo-bigquery"), content=body,
                               headers={**base, **headers})


def records(event: str) -> list:
    from audit.models import AuditRecord

    return list(AuditRecord.objects.filter(event=event).order_by("seq"))


@pytest.mark.parametrize("body, status, reason", [
    (b"{not json", 400, "request.malformed_json"),
    (b"\xff\xfe\x00garbage", 400, "request.malformed_json"),
    (b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]', 400, "request.batch"),
    (b'{"jsonrpc":"1.0","id":1,"method":"tools/list"}', 400, "request.not_jsonrpc"),
    (b'{"jsonrpc":"2.0","id":{"x":1},"method":"tools/list"}', 400, "request.bad_id"),
    (b'{"jsonrpc":"2.0","id":true,"method":"tools/list"}', 400, "request.bad_id"),
    (b'{"jsonrpc":"2.0","id":1,"method":42}', 400, "request.bad_method"),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,2]}', 400, "request.bad_params"),
    (b'{"jsonrpc":"2.0","id":1}', 400, "request.not_jsonrpc"),
    (b'"just a string"', 400, "request.not_jsonrpc"),
    # Keys that repeat or differ only in case: the gateway would police one reading and an
    # upstream (Go's encoding/json matches fields ignoring case; some parsers keep the first
    # of two equal keys) act on another.
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call",'
     b'"params":{"name":"execute_sql","arguments":{"sql":"DELETE FROM shop.orders WHERE TRUE"}}}',
     400, "request.ambiguous_keys"),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list"}', 400,
     "request.ambiguous_keys"),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute_sql",'
     b'"arguments":{"sql":"SELECT 1 AS a","SQL":"DELETE FROM shop.orders WHERE TRUE"}}}', 400,
     "request.ambiguous_keys"),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_table_ids",'
     b'"NAME":"execute_sql","arguments":{}}}', 400, "request.ambiguous_keys"),
])
async def test_malformed_messages_are_refused_recorded_and_not_forwarded(  # type: ignore[no-untyped-def]
        gateway, engineer_token, counted, body, status, reason) -> None:
    response = await send_raw(gateway, engineer_token, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["data"]["reason"] == reason and error["message"]
    rejected = await run_db(records, "mcp.rejected")
    assert rejected[-1].reasons[0]["rule"] == reason and rejected[-1].actor == "engineer"
    assert counted.requests == []


async def test_oversized_body_is_refused(gateway, engineer_token, counted) -> None:  # type: ignore[no-untyped-def]
    from proxy.config import gateway_config

    limit = gateway_config().max_body_bytes  # the served gateway reads the same environment
    sql = "SELECT '" + "x" * (limit + 10) + "'"
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "execute_sql", "arguments": {"sql": sql}}}).encode()
    response = await send_raw(gateway, engineer_token, body)
    assert response.status_code == 413
    assert response.json()["error"]["data"]["reason"] == "request.too_large"
    assert (await run_db(records, "mcp.rejected"))[-1].reasons[0]["rule"] == "request.too_large"
    assert counted.requests == []


async def test_routing_header_that_disagrees_with_the_body_is_refused(gateway, engineer_token, counted) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "execute_sql", "arguments": {"sql": "DELETE FROM x"}}})
    response = await send_raw(gateway, engineer_token, body.encode(), **{"mcp-method": "tools/list"})
    assert response.status_code == 400
    assert response.json()["error"]["data"]["reason"] == "request.header_mismatch"
    assert counted.requests == []


MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientCapabilities": {}}
MODERN_HEADERS = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call",
                  "mcp-name": "list_datasets"}


@pytest.mark.parametrize("left_out, changed, reason", [
    ("mcp-method", {}, "request.header_missing"),
    ("mcp-name", {}, "request.header_missing"),
    ("mcp-protocol-version", {}, "request.header_mismatch"),
    ("", {"mcp-protocol-version": "2025-11-25"}, "request.header_mismatch"),
    ("", {"mcp-name": "execute_sql"}, "request.header_mismatch"),
])
async def test_a_2026_07_28_request_without_its_routing_headers_is_refused(  # type: ignore[no-untyped-def]
        gateway, engineer_token, counted, left_out, changed, reason) -> None:
    """The specification makes a server refuse such a request (-32020); a header-routing
    upstream behind the gateway would otherwise route by something the gateway never saw."""
    body = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                       "params": {"name": "list_datasets", "arguments": {},
                                  "_meta": MODERN_META}}).encode()
    complete = await send_raw(gateway, engineer_token, body, **MODERN_HEADERS)
    assert complete.status_code == 200 and "result" in complete.json()  # the control: it works
    assert len(counted.requests) == 1
    headers = {k: v for k, v in {**MODERN_HEADERS, **changed}.items() if k != left_out}
    response = await send_raw(gateway, engineer_token, body, **headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32020 and error["data"]["reason"] == reason
    rejected = await run_db(records, "mcp.rejected")
    assert rejected[-1].reasons[0]["rule"] == reason and rejected[-1].actor == "engineer"
    assert len(counted.requests) == 1  # the refused one never reached the upstream


async def test_an_older_client_needs_no_routing_headers(gateway, engineer_token, counted) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                       "params": {"name": "list_datasets", "arguments": {}}}).encode()
    response = await send_raw(gateway, engineer_token, body)
    assert response.status_code == 200 and "result" in response.json()
    assert len(counted.requests) == 1


@pytest.mark.parametrize("sql", [
    "SELECT email FROM shop.customers\x00; DELETE FROM shop.customers WHERE TRUE",
    "SELECT 1 AS a\uff1b DELETE FROM shop.orders WHERE TRUE",
    "DEL\u200bETE FROM shop.orders WHERE TRUE",
    "\ufeffDELETE FROM shop.orders WHERE TRUE",
    "SELECT 1 AS a -- harmless\n; DROP TABLE shop.orders",
    "SELECT 1 AS a # comment\n; DROP TABLE shop.orders",
    "/*! SELECT 1 */ DELETE FROM shop.orders WHERE TRUE",
    "SELECT email FROM `shop.customers`; EXECUTE IMMEDIATE 'DROP TABLE shop.orders'",
    "",
    42,
])
async def test_sql_tricks_are_denied_before_the_upstream(gateway, engineer_token, counted, sql) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                       "params": {"name": "execute_sql", "arguments": {"sql": sql}}})
    response = await send_raw(gateway, engineer_token, body.encode())
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["isError"] is True and result["content"][0]["text"].startswith("Wardgate denied")
    decision = (await run_db(records, "mcp.decision"))[-1]
    assert decision.decision == "deny" and decision.reasons
    assert counted.requests == []


async def test_unknown_session_is_relayed_as_the_upstreams_error(gateway, engineer_token) -> None:  # type: ignore[no-untyped-def]
    # An old-protocol client with a session id the upstream does not know.
    body = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}}).encode()
    response = await send_raw(gateway, engineer_token, body, **{
        "mcp-session-id": "no-such-session", "mcp-protocol-version": "2025-06-18"})
    assert response.status_code == 404
    outcome = (await run_db(records, "mcp.request"))[-1]
    assert outcome.mcp_session_id == "no-such-session" and outcome.response_body
