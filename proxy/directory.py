"""Connection lookup for the data path: database rows compiled into immutable upstream specs,
cached briefly so the hot path does not query the database on every call."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from policy.classify import ColumnClassifier
from proxy.db import run_db


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


def _load(slug: str) -> UpstreamSpec | None:
    from portal.models import Connection, Quarantine

    conn = Connection.objects.filter(slug=slug, enabled=True).first()
    if conn is None:
        return None
    quarantined = Quarantine.objects.filter(connection=conn, lifted_at__isnull=True).exists()
    return UpstreamSpec(
        slug=conn.slug,
        transport=conn.transport,
        url=conn.upstream_url,
        command=tuple(conn.upstream_command or ()),
        credentials=conn.credentials_for_upstream(),
        sql_tools=dict(conn.sql_tools or {}),
        metadata_tools=dict(conn.metadata_tools or {}),
        job_tools=dict(conn.job_tools or {}),
        project_argument=conn.project_argument,
        bigquery_project=conn.bigquery_project,
        bigquery_endpoint=conn.bigquery_endpoint,
        default_dataset=conn.default_dataset,
        allow_sampling=conn.allow_sampling,
        allow_elicitation=conn.allow_elicitation,
        connection_id=conn.pk,
        quarantined=quarantined,
        classifier=ColumnClassifier.from_config(conn.column_classes or {}),
    )


class ConnectionDirectory:
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, UpstreamSpec | None]] = {}

    async def get(self, slug: str) -> UpstreamSpec | None:
        now = time.monotonic()
        hit = self._cache.get(slug)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        spec = await run_db(_load, slug)
        self._cache[slug] = (now, spec)
        return spec

    def invalidate(self, slug: str | None = None) -> None:
        if slug is None:
            self._cache.clear()
        else:
            self._cache.pop(slug, None)
