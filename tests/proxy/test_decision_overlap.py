"""A read-only call is forwarded while its decision record is written (issue 13's product
decision), through a real gateway process: nothing reaches the client before that record is
durable, a failed decision write cancels the upstream call and fails closed, and every call the
policy does not classify as read-only keeps the strict order (record, then forward)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from django.db import connection

from proxy.db import run_db
from tests.proxy.mcp_http import call_sql
from tests.proxy.test_dependency_faults import SlowUpstream, outcomes, serve_slow_upstream

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
SELECT = "SELECT customer_id FROM shop.customers LIMIT 1"


def _sql(statement: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement)


def _refuse_decision_records() -> list[str]:
    """The database refuses every decision record from now on (a real failure: a trigger);
    outcomes and everything else are written as usual. Returns the statements that lift it."""
    if connection.vendor == "postgresql":
        _sql("""CREATE FUNCTION test_refuse_decision() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'test: decision records refused'; END $$""")
        _sql("""CREATE TRIGGER test_refuse_decision BEFORE INSERT ON audit_record FOR EACH ROW
                WHEN (NEW.event = 'mcp.decision') EXECUTE FUNCTION test_refuse_decision()""")
        return ["DROP TRIGGER IF EXISTS test_refuse_decision ON audit_record",
                "DROP FUNCTION IF EXISTS test_refuse_decision()"]
    _sql("""CREATE TRIGGER test_refuse_decision BEFORE INSERT ON audit_record
            WHEN NEW.event = 'mcp.decision'
            BEGIN SELECT RAISE(ABORT, 'test: decision records refused'); END""")
    return ["DROP TRIGGER IF EXISTS test_refuse_decision"]


def _lift(statements: list[str]) -> None:
    for statement in statements:
        _sql(statement)


@pytest.fixture
def refuse_decision_records() -> Iterator[None]:
    lift = _refuse_decision_records()
    try:
        yield
    finally:
        _lift(lift)


def _hold_audit_writes() -> Any:
    """A connection of its own holding the audit log's write lock (till rollback)."""
    held = connection.get_new_connection(connection.get_connection_params())
    if connection.vendor == "sqlite":
        held.isolation_level = None
        held.execute("BEGIN IMMEDIATE")
    else:
        held.cursor().execute("LOCK TABLE audit_record IN SHARE ROW EXCLUSIVE MODE")
    return held


def _let_go(held: Any) -> None:  # idempotent: a second call finds the connection closed
    with contextlib.suppress(Exception):
        held.rollback()
    with contextlib.suppress(Exception):
        held.close()


