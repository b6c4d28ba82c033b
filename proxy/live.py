"""Live calls and sessions in this gateway process, so access taken away anywhere cuts off
what is already open here: on every security revision change the process re-checks the
identities, tokens and sessions behind its open requests and streams, and cancels the ones
no longer allowed (the client sees its stream close), within one revision poll."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from proxy.context import Identity
from proxy.db import run_db
from proxy.store import AccessCutoffs, GatewayStore, SessionOwner
from proxy.ttl_cache import TtlCache

log = logging.getLogger("wardgate.gateway")
PROCESS = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(slots=True)
class LiveCall:
    task: asyncio.Task[object]
    identity: Identity
    connection_id: int
    session_key: str


class LiveRegistry:
    def __init__(self, store: GatewayStore) -> None:
        self.store = store
        self._calls: dict[int, LiveCall] = {}
        # Session owners seen by this process; forgotten whenever the revision moves (a
        # session closed or killed anywhere bumps it).
        self._owners: TtlCache[str, SessionOwner] = TtlCache(max_entries=50_000)

    def _open_session(self, key: str, identity: Identity, connection_id: int, source_ip: str,
                      user_agent: str) -> None:
        self.store.session_open(
            session_key=key, user_id=identity.user_id, connection_id=connection_id,
            auth_method=identity.auth_method, process=PROCESS, source_ip=source_ip[:64],
            user_agent=user_agent[:512])

    def _cutoffs(self, users: set[int], tokens: set[int], sessions: set[str],
                 connections: set[int]) -> AccessCutoffs:
        return self.store.access_cutoffs(user_ids=users, token_ids=tokens,
                                         session_keys=sessions, connection_ids=connections)

    async def session_owner(self, key: str) -> SessionOwner | None:
        """The owner of MCP session `key` (None: not opened through Wardgate)."""
        owner = self._owners.get(key)
        if owner is not None:
            return owner
        owner = await run_db(self.store.session_owner, key)
        if owner is not None:  # an unknown key is not remembered: it may be opened next
            self._owners.put(key, owner)
        return owner

    async def sessions_over(self, keys: set[str]) -> set[str]:
        """Those of `keys` that are closed or killed (so their subprocesses must go)."""
        return await run_db(self.store.sessions_over, keys) if keys else set()

    @contextmanager
    def track(self, identity: Identity, connection_id: int, session_key: str) -> Iterator[None]:
        task = asyncio.current_task()
        if task is None:
            yield
            return
        key = id(task)
        self._calls[key] = LiveCall(task, identity, connection_id, session_key)
        try:
            yield
        finally:
            self._calls.pop(key, None)

    async def session_opened(self, key: str, identity: Identity, connection_id: int,
                             source_ip: str, user_agent: str) -> None:
        await run_db(self._open_session, key, identity, connection_id, source_ip, user_agent)
        self._owners.pop(key)

    async def session_closed(self, key: str, reason: str) -> None:
        await run_db(self.store.sessions_close, {key}, reason)
        self._owners.pop(key)

    async def sweep(self) -> int:
        """Cancel live calls whose identity, token or session lost access; returns how many."""
        self._owners.clear()
        calls = list(self._calls.values())
        if not calls:
            return 0
        users = {c.identity.user_id for c in calls}
        tokens = {c.identity.token_id for c in calls if c.identity.token_id is not None}
        sessions = {c.session_key for c in calls if c.session_key}
        connections = {c.connection_id for c in calls}
        cutoffs = await run_db(self._cutoffs, users, tokens, sessions, connections)
        cut = [c for c in calls if c.identity.user_id in cutoffs.users
               or c.identity.token_id in cutoffs.tokens or c.session_key in cutoffs.sessions
               or c.connection_id in cutoffs.connections]
        for call in cut:
            call.task.cancel()
        closed = {c.session_key for c in cut if c.session_key}
        if closed:
            await run_db(self.store.sessions_close, closed,
                         "killed: access revoked or session killed")
        if cut:
            log.warning("cut off %d live call(s) after an access change", len(cut))
        return len(cut)
