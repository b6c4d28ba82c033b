"""The schema facts the SQL analysis is keyed on: a reload that finds the same schema keeps
the version (and so every cached analysis); a real change gives a new one at once. A rotated
service-account key is what BigQuery is asked with from the next call on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from google.cloud import bigquery

from proxy.bigquery_facts import BigQueryFacts
from proxy.config import GatewayConfig
from proxy.pipeline import Pipeline
from tests.conftest import DATASET, PROJECT
from tests.google_token_endpoint import GoogleTokenEndpoint
from tests.proxy.store_memory import MemoryGatewayStore

pytestmark = pytest.mark.asyncio


async def test_a_reload_keeps_the_version_unless_the_schema_changed(
    bigquery_emulator, bigquery_client
) -> None:  # type: ignore[no-untyped-def]
    facts = BigQueryFacts(project=PROJECT, endpoint=bigquery_emulator.endpoint,
                          schema_ttl_seconds=0.0)  # every call reloads
    datasets = frozenset({f"{PROJECT}.{DATASET}"})
    tables, _ = await facts.schemas(datasets)
    first = facts.version
    assert f"{PROJECT}.{DATASET}.customers" in tables
    plan = facts.column_plan("analysis", "classifier", lambda: ["plan"])

    again, _ = await facts.schemas(datasets)
    assert facts.version == first
    assert again is tables  # the same merged schema object: cached analyses still hit
    assert facts.column_plan("analysis", "classifier", lambda: ["rebuilt"]) is plan

    table = bigquery.Table(f"{PROJECT}.{DATASET}.facts_probe",
                           schema=[bigquery.SchemaField("secret_note", "STRING")])
    bigquery_client.create_table(table)
    try:
        changed, _ = await facts.schemas(datasets)
        assert facts.version != first
        assert changed[f"{PROJECT}.{DATASET}.facts_probe"] == {"secret_note": "STRING"}
        assert facts.column_plan("analysis", "classifier", lambda: ["rebuilt"]) == ["rebuilt"]
    finally:
        bigquery_client.delete_table(table, not_found_ok=True)


@pytest.fixture
def token_endpoint() -> Iterator[GoogleTokenEndpoint]:
    endpoint = GoogleTokenEndpoint().start()
    yield endpoint
    endpoint.stop()


async def test_a_rotated_key_asks_bigquery_from_the_next_call_and_keeps_the_schema_version(
    bigquery_emulator, token_endpoint
) -> None:  # type: ignore[no-untyped-def]
    # The gateway's own key (dry runs, schema reads) is rotated by a connection edit that
    # changes nothing else; the token endpoint sees which key BigQuery is asked with.
    old_key, new_key = token_endpoint.service_account(), token_endpoint.service_account()
    store = MemoryGatewayStore()
    record = replace(store.add_connection("bq", sql_tools={"execute_sql": "sql"},
                                          bigquery_project=PROJECT,
                                          bigquery_endpoint=bigquery_emulator.endpoint,
                                          default_dataset=DATASET),
                     credentials={"bigquery_service_account": old_key})
    store.connections["bq"] = record
    pipeline = Pipeline(GatewayConfig(token_key=b"k" * 32), store=store)
    datasets = frozenset({f"{PROJECT}.{DATASET}"})

    async def facts_now() -> BigQueryFacts:
        spec = await pipeline.directory.get("bq")
        assert spec is not None
        sql_tool = pipeline.sql_tool(spec, "execute_sql")
        assert sql_tool is not None
        return sql_tool.facts

    facts = await facts_now()
    await facts.schemas(datasets)
    version = facts.version
    await facts.dry_run_bytes(f"SELECT customer_id FROM {DATASET}.customers", None, "first")
    assert {grant.client_email for grant in token_endpoint.issued} == {old_key["client_email"]}

    store.connections["bq"] = replace(record, credentials={"bigquery_service_account": new_key})
    pipeline.directory.invalidate("bq")
    facts = await facts_now()
    await facts.dry_run_bytes(f"SELECT email FROM {DATASET}.customers WHERE customer_id > 1", None, "second")
    assert token_endpoint.issued[-1].client_email == new_key["client_email"]
    # Rotating the key is no schema change: the cached schema and its version stay.
    await facts.schemas(datasets)
    assert facts.version == version