@contextlib.asynccontextmanager
async def audit_writes_held() -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Another connection holds the audit log's write lock, as a busy database would: audit
    records wait behind it (the gateway's busy/lock timeout is longer) until the release
    function it gives is awaited, or the block ends."""
    held = await asyncio.to_thread(_hold_audit_writes)

    async def release() -> None:
        await asyncio.to_thread(_let_go, held)

    try:
        yield release
    finally:
        await release()


def _methods(upstream: SlowUpstream) -> list[str]:
    return [str(r.get("method")) for r in upstream.received]


async def _wait_for(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def test_a_select_whose_decision_cannot_be_recorded_is_cancelled_upstream_and_releases_nothing(  # type: ignore[no-untyped-def]
        gateway_process, engineer_token, demo_connection, demo_policy) -> None:
    upstream, server = await serve_slow_upstream(demo_connection, delay=30)
    lift: list[str] = []
    try:
        gw = gateway_process()
        async with httpx.AsyncClient() as http:
            # A denied call first: the token is resolved (SQLite: its last use is written,
            # which the lock below would hold up) and the gateway's caches are warm.
            status, _ = await call_sql(http, gw.url("demo-bigquery"), engineer_token,
                                       "DELETE FROM shop.orders WHERE TRUE", timeout=60)
            assert status == 200 and upstream.received == []
        lift = await run_db(_refuse_decision_records)
        # The decision record waits behind another writer until the upstream has the call, so
        # the order is the one to test whatever the machine's load (a refused insert fails in
        # a millisecond, and could beat the forward).
        async with httpx.AsyncClient() as http, audit_writes_held() as release:
            started = time.monotonic()
            calling = asyncio.ensure_future(call_sql(
                http, gw.url("demo-bigquery"), engineer_token, SELECT, timeout=60))
            # Read-only: it goes upstream while the record is being written ...
            forwarded = await _wait_for(lambda: "tools/call" in _methods(upstream), 15)
            await release()
            status, answer = await calling
            took = time.monotonic() - started
        assert forwarded, "the SELECT was not forwarded while its decision record waited"
        # ... and once the record failed, the upstream was hung up on and told to cancel.
        assert await asyncio.to_thread(upstream.hung_up.wait, 10), "the upstream call went on"
        assert await _wait_for(lambda: "notifications/cancelled" in _methods(upstream), 10)
    finally:
        server.stop()
        await run_db(_lift, lift)
    assert status == 503, answer
    assert answer["error"]["data"]["reason"] == "audit.unavailable"
    assert "late" not in str(answer)  # the upstream's answer never left
    assert took < 25, f"the refusal waited for the upstream's answer ({took:.1f}s)"
    cancel = [r for r in upstream.received if r.get("method") == "notifications/cancelled"]
    call_id = next(r["id"] for r in upstream.received if r.get("method") == "tools/call")
    assert [c["params"]["requestId"] for c in cancel] == [call_id]
    # Nothing was recorded as allowed: no decision (refused) and no outcome.
    assert await run_db(outcomes, tool="execute_sql", decision="allow") == []


async def test_in_strict_order_a_select_whose_decision_cannot_be_recorded_never_goes_upstream(  # type: ignore[no-untyped-def]
        gateway_process, engineer_token, demo_connection, demo_policy,
        refuse_decision_records) -> None:
    upstream, server = await serve_slow_upstream(demo_connection, delay=5)
    try:
        gw = gateway_process(WARDGATE_GATEWAY_STRICT_DECISION_ORDER="1")
        async with httpx.AsyncClient() as http:
            status, answer = await call_sql(http, gw.url("demo-bigquery"), engineer_token,
                                            SELECT, timeout=60)
    finally:
        server.stop()
    assert status == 503 and answer["error"]["data"]["reason"] == "audit.unavailable"
    assert "tools/call" not in _methods(upstream)


async def test_a_statement_that_is_not_read_only_is_recorded_before_it_is_forwarded(  # type: ignore[no-untyped-def]
        gateway_process, engineer_token, demo_connection, demo_policy) -> None:
    def allow_deletes() -> None:
        demo_policy.rules = {**demo_policy.rules, "sql": {
            **demo_policy.rules["sql"], "allowed_statement_classes": ["select", "delete"]}}
        demo_policy.save()

    delete = "DELETE FROM shop.orders WHERE order_id = 1"  # a table with no masked column
    await run_db(allow_deletes)
    upstream, server = await serve_slow_upstream(demo_connection, delay=0.1)
    try:
        gw = gateway_process()
        async with httpx.AsyncClient() as http:
            # The role allows it: it is forwarded and answered.
            status, answer = await call_sql(http, gw.url("demo-bigquery"), engineer_token,
                                            delete, timeout=60)
            assert status == 200 and answer["result"]["content"][0]["text"] == "late"
            assert _methods(upstream).count("tools/call") == 1
            # Once decision records cannot be written, it never leaves the gateway.
            lift = await run_db(_refuse_decision_records)
            try:
                status, answer = await call_sql(http, gw.url("demo-bigquery"),
                                                engineer_token, delete, timeout=60)
            finally:
                await run_db(_lift, lift)
    finally:
        server.stop()
    assert status == 503 and answer["error"]["data"]["reason"] == "audit.unavailable"
    assert _methods(upstream).count("tools/call") == 1


async def test_a_select_is_answered_after_both_records_in_order(  # type: ignore[no-untyped-def]
        gateway_process, engineer_token, demo_policy) -> None:
    from audit.verify import verify_chain

    gw = gateway_process()
    async with httpx.AsyncClient() as http:
        results = await asyncio.gather(*(
            call_sql(http, gw.url("demo-bigquery"), engineer_token, SELECT, timeout=60)
            for _ in range(8)))
        # The moment each answer is in, both its records are already there.
        records = await run_db(outcomes, tool="execute_sql")
    assert all(status == 200 and not answer["result"]["isError"] for status, answer in results)
    by_request: dict[str, list[str]] = {}
    for record in records:
        by_request.setdefault(record.request_id, []).append(record.event)
    assert len(by_request) == 8
    assert all(events == ["mcp.decision", "mcp.outcome"] for events in by_request.values())
    assert (await run_db(verify_chain)).ok
