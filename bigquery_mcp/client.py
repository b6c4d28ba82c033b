"""One way to build a BigQuery client: Google with normal credentials, or an emulator endpoint."""

from __future__ import annotations

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
