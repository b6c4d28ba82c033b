"""Admission: no single identity can take the gateway from everyone else.

Per identity (in this process): at most so many requests in flight, GET streams open and MCP
sessions open (a session unused for a while no longer counts). Per connection: the upstream
pool has a fixed size, and each identity may hold at most its fair share of it: the pool
divided among the identities using it, and never more than half while one is alone (held
streams are not taken back, so an identity that took the whole pool while alone would lock out
whoever came next). Whatever is over a limit is refused at once with 429 and Retry-After, and recorded;
nothing waits for a slot, so a flood cannot turn into timeouts for other callers.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal

Kind = Literal["request", "stream"]


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    max_requests: int = 16
    max_streams: int = 4
    max_sessions: int = 16
    session_idle_seconds: float = 900.0
    stream_max_seconds: float = 3600.0
    upstream_pool_size: int = 64
    retry_after_seconds: int = 2
    body_timeout_seconds: float = 30.0



@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    message: str
    retry_after: int


class Admission:
    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._in_use: Counter[tuple[int, Kind]] = Counter()  # (user, kind) -> open
        self._pool: Counter[tuple[int, int]] = Counter()  # (connection, user) -> upstream slots
        self._pool_total: Counter[int] = Counter()  # connection -> upstream slots
        self._sessions: dict[str, tuple[int, float]] = {}  # session key -> (user, last seen)

    def enter(self, user_id: int, connection_id: int, kind: Kind) -> Refusal | None:
        """Take a slot for a request or stream, or say why not (then nothing is taken)."""
        cap = self.limits.max_requests if kind == "request" else self.limits.max_streams
        if self._in_use[(user_id, kind)] >= cap:
            what = "requests in flight" if kind == "request" else "open streams"
            return self._refusal(f"limit.{kind}s", f"Too many {what} for you (at most {cap})")
        pool = self.limits.upstream_pool_size
        if self._pool_total[connection_id] >= pool:
            return self._refusal("limit.connection_saturated",
                                 "This connection's upstream capacity is in use; try again")
        holders = {u for (c, u), n in self._pool.items() if c == connection_id and n > 0}
        share = max(1, pool // max(2, len(holders | {user_id})))
        if self._pool[(connection_id, user_id)] >= share:
            return self._refusal("limit.fair_share",
                                 f"You hold your fair share ({share}) of this connection's "
                                 f"upstream capacity")
        self._in_use[(user_id, kind)] += 1
        self._pool[(connection_id, user_id)] += 1
        self._pool_total[connection_id] += 1
        return None

    def leave(self, user_id: int, connection_id: int, kind: Kind) -> None:
        for counter, key in ((self._in_use, (user_id, kind)),
                             (self._pool, (connection_id, user_id)),
                             (self._pool_total, connection_id)):
            counter[key] -= 1  # type: ignore[index]
            if counter[key] <= 0:  # type: ignore[index]
                del counter[key]  # type: ignore[arg-type]

    # ------------------------------------------------------------------ sessions

    def session_refusal(self, user_id: int) -> Refusal | None:
        """Whether `user_id` may open one more MCP session."""
        self._expire_sessions()
        open_ = sum(1 for user, _ in self._sessions.values() if user == user_id)
        if open_ >= self.limits.max_sessions:
            return self._refusal("limit.sessions", f"Too many open MCP sessions for you (at most "
                                                   f"{self.limits.max_sessions}); close one first")
        return None

    def session_opened(self, key: str, user_id: int) -> None:
        self._sessions[key] = (user_id, time.monotonic())

    def session_seen(self, key: str, user_id: int) -> None:
        known = self._sessions.get(key)
        if known is not None and known[0] == user_id:
            self._sessions[key] = (user_id, time.monotonic())

    def session_closed(self, key: str) -> None:
        self._sessions.pop(key, None)

    def _expire_sessions(self) -> None:
        oldest = time.monotonic() - self.limits.session_idle_seconds
        for key in [k for k, (_, seen) in self._sessions.items() if seen < oldest]:
            del self._sessions[key]

    def _refusal(self, reason: str, message: str) -> Refusal:
        return Refusal(reason, message, self.limits.retry_after_seconds)
