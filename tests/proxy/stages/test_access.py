"""Stage access: grants to compiled plans; deny by default; cached until revision or expiry."""

from __future__ import annotations

import asyncio
import time

import pytest

from proxy.access import AccessCache
from tests.proxy.store_memory import MemoryGatewayStore

KEY = b"k" * 32
READER = {"tools": ["list_*", "execute_sql"]}
ADMIN = {"tools": ["*"]}


@pytest.mark.parametrize("grant_kwargs, visible", [
    (None, set()),  # no grant: nothing
    ({"user_id": "me"}, {"list_tables", "execute_sql"}),
    ({"group": "analysts"}, {"list_tables", "execute_sql"}),
    ({"group": "other"}, set()),
    ({"user_id": "me", "revoked": True}, set()),
    ({"user_id": "me", "expires_at": 1.0}, set()),
    ({"user_id": "me", "connection": "other"}, set()),
])
async def test_plan_from_grants(store: MemoryGatewayStore, grant_kwargs: dict | None,
                                visible: set[str]) -> None:
    me = store.add_user("ana", groups={"analysts"})
    conn = store.add_connection("bq")
    other = store.add_connection("other")
    if grant_kwargs is not None:
        kwargs = dict(grant_kwargs)
        if kwargs.get("user_id") == "me":
            kwargs["user_id"] = me.user_id
        target = other if kwargs.pop("connection", None) else conn
        store.grant("reader", READER, target.connection_id, **kwargs)
    plan = await AccessCache(store, KEY).plan_for(me.user_id, ("analysts",), conn.connection_id)
    assert {t for t in ("list_tables", "execute_sql", "drop_table") if plan.visible(t)} == visible
    assert not plan.visible("drop_table")


async def test_roles_sorted_and_policy_version(store: MemoryGatewayStore) -> None:
    me = store.add_user("ana")
    conn = store.add_connection("bq")
    store.grant("zz-admin", ADMIN, conn.connection_id, user_id=me.user_id)
    store.grant("reader", READER, conn.connection_id, user_id=me.user_id)
    store.policy_version = 7
    plan = await AccessCache(store, KEY).plan_for(me.user_id, (), conn.connection_id)
    assert [r.name for r in plan.roles] == ["reader", "zz-admin"]
    assert plan.policy_version == 7


async def test_cached_until_invalidated_and_groups_key(store: MemoryGatewayStore) -> None:
    me = store.add_user("ana")
    conn = store.add_connection("bq")
    grant = store.grant("reader", READER, conn.connection_id, user_id=me.user_id)
    cache = AccessCache(store, KEY)
    assert (await cache.plan_for(me.user_id, (), conn.connection_id)).visible("execute_sql")
    grant.revoked = True
    assert (await cache.plan_for(me.user_id, (), conn.connection_id)).visible("execute_sql")
    # A different group set is a different plan at once.
    assert not (await cache.plan_for(me.user_id, ("g",), conn.connection_id)).roles
    cache.invalidate()
    assert not (await cache.plan_for(me.user_id, (), conn.connection_id)).roles


async def test_cached_plan_never_outlives_a_grant(store: MemoryGatewayStore) -> None:
    me = store.add_user("ana")
    conn = store.add_connection("bq")
    store.grant("reader", READER, conn.connection_id, user_id=me.user_id,
                expires_at=time.time() + 0.2)
    cache = AccessCache(store, KEY)
    assert (await cache.plan_for(me.user_id, (), conn.connection_id)).roles
    await asyncio.sleep(0.3)
    assert not (await cache.plan_for(me.user_id, (), conn.connection_id)).roles


async def test_bad_role_rules_fail_closed(store: MemoryGatewayStore) -> None:
    me = store.add_user("ana")
    conn = store.add_connection("bq")
    store.grant("broken", {"tools": "*"}, conn.connection_id, user_id=me.user_id)
    with pytest.raises(ValueError):
        await AccessCache(store, KEY).plan_for(me.user_id, (), conn.connection_id)
