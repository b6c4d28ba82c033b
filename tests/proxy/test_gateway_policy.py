"""Through the gateway with an engineer's token: least privilege, SQL-aware, masked, recorded."""

from __future__ import annotations

import json
import re

import pytest
from mcp.client import Client

from proxy.db import run_db
from tests.recorded_bigquery import RecordedBigQuery
from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

CUSTOMER_SQL = (
    "SELECT customer_id, full_name, email, ssn, card_number, phone, country "
    "FROM shop.customers WHERE customer_id <= 5 ORDER BY customer_id"
)


def decisions(**filters):  # type: ignore[no-untyped-def]
    from audit.models import AuditRecord

    return list(AuditRecord.objects.filter(**filters).order_by("seq"))


async def call(gateway, token: str, sql: str):  # type: ignore[no-untyped-def]
    async with gateway_client(gateway.url("demo-bigquery"), token) as client:
        return await client.call_tool("execute_sql", {"sql": sql})


async def test_tools_list_shows_only_granted_and_accepted_tools(
    gateway, engineer_token, demo_policy
) -> None:  # type: ignore[no-untyped-def]
    async with gateway_client(gateway.url("demo-bigquery"), engineer_token) as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
    assert names == [
        "dry_run_sql",
        "execute_sql",
        "get_table_schema",
        "list_datasets",
        "list_tables",
    ]

    from portal.services.security import security_revision_bump

    def narrow() -> None:
        demo_policy.rules = {**demo_policy.rules, "tools": ["execute_sql", "list_tables"]}
        demo_policy.save()
        security_revision_bump()

    await run_db(narrow)
    await gateway.refresh()
    async with gateway_client(gateway.url("demo-bigquery"), engineer_token) as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        refused = await client.call_tool("list_datasets", {})
    assert names == ["execute_sql", "list_tables"]
    assert refused.is_error and "tool.not_granted" in refused.content[0].text


async def test_select_on_customers_is_masked_as_configured(
    gateway, engineer_token, mcp_server_url
) -> None:  # type: ignore[no-untyped-def]
    async with Client(mcp_server_url) as direct:
        raw = (await direct.call_tool("execute_sql", {"sql": CUSTOMER_SQL})).structured_content[
            "rows"
        ]
    result = await call(gateway, engineer_token, CUSTOMER_SQL)
    assert not result.is_error
    rows = result.structured_content["rows"]
    assert [r["customer_id"] for r in rows] == [r["customer_id"] for r in raw]
    for got, orig in zip(rows, raw, strict=True):
        local, domain = orig["email"].split("@")
        assert got["email"] == f"{local[0]}***@{domain}"
        assert got["ssn"] == "[REDACTED:ssn]"
        assert got["card_number"].endswith(orig["card_number"][-4:])
        assert re.sub(r"\d", "", got["card_number"][:-4]).replace(" ", "").strip("*") == ""
        assert got["full_name"].startswith("tok_") and got["full_name"] != orig["full_name"]
        assert got["country"] == orig["country"]  # unclassified columns pass untouched
    text = result.content[0].text
    for orig in raw:  # no raw value survives in the text block either
        for column in ("email", "ssn", "card_number", "full_name", "phone"):
            assert orig[column] not in text
    assert json.loads(text)["rows"] == rows


async def test_aliases_keep_their_classes_and_computation_over_masked_columns_is_refused(
    gateway, engineer_token, mcp_server_url
) -> None:  # type: ignore[no-untyped-def]
    sql = "SELECT email AS contact, UPPER(country) AS cc FROM shop.customers AS c WHERE customer_id = 2"
    async with Client(mcp_server_url) as direct:
        raw = (await direct.call_tool("execute_sql", {"sql": sql})).structured_content["rows"][0]
    row = (await call(gateway, engineer_token, sql)).structured_content["rows"][0]
    local, domain = raw["contact"].split("@")
    assert row["contact"] == f"{local[0]}***@{domain}"
    assert row["cc"] == raw["cc"]

    for computed in ("SELECT CONCAT(full_name, ' <', email, '>') AS who FROM shop.customers",
                     "SELECT TO_JSON_STRING(c) AS everything FROM shop.customers AS c"):
        refused = await call(gateway, engineer_token, computed)
        assert refused.is_error and "sql.masked_column_use" in refused.content[0].text
        assert refused.structured_content is None or "rows" not in refused.structured_content

    # A scalar subquery hands the raw value out as a computed column: redacted, not partial.
    sql = "SELECT (SELECT email FROM shop.customers WHERE customer_id = 2) AS contact"
    row = (await call(gateway, engineer_token, sql)).structured_content["rows"][0]
    assert row["contact"] == "[REDACTED:email]"


async def test_pii_in_free_text_is_caught_by_content_detectors(gateway, engineer_token) -> None:  # type: ignore[no-untyped-def]
    sql = (
        "SELECT payload FROM shop.events WHERE event_type IN ('password_reset', "
        "'support_ticket') ORDER BY event_id LIMIT 5"
    )
    rows = (await call(gateway, engineer_token, sql)).structured_content["rows"]
    assert rows
    for row in rows:
        note = (
            json.loads(row["payload"]).get("note", "")
            if row["payload"].startswith("{")
            else row["payload"]
        )
        assert not re.search(r"[a-z.]+\d*@example\.(com|org|net)", note), note


