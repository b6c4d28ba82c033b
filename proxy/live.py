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

log = logging.getLogger("wardgate.gateway")
PROCESS = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(slots=True)
class LiveCall:
    task: asyncio.Task[object]
    identity: Identity
    connection_id: int
    session_key: str


def _still_allowed(user_ids: set[int], token_ids: set[int], session_keys: set[str],
                   connection_ids: set[int]) -> tuple[set[int], set[int], set[str], set[int]]:
    """(users cut off, tokens cut off, sessions killed, connections quarantined) among those
    given."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from portal.models import GatewaySession, PersonalToken, Quarantine

    active = set(get_user_model().objects.filter(pk__in=user_ids, is_active=True)
                 .values_list("pk", flat=True))
    quarantined = set(Quarantine.objects.filter(user_id__in=user_ids, lifted_at__isnull=True)
                      .values_list("user_id", flat=True))
    bad_users = (user_ids - active) | quarantined
    live_tokens = set(PersonalToken.objects.filter(
        pk__in=token_ids, revoked_at__isnull=True, expires_at__gt=timezone.now())
        .values_list("pk", flat=True))
    killed = set(GatewaySession.objects.filter(session_key__in=session_keys)
                 .exclude(kill_requested_at__isnull=True, closed_at__isnull=True)
                 .values_list("session_key", flat=True))
    bad_connections = set(Quarantine.objects.filter(
        connection_id__in=connection_ids, lifted_at__isnull=True).values_list("connection_id",
                                                                               flat=True))
    return bad_users, token_ids - live_tokens, killed, bad_connections


def _close_sessions(keys: set[str], reason: str) -> None:
    from django.utils import timezone

    from portal.models import GatewaySession

    GatewaySession.objects.filter(session_key__in=keys, closed_at__isnull=True).update(
        closed_at=timezone.now(), close_reason=reason)


def _open_session(key: str, identity: Identity, connection_id: int, source_ip: str,
                  user_agent: str) -> None:
    from portal.models import GatewaySession

    GatewaySession.objects.get_or_create(session_key=key, defaults=dict(
        user_id=identity.user_id, connection_id=connection_id, auth_method=identity.auth_method,
        process=PROCESS, source_ip=source_ip[:64], user_agent=user_agent[:512]))


@dataclass(frozen=True, slots=True)
class SessionOwner:
    """Who opened an MCP session, where, and whether it is over (closed or kill requested)."""

    user_id: int
    connection_id: int
    over: bool


def _session_owner(key: str) -> SessionOwner | None:
    from portal.models import GatewaySession

    row = (GatewaySession.objects.filter(session_key=key)
           .values_list("user_id", "connection_id", "closed_at", "kill_requested_at").first())
    if row is None:
        return None
    return SessionOwner(row[0], row[1], row[2] is not None or row[3] is not None)


def _sessions_over(keys: set[str]) -> set[str]:
    from portal.models import GatewaySession

    return set(GatewaySession.objects.filter(session_key__in=keys)
               .exclude(kill_requested_at__isnull=True, closed_at__isnull=True)
               .values_list("session_key", flat=True))


class LiveRegistry:
    def __init__(self) -> None:
        self._calls: dict[int, LiveCall] = {}
        # Session owners seen by this process; forgotten whenever the revision moves (a
        # session closed or killed anywhere bumps it).
        self._owners: dict[str, SessionOwner | None] = {}

    async def session_owner(self, key: str) -> SessionOwner | None:
        """The owner of MCP session `key` (None: not opened through Wardgate)."""
        if key in self._owners:
            return self._owners[key]
        owner = await run_db(_session_owner, key)
        if owner is not None:  # an unknown key is not remembered: it may be opened next
            if len(self._owners) > 50_000:
                self._owners.clear()
            self._owners[key] = owner
        return owner

    async def sessions_over(self, keys: set[str]) -> set[str]:
        """Those of `keys` that are closed or killed (so their subprocesses must go)."""
        return await run_db(_sessions_over, keys) if keys else set()

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
        await run_db(_open_session, key, identity, connection_id, source_ip, user_agent)
        self._owners.pop(key, None)

    async def session_closed(self, key: str, reason: str) -> None:
        await run_db(_close_sessions, {key}, reason)
        self._owners.pop(key, None)

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
        bad_users, bad_tokens, killed, bad_connections = await run_db(
            _still_allowed, users, tokens, sessions, connections)
        cut = [c for c in calls if c.identity.user_id in bad_users
               or c.identity.token_id in bad_tokens or c.session_key in killed
               or c.connection_id in bad_connections]
        for call in cut:
            call.task.cancel()
        closed = {c.session_key for c in cut if c.session_key}
        if closed:
            await run_db(_close_sessions, closed, "killed: access revoked or session killed")
        if cut:
            log.warning("cut off %d live call(s) after an access change", len(cut))
        return len(cut)
