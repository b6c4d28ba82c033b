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


def _killed_session_keys() -> set[str]:
    from portal.models import GatewaySession

    return set(GatewaySession.objects.exclude(kill_requested_at__isnull=True)
               .filter(closed_at__isnull=True).values_list("session_key", flat=True)) | set(
        GatewaySession.objects.filter(close_reason__startswith="killed")
        .values_list("session_key", flat=True))


class LiveRegistry:
    def __init__(self) -> None:
        self._calls: dict[int, LiveCall] = {}
        self.refused_sessions: set[str] = set()

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

    async def session_closed(self, key: str, reason: str) -> None:
        await run_db(_close_sessions, {key}, reason)

    async def sweep(self) -> int:
        """Cancel live calls whose identity, token or session lost access; returns how many."""
        self.refused_sessions = await run_db(_killed_session_keys)
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
            self.refused_sessions |= closed
            await run_db(_close_sessions, closed, "killed: access revoked or session killed")
        if cut:
            log.warning("cut off %d live call(s) after an access change", len(cut))
        return len(cut)
