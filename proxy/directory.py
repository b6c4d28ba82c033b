"""Connection lookup for the data path: stored connections compiled into immutable upstream
specs, cached briefly so the hot path does not query the store on every call."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from policy.classify import ColumnClassifier
from proxy.db import run_db
from proxy.store import ConnectionRecord, GatewayStore
from proxy.ttl_cache import TtlCache


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    slug: str
    transport: str
    url: str
    command: tuple[str, ...]
    credentials: dict = field(hash=False, compare=False, repr=False)
    sql_tools: dict = field(hash=False, compare=False)
    metadata_tools: dict = field(default_factory=dict, hash=False, compare=False)
    job_tools: dict = field(default_factory=dict, hash=False, compare=False)
    project_argument: str = ""
    bigquery_project: str = ""
    bigquery_endpoint: str = ""
    default_dataset: str = ""
    allow_sampling: bool = False
    allow_elicitation: bool = False
    connection_id: int = 0
    quarantined: bool = False
    classifier: ColumnClassifier = field(default_factory=lambda: ColumnClassifier((), ()),
                                         hash=False, compare=False)


def spec_from_record(record: ConnectionRecord) -> UpstreamSpec:
    """The connection as the data path uses it, its column classes compiled."""
    return UpstreamSpec(
        slug=record.slug,
        transport=record.transport,
        url=record.url,
        command=record.command,
        credentials=record.credentials,
        sql_tools=dict(record.sql_tools),
        metadata_tools=dict(record.metadata_tools),
        job_tools=dict(record.job_tools),
        project_argument=record.project_argument,
        bigquery_project=record.bigquery_project,
        bigquery_endpoint=record.bigquery_endpoint,
        default_dataset=record.default_dataset,
        allow_sampling=record.allow_sampling,
        allow_elicitation=record.allow_elicitation,
        connection_id=record.connection_id,
        quarantined=record.quarantined,
        classifier=ColumnClassifier.from_config(record.column_classes),
    )


def _load(store: GatewayStore, slug: str) -> UpstreamSpec | None:
    record = store.connection_find(slug)
    return spec_from_record(record) if record is not None else None


_UNKNOWN = object()  # not cached (a cached None is a connection that does not exist)


class ConnectionDirectory:
    def __init__(self, store: GatewayStore, ttl_seconds: float) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self._cache: TtlCache[str, UpstreamSpec | None] = TtlCache(ttl_seconds)

    async def get(self, slug: str) -> UpstreamSpec | None:
        until = time.monotonic() + self.ttl
        hit = self._cache.get(slug, _UNKNOWN)
        if hit is not _UNKNOWN:
            return hit  # type: ignore[return-value]
        spec = await run_db(_load, self.store, slug)
        self._cache.put(slug, spec, until=until)
        return spec

    def invalidate(self, slug: str | None = None) -> None:
        if slug is None:
            self._cache.clear()
        else:
            self._cache.pop(slug)
