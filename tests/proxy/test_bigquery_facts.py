"""The schema facts the SQL analysis is keyed on: a reload that finds the same schema keeps
the version (and so every cached analysis); a real change gives a new one at once."""

from __future__ import annotations

import pytest
from google.cloud import bigquery

from proxy.bigquery_facts import BigQueryFacts
from tests.conftest import DATASET, PROJECT

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
