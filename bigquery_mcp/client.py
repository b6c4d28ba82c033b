"""One way to build a BigQuery client: Google with normal credentials, or an emulator endpoint."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery


def make_bigquery_client(project: str, endpoint: str | None = None) -> bigquery.Client:
    """A real `google-cloud-bigquery` client.

    With `endpoint` (e.g. the local emulator) the client talks to that address with anonymous
    credentials; without it, to Google with Application Default Credentials.
    """
    if endpoint:
        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
        )
    return bigquery.Client(project=project)


SCALAR_TYPES = frozenset({
    "STRING", "INT64", "INTEGER", "FLOAT64", "FLOAT", "NUMERIC", "BIGNUMERIC", "BOOL", "BOOLEAN",
    "DATE", "DATETIME", "TIMESTAMP", "TIME", "BYTES", "JSON",
})


def scalar_query_parameters(
    params: Iterable[tuple[str, str, Any]],
) -> list[bigquery.ScalarQueryParameter]:
    """Named query parameters (@name) from (name, type, value); ValueError for an unknown type."""
    out = []
    for name, kind, value in params:
        kind = str(kind or "STRING").upper()
        if kind not in SCALAR_TYPES:
            raise ValueError(f"Unsupported parameter type {kind!r} for @{name}")
        out.append(bigquery.ScalarQueryParameter(name, kind, value))
    return out