@pytest.mark.parametrize(
    "sql, rule",
    [
        ("DELETE FROM shop.orders WHERE TRUE", "sql.statement_class"),
        ("CREATE TABLE shop.copy AS SELECT * FROM shop.customers", "sql.statement_class"),
        ("DROP TABLE shop.orders", "sql.statement_class"),
        ("SELECT 1 AS a; DELETE FROM shop.orders WHERE TRUE", "sql.multiple_statements"),
        ("SELECT table_name FROM shop.INFORMATION_SCHEMA.TABLES", "sql.table_not_allowed"),
        ("SELECT * FROM shop.INFORMATION_SCHEMA.TABLES", "sql.unresolved_star"),
        ("SELECT salary FROM hr.payroll", "sql.table_not_allowed"),
        ("SELECT FROM WHERE customers", "sql.parse_error"),
        (
            "SELECT email FROM shop.customers /* */; /**/ DELETE FROM shop.customers WHERE TRUE",
            "sql.multiple_statements",
        ),
    ],
)
async def test_forbidden_sql_is_denied_with_reasons_and_recorded(  # type: ignore[no-untyped-def]
    gateway, engineer_token, bigquery_client, sql, rule
) -> None:
    from google.cloud import bigquery

    bigquery_client.create_dataset("hr", exists_ok=True)
    bigquery_client.create_table(
        bigquery.Table(
            f"{bigquery_client.project}.hr.payroll",
            schema=[bigquery.SchemaField("salary", "NUMERIC")],
        ),
        exists_ok=True,
    )
    result = await call(gateway, engineer_token, sql)
    assert result.is_error
    assert rule in result.content[0].text, result.content[0].text
    meta = result.meta or {}
    reasons = meta["io.wardgate/decision"]["reasons"]
    assert any(r["rule"] == rule for r in reasons)
    records = await run_db(decisions, tool="execute_sql")
    assert [r.event for r in records] == ["mcp.decision", "mcp.outcome"]
    assert records[0].decision == "deny" and records[0].sql_text == sql
    assert any(r["rule"] == rule for r in records[0].reasons)
    assert records[0].request_id == records[1].request_id


async def test_query_over_the_bytes_cap_is_denied_by_dry_run(  # type: ignore[no-untyped-def]
    gateway, engineer_token, demo_connection, demo_policy, bigquery_emulator
) -> None:
    with RecordedBigQuery(upstream=bigquery_emulator.endpoint) as recorded:

        def point_at_recorder() -> None:
            demo_connection.bigquery_endpoint = recorded.endpoint
            demo_connection.save()
            sql_rules = {**demo_policy.rules["sql"], "max_bytes_scanned": 1024**3}
            demo_policy.rules = {**demo_policy.rules, "sql": sql_rules}
            demo_policy.save()

        await run_db(point_at_recorder)
        await gateway.forget_caches()
        result = await call(gateway, engineer_token, "SELECT * FROM shop.orders")
    assert result.is_error and "sql.bytes_cap" in result.content[0].text
    assert recorded.dry_runs == 1
    record = (await run_db(decisions, event="mcp.decision"))[-1]
    assert record.detail["sql"]["bytes_processed"] == 5368709120


async def test_allowed_calls_are_recorded_with_masking_summary_and_chain_verifies(
    gateway, engineer_token
) -> None:  # type: ignore[no-untyped-def]
    result = await call(gateway, engineer_token, CUSTOMER_SQL)
    assert not result.is_error
    from audit.verify import verify_chain

    records = await run_db(decisions, tool="execute_sql")
    decision, outcome = records
    assert decision.event == "mcp.decision" and decision.decision == "allow"
    assert outcome.event == "mcp.outcome" and outcome.row_count == 5
    assert outcome.actor == "engineer" and outcome.auth_method == "personal_token"
    assert outcome.sql_fingerprint and outcome.upstream_latency_ms > 0
    summary = {(m["column"], m["class"], m["action"]) for m in outcome.masking}
    assert ("ssn", "ssn", "redact") in summary and ("email", "email", "partial") in summary
    assert "@" not in json.dumps(outcome.masking)  # counts only, never values
    # The response is recorded exactly as it left: masked, with the hash of the full body.
    assert "[REDACTED:ssn]" in outcome.response_body
    import hashlib

    assert hashlib.sha256(outcome.response_body.encode()).hexdigest() == outcome.response_sha256
    assert (await run_db(verify_chain)).ok


async def test_a_column_classified_later_is_masked_on_the_next_call_of_a_seen_statement(
    gateway, engineer_token, demo_connection
) -> None:  # type: ignore[no-untyped-def]
    """The gateway remembers the analysis (and column classes) of statements it has seen; a
    column an admin classifies afterwards must be masked on the very next call of the same
    statement, not when a cache happens to expire."""
    from portal.services.policy import connection_save

    sql = "SELECT customer_id, country FROM shop.customers WHERE customer_id <= 3"
    before = await call(gateway, engineer_token, sql)
    countries = [r["country"] for r in before.structured_content["rows"]]
    assert countries and all(c and not c.startswith("[REDACTED") for c in countries)

    def classify_country() -> None:
        demo_connection.column_classes = {**demo_connection.column_classes,
                                          "*.*.customers.country": "address"}
        connection_save(connection=demo_connection, by=None, reason="country is an address part")

    await run_db(classify_country)
    await gateway.refresh()
    after = await call(gateway, engineer_token, sql)
    assert not after.is_error
    assert [r["country"] for r in after.structured_content["rows"]] == ["[REDACTED:address]"] * 3
    assert all(f'"{c}"' not in after.content[0].text for c in countries)  # the text twin too
