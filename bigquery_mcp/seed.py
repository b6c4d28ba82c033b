"""Create the demo dataset in BigQuery (the emulator, normally) and load the demo rows."""

from __future__ import annotations

from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from .demo_data import TABLES, batched, generate


@dataclass(frozen=True)
class SeedReport:
    dataset: str
    rows: dict[str, int]


class SeedError(RuntimeError):
    pass


def seed_demo_dataset(
    client: bigquery.Client, dataset: str, *, customers: int = 2000, seed: int = 20241,
    replace: bool = True, data: dict[str, list[dict]] | None = None,
) -> SeedReport:
    """Create ``dataset`` with the demo tables and load the demo rows (or ``data``, rows by
    table name in the same shape, e.g. a variant of ``generate()``)."""
    dataset_ref = f"{client.project}.{dataset}"
    if replace:
        client.delete_dataset(dataset_ref, delete_contents=True, not_found_ok=True)
    ds = bigquery.Dataset(dataset_ref)
    ds.description = "Wardgate demo shop: synthetic customers, orders and events with PII"
    client.create_dataset(ds, exists_ok=True)
    if data is None:
        data = generate(customers=customers, seed=seed)
    counts: dict[str, int] = {}
    for spec in TABLES:
        table = bigquery.Table(f"{dataset_ref}.{spec.name}", schema=spec.schema)
        table.description = spec.description
        try:
            client.create_table(table)
        except gexc.Conflict:
            if replace:
                raise
        rows = data[spec.name]
        for chunk in batched(rows, 500):
            errors = client.insert_rows_json(table, chunk)
            if errors:
                raise SeedError(f"Inserting into {spec.name} failed: {errors[:3]}")
        counts[spec.name] = len(rows)
    return SeedReport(dataset=dataset_ref, rows=counts)
