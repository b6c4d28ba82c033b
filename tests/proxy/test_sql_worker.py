"""The SQL worker pool: analyses match the schema they were asked with, and a statement over
the time budget is refused and its worker replaced."""

from __future__ import annotations

import pytest

from policy.sql_analysis import SqlAnalysisError
from proxy.sql_limits import SqlLimits
from proxy.sql_worker import SqlWorkers
from tests.proxy.mcp_http import nested_subqueries

pytestmark = pytest.mark.asyncio


@pytest.fixture
def workers():  # type: ignore[no-untyped-def]
    pool = SqlWorkers(SqlLimits(workers=1, budget_seconds=0.5, max_depth=400, max_tokens=100_000))
    yield pool
    pool.close()


async def test_one_facts_version_with_two_merged_schemas_never_mixes_them(workers) -> None:  # type: ignore[no-untyped-def]
    # One schema version, two different merged schemas (two sets of datasets): the single
    # worker must analyse each statement against the schema it came with.
    secret: dict[str, dict[str, str]] = {}
    shop = {"p.shop.customers": {"customer_id": "INT64"}}
    with pytest.raises(SqlAnalysisError) as denied:
        await workers.analyze("SELECT * FROM secret.payroll", project="p", dataset="shop",
                              schema=secret, schema_version=7)
    assert denied.value.code == "sql.unknown_table"
    analysis = await workers.analyze("SELECT customer_id FROM shop.customers", project="p",
                                     dataset="shop", schema=shop, schema_version=7)
    assert analysis.tables == frozenset({"p.shop.customers"})


async def test_over_budget_is_too_complex_and_the_worker_is_replaced(workers) -> None:  # type: ignore[no-untyped-def]
    shop = {"p.shop.customers": {"customer_id": "INT64"}}
    with pytest.raises(SqlAnalysisError) as refused:
        await workers.analyze(nested_subqueries(150), project="p", dataset="shop", schema=shop,
                              schema_version=1)
    assert refused.value.code == "sql.too_complex" and workers.killed == 1
    # The refusal is remembered: the same text costs no worker again.
    with pytest.raises(SqlAnalysisError):
        await workers.analyze(nested_subqueries(150), project="p", dataset="shop", schema=shop,
                              schema_version=1)
    assert workers.killed == 1
    analysis = await workers.analyze("SELECT customer_id FROM shop.customers", project="p",
                                     dataset="shop", schema=shop, schema_version=1)
    assert analysis.outputs[0].name == "customer_id"
