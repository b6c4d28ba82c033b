"""What the gateway asks BigQuery itself, with its own credentials: table schemas (to resolve
columns and policy tags) and dry runs (to cap bytes scanned). Both are cached: schemas per
dataset for a few minutes, dry-run figures per statement."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.cloud import bigquery

from bigquery_mcp.client import make_bigquery_client, scalar_query_parameters

# Schema versions are unique across every connection in the process: the SQL analyzer's cache
# is keyed on the version, so two schemas must never share one.
_SCHEMA_VERSIONS = itertools.count(1)
PLAN_CACHE_ENTRIES = 2048


class BigQueryFactsError(Exception):
    """``message`` is safe to show; ``detail`` is BigQuery's own text, which may quote values
    (see proxy.error_texts) and must not leave the gateway as it is."""

    def __init__(self, reason: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail
        self.reason = reason
        self.message = message


@dataclass
class _DatasetSchema:
    loaded_at: float
    tables: dict[str, dict[str, str]]
    policy_tags: dict[str, tuple[str, ...]]  # "project.dataset.table.column" -> tag names


@dataclass
class BigQueryFacts:
    project: str
    endpoint: str | None
    credentials: dict[str, Any] | None = None
    schema_ttl_seconds: float = 300.0
    dry_run_ttl_seconds: float = 300.0
    # Every call to BigQuery (schema lookups, dry runs) ends within this, retries included.
    timeout_seconds: float = 15.0
    # The client and the credentials object it was built from: a rotated key
    # (`use_credentials`) gets a new client on the next call.
    _client: tuple[dict[str, Any] | None, bigquery.Client] | None = field(
        default=None, init=False, repr=False)
    _datasets: dict[str, _DatasetSchema] = field(default_factory=dict, init=False)
    _dry_runs: OrderedDict[str, tuple[float, int]] = field(default_factory=OrderedDict, init=False)
    _merged: dict[frozenset[str], tuple[int, dict, dict]] = field(default_factory=dict, init=False)
    _plans: OrderedDict[int, tuple[Any, Any, Any]] = field(default_factory=OrderedDict, init=False)
    version: int = field(default=0, init=False)

    def use_credentials(self, credentials: dict[str, Any] | None) -> None:
        """Ask BigQuery with these credentials from the next call on (a connection's key was
        rotated). The cached schemas, dry-run figures and schema version are kept: a schema
        read with the old key stays until its TTL, like any cached schema, and a new version
        for the same schema would make every cached analysis miss."""
        if credentials != self.credentials:
            self.credentials = credentials

    def _bq(self) -> bigquery.Client:
        # Runs in worker threads while the loop may rotate the credentials: read them once, and
        # remember which ones the client was built from.
        credentials = self.credentials
        built = self._client
        if built is None or built[0] is not credentials:
            built = (credentials, self._new_client(credentials))
            self._client = built
        return built[1]

    def _new_client(self, credentials: dict[str, Any] | None) -> bigquery.Client:
        info = (credentials or {}).get("bigquery_service_account")
        if not info:
            return make_bigquery_client(self.project, self.endpoint or None)
        from google.oauth2 import service_account

        creds = service_account.Credentials.from_service_account_info(info)
        # The connection's endpoint, if it names one, with the key's credentials.
        options = ClientOptions(api_endpoint=self.endpoint) if self.endpoint else None
        return bigquery.Client(project=self.project, credentials=creds, client_options=options)

    def _limits(self) -> dict[str, Any]:
        """Per-request timeout and an overall retry deadline for one BigQuery API call."""
        return {"timeout": self.timeout_seconds,
                "retry": Retry(deadline=self.timeout_seconds, timeout=self.timeout_seconds)}

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking BigQuery call off the loop; give up on it after the timeout."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
        except TimeoutError:
            raise BigQueryFactsError(
                "bigquery.timeout",
                f"BigQuery did not answer within {self.timeout_seconds:g} s") from None

    def _load_dataset(self, dataset: str) -> _DatasetSchema:
        client = self._bq()
        tables: dict[str, dict[str, str]] = {}
        tags: dict[str, tuple[str, ...]] = {}
        try:
            listed = list(client.list_tables(dataset, **self._limits()))
        except gexc.NotFound:
            return _DatasetSchema(time.monotonic(), {}, {})
        for item in listed:
            table = client.get_table(item.reference, **self._limits())
            fq = f"{table.project}.{table.dataset_id}.{table.table_id}".lower()
            tables[fq] = {f.name.lower(): f.field_type for f in table.schema}
            for f in table.schema:
                if f.policy_tags and f.policy_tags.names:
                    tags[f"{fq}.{f.name.lower()}"] = tuple(f.policy_tags.names)
        return _DatasetSchema(time.monotonic(), tables, tags)

    async def schemas(self, datasets: frozenset[str]) -> tuple[dict[str, dict[str, str]],
                                                         dict[str, tuple[str, ...]]]:
        now = time.monotonic()
        for ds in datasets:
            cached = self._datasets.get(ds)
            if cached is None or now - cached.loaded_at > self.schema_ttl_seconds:
                try:
                    loaded = await self._in_thread(self._load_dataset, ds)
                except (gexc.GoogleAPIError, OSError) as exc:
                    raise BigQueryFactsError("bigquery.schema_unavailable",
                                             f"Could not read the schema of {ds}: {getattr(exc, 'message', None) or type(exc).__name__}") from exc
                self._datasets[ds] = loaded
                # A new version only when the schema really changed: every analysis and column
                # plan is keyed by it, so a reload that finds the same tables, columns and
                # policy tags keeps them (a new version on every reload re-analysed every
                # statement each time and kept dead entries in the caches until evicted).
                if cached is None or (cached.tables, cached.policy_tags) != (
                        loaded.tables, loaded.policy_tags):
                    self.version = next(_SCHEMA_VERSIONS)
                    self._plans.clear()  # plans of the old version's analyses: never hit again
        # The same merged objects for the same datasets and version, so the SQL analyzer's
        # per-schema preparation is reused rather than rebuilt on every call.
        key = frozenset(datasets)
        merged = self._merged.get(key)
        if merged is None or merged[0] != self.version:
            tables: dict[str, dict[str, str]] = {}
            tags: dict[str, tuple[str, ...]] = {}
            for ds in datasets:
                tables.update(self._datasets[ds].tables)
                tags.update(self._datasets[ds].policy_tags)
            merged = (self.version, tables, tags)
            self._merged[key] = merged
        return merged[1], merged[2]

    def column_plan(self, analysis: Any, classifier: Any, build: Callable[[], Any]) -> Any:
        """The column classes of an analysed statement, built once per analysis and column
        classification (both are immutable, so their identities are a safe key while we hold
        them). The classifier is part of the key because a connection's column classes change
        without its schema changing: a column classified later must be masked on the next
        call of a statement already seen, not when the schema is next reloaded."""
        hit = self._plans.get(id(analysis))
        if hit is not None and hit[0] is analysis and hit[1] is classifier:
            self._plans.move_to_end(id(analysis))
            return hit[2]
        plan = build()
        self._plans[id(analysis)] = (analysis, classifier, plan)
        self._plans.move_to_end(id(analysis))
        while len(self._plans) > PLAN_CACHE_ENTRIES:
            self._plans.popitem(last=False)
        return plan

    async def dry_run_bytes(self, sql: str, parameters: Any, cache_key: str) -> int:
        now = time.monotonic()
        hit = self._dry_runs.get(cache_key)
        if hit is not None and now - hit[0] < self.dry_run_ttl_seconds:
            return hit[1]

        def run() -> int:
            config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False,
                                             query_parameters=_query_parameters(parameters))
            job = self._bq().query(sql, job_config=config, **self._limits())
            return int(job.total_bytes_processed or 0)

        try:
            figure = await self._in_thread(run)
        except (gexc.GoogleAPIError, OSError) as exc:
            raise BigQueryFactsError("sql.dry_run_failed", "The BigQuery dry run failed",
                                     str(getattr(exc, "message", None) or type(exc).__name__)) from exc
        except (ValueError, TypeError) as exc:
            raise BigQueryFactsError("sql.dry_run_failed", "The BigQuery dry run failed",
                                     str(exc)) from exc
        self._dry_runs[cache_key] = (now, figure)
        if len(self._dry_runs) > 4096:
            self._dry_runs.popitem(last=False)
        return figure


def _query_parameters(parameters: Any) -> list[bigquery.ScalarQueryParameter]:
    if not parameters:
        return []
    if not isinstance(parameters, list) or not all(
            isinstance(p, dict) and isinstance(p.get("name"), str) for p in parameters):
        raise ValueError("parameters must be a list of {name, type, value}")
    return scalar_query_parameters((p["name"], p.get("type", "STRING"), p.get("value"))
                                   for p in parameters)
