"""Stage live: a revision change cuts off open calls that lost access, and only those."""

from __future__ import annotations

import asyncio

import pytest

from proxy.context import Identity
from proxy.live import PROCESS, LiveRegistry
from tests.proxy.store_memory import MemoryGatewayStore


def _identity(user_id: int, token_id: int | None = None) -> Identity:
    return Identity(user_id=user_id, username=f"u{user_id}", groups=(),
                    auth_method="personal_token" if token_id else "oidc", token_id=token_id)


@pytest.mark.parametrize("change", [
    "none", "disable", "quarantine_user", "revoke_token", "expire_token", "kill_session",
    "quarantine_connection", "delete_user",
])
async def test_sweep_cuts_off_what_lost_access(store: MemoryGatewayStore, change: str) -> None:
    user = store.add_user("ana")
    bystander = store.add_user("bo")
    token = store.add_token("h", user)
    conn = store.add_connection("bq")
    live = LiveRegistry(store)
    await live.session_opened("s1", _identity(user.user_id, token.token_id), conn.connection_id,
                              "127.0.0.1", "agent")
    started = asyncio.Event()

    async def call(identity: Identity, session: str) -> None:
        with live.track(identity, conn.connection_id, session):
            started.set()
            await asyncio.sleep(30)

    victim = asyncio.create_task(call(_identity(user.user_id, token.token_id), "s1"))
    await started.wait()
    started.clear()
    other = asyncio.create_task(call(_identity(bystander.user_id), ""))
    await started.wait()
    if change == "disable":
        user.active = False
    elif change == "quarantine_user":
        user.quarantined = True
    elif change == "revoke_token":
        token.revoked = True
    elif change == "expire_token":
        token.expires_at = 0
    elif change == "kill_session":
        store.sessions["s1"].kill_requested = True
    elif change == "quarantine_connection":
        store.quarantined_connections.add(conn.connection_id)
    elif change == "delete_user":
        del store.users[user.user_id]
    cut = await live.sweep()
    await asyncio.sleep(0)
    try:
        if change == "none":
            assert cut == 0 and not victim.done()
            assert store.sessions["s1"].closed_reason is None
        elif change == "quarantine_connection":
            assert cut == 2 and victim.cancelled()  # everyone on the connection
        else:
            assert cut == 1 and victim.cancelled() and not other.done()
            assert store.sessions["s1"].closed_reason == "killed: access revoked or session killed"
    finally:
        victim.cancel()
        other.cancel()
        await asyncio.gather(victim, other, return_exceptions=True)


async def test_sweep_with_nothing_open_asks_nothing(store: MemoryGatewayStore) -> None:
    assert await LiveRegistry(store).sweep() == 0
    assert "access_cutoffs" not in store.calls


async def test_session_owner_cache(store: MemoryGatewayStore) -> None:
    user = store.add_user("ana")
    live = LiveRegistry(store)
    assert await live.session_owner("s1") is None  # unknown: not remembered
    await live.session_opened("s1", _identity(user.user_id), 9, "10.0.0.1" * 20, "a" * 1000)
    assert store.sessions["s1"].process == PROCESS
    owner = await live.session_owner("s1")
    assert (owner.user_id, owner.connection_id, owner.over) == (user.user_id, 9, False)
    await live.session_owner("s1")
    assert store.calls.count("session_owner") == 2  # the second lookup came from the cache
    await live.session_closed("s1", "closed by the client")
    assert (await live.session_owner("s1")).over
    assert await live.sessions_over({"s1", "s2"}) == {"s1"}
    assert await live.sessions_over(set()) == set()
