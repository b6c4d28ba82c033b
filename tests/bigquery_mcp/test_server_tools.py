"""The BigQuery MCP server's tools, called with the official MCP client against the emulator."""

from __future__ import annotations

import sys

import pytest
from mcp import StdioServerParameters
from mcp.client import Client

from tests.conftest import DATASET, PROJECT, ROOT, TEST_CUSTOMERS

pytestmark = pytest.mark.asyncio


async def test_lists_datasets_and_tables(mcp_server_url: str) -> None:
    async with Client(mcp_server_url) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"list_datasets", "list_tables", "get_table_schema", "execute_sql",
                "dry_run_sql"} <= names
        datasets = await client.call_tool("list_datasets", {})
        assert DATASET in datasets.structured_content["datasets"]
        tables = await client.call_tool("list_tables", {"dataset": DATASET})
        assert tables.structured_content["tables"] == ["customers", "events", "orders"]


async def test_table_schema_has_types_and_descriptions(mcp_server_url: str) -> None:
    async with Client(mcp_server_url) as client:
        result = await client.call_tool("get_table_schema", {"table": f"{DATASET}.customers"})
    schema = result.structured_content
    assert schema["table"] == f"{PROJECT}.{DATASET}.customers"
    columns = {c["name"]: c for c in schema["columns"]}
    assert columns["ssn"]["description"] == "PII: US social security number"
    assert columns["date_of_birth"]["type"] == "DATE"
    assert columns["customer_id"]["mode"] == "REQUIRED"
    assert columns["email"]["policy_tags"] == []


async def test_execute_sql_with_parameters_returns_structured_rows_and_text(mcp_server_url: str) -> None:
    sql = (f"SELECT customer_id, email, date_of_birth FROM {DATASET}.customers "
           "WHERE customer_id BETWEEN @lo AND @hi ORDER BY customer_id")
    params = [{"name": "lo", "type": "INT64", "value": 3}, {"name": "hi", "type": "INT64", "value": 5}]
    async with Client(mcp_server_url) as client:
        result = await client.call_tool("execute_sql", {"sql": sql, "parameters": params})
    assert not result.is_error
    data = result.structured_content
    assert [r["customer_id"] for r in data["rows"]] == [3, 4, 5]
    assert data["columns"][1] == {"name": "email", "type": "STRING"}
    assert "@" in data["rows"][0]["email"]
    # The text block carries the same rows for clients that ignore structured content.
    import json

    assert json.loads(result.content[0].text)["rows"] == data["rows"]


async def test_numeric_and_aggregates_keep_exact_values(mcp_server_url: str) -> None:
    sql = f"SELECT COUNT(*) AS n FROM {DATASET}.customers"
    async with Client(mcp_server_url) as client:
        result = await client.call_tool("execute_sql", {"sql": sql})
        amount = await client.call_tool(
            "execute_sql", {"sql": f"SELECT amount FROM {DATASET}.orders ORDER BY order_id LIMIT 1"})
    assert result.structured_content["rows"] == [{"n": TEST_CUSTOMERS}]
    value = amount.structured_content["rows"][0]["amount"]
    assert isinstance(value, str) and "." in value  # NUMERIC travels as an exact decimal string


async def test_max_rows_truncates_and_says_so(mcp_server_url: str) -> None:
    async with Client(mcp_server_url) as client:
        result = await client.call_tool(
            "execute_sql", {"sql": f"SELECT customer_id FROM {DATASET}.customers", "max_rows": 10})
    data = result.structured_content
    assert data["row_count"] == 10 and data["truncated"] is True and data["total_rows"] == TEST_CUSTOMERS


async def test_dry_run_reports_bytes(mcp_server_url: str) -> None:
    async with Client(mcp_server_url) as client:
        result = await client.call_tool("dry_run_sql", {"sql": f"SELECT * FROM {DATASET}.orders"})
    assert not result.is_error
    # The emulator reports 0 bytes; the real figure is checked against a recorded response
    # in test_dry_run_recorded.py.
    assert isinstance(result.structured_content["total_bytes_processed"], int)
    assert result.structured_content["statement_type"] == "SELECT"


async def test_bigquery_syntax_error_is_a_tool_error(mcp_server_url: str) -> None:
    async with Client(mcp_server_url) as client:
        result = await client.call_tool("execute_sql", {"sql": "SELEC email FROM shop.customers"})
        # The server stays up and answers the next call.
        after = await client.call_tool("execute_sql", {"sql": "SELECT 1 AS one"})
    assert result.is_error
    assert "Syntax error" in result.content[0].text
    assert after.structured_content["rows"] == [{"one": 1}]


async def test_unknown_table_and_bad_parameter_type_are_tool_errors(mcp_server_url: str) -> None:
    async with Client(mcp_server_url) as client:
        missing = await client.call_tool("get_table_schema", {"table": f"{DATASET}.nope"})
        bad_param = await client.call_tool(
            "execute_sql", {"sql": "SELECT @x", "parameters": [{"name": "x", "type": "GEOGRAPHYX"}]})
    assert missing.is_error and "BigQuery error" in missing.content[0].text
    assert bad_param.is_error and "Unsupported parameter type" in bad_param.content[0].text


async def test_stdio_transport(bigquery_emulator) -> None:  # type: ignore[no-untyped-def]
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "bigquery_mcp", "--transport", "stdio", "--project", PROJECT,
              "--endpoint", bigquery_emulator.endpoint],
        cwd=str(ROOT),
    )
    async with Client(params) as client:
        result = await client.call_tool(
            "execute_sql", {"sql": f"SELECT country FROM {DATASET}.customers WHERE customer_id = 1"})
    assert result.structured_content["row_count"] == 1
