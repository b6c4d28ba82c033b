"""Stage directory: connections to upstream specs, cached (misses too) until invalidated."""

from __future__ import annotations

import pytest

from proxy.directory import ConnectionDirectory
from tests.proxy.store_memory import MemoryGatewayStore


async def test_unknown_connection_is_none_and_cached(store: MemoryGatewayStore) -> None:
    directory = ConnectionDirectory(store, 60)
    assert await directory.get("nope") is None
    store.add_connection("nope")
    assert await directory.get("nope") is None  # a cached miss, until the revision moves
    directory.invalidate()
    assert (await directory.get("nope")).slug == "nope"


async def test_spec_compiles_column_classes(store: MemoryGatewayStore) -> None:
    store.add_connection("bq", column_classes={"p.d.t.email": "email"},
                         sql_tools={"execute_sql": {"sql": "query"}})
    spec = await ConnectionDirectory(store, 60).get("bq")
    assert spec is not None and spec.sql_tools == {"execute_sql": {"sql": "query"}}
    assert spec.classifier.classes_of("p.d.t", "email", {}) == frozenset({"email"})
    assert spec.quarantined is False


async def test_quarantine_is_seen_after_invalidation(store: MemoryGatewayStore) -> None:
    record = store.add_connection("bq")
    directory = ConnectionDirectory(store, 60)
    assert not (await directory.get("bq")).quarantined
    store.quarantined_connections.add(record.connection_id)
    directory.invalidate("bq")
    assert (await directory.get("bq")).quarantined


@pytest.mark.parametrize("ttl, reads", [(60, 1), (0, 2)])
async def test_ttl(store: MemoryGatewayStore, ttl: float, reads: int) -> None:
    store.add_connection("bq")
    directory = ConnectionDirectory(store, ttl)
    await directory.get("bq")
    await directory.get("bq")
    assert store.calls.count("connection_find") == reads


async def test_bad_column_classes_fail_closed(store: MemoryGatewayStore) -> None:
    store.add_connection("bq", column_classes={"not-four-parts": "email"})
    with pytest.raises(ValueError):
        await ConnectionDirectory(store, 60).get("bq")
