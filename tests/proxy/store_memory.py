"""An in-memory `GatewayStore` for stage tests: plain dicts with the portal store's rules (deny
by default, first sighting wins, approvals used once), and a log of every call so a test can
tell whether a cache answered."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from proxy.store import (
    AccessCutoffs,
    AccessGrants,
    ConnectionRecord,
    GrantedRole,
    IdentityRefused,
    PersonalTokenRecord,
    SeenJob,
    SessionOwner,
    UserRecord,
    UserStanding,
)


@dataclass
class MemoryUser:
    user_id: int
    username: str
    groups: set[str] = field(default_factory=set)
    active: bool = True
    quarantined: bool = False


@dataclass
class MemoryToken:
    token_id: int
    user_id: int
    expires_at: float
    revoked: bool = False
    connection_ids: frozenset[int] = frozenset()
    last_used_at: float | None = None


@dataclass
class MemoryGrant:
    role: str
    connection_id: int
    user_id: int | None = None
    group: str | None = None
    expires_at: float | None = None
    revoked: bool = False


@dataclass
class MemoryApproval:
    approval_id: int
    user_id: int
    connection_id: int
    tool: str
    arguments_sha256: str
    policy_version: int
    status: str
    expires_at: float
    denials: list[str] = field(default_factory=list)
    decided_at: float = 0.0


@dataclass
class MemorySession:
    user_id: int
    connection_id: int
    auth_method: str
    process: str
    closed_reason: str | None = None
    kill_requested: bool = False


class MemoryGatewayStore:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.users: dict[int, MemoryUser] = {}
        self.tokens: dict[str, MemoryToken] = {}  # by token hash
        self.connections: dict[str, ConnectionRecord] = {}
        self.quarantined_connections: set[int] = set()
        self.roles: dict[str, Mapping[str, Any]] = {}
        self.grants: list[MemoryGrant] = []
        self.policy_version = 1
        self.oidc_subjects: dict[tuple[str, str], int] = {}
        self.catalog: dict[int, dict[tuple[str, str], tuple[str, dict[str, Any]]]] = {}
        self.approvals: dict[int, MemoryApproval] = {}
        self.sessions: dict[str, MemorySession] = {}
        self.revision = 0
        self.jobs: dict[tuple[int, str], SeenJob] = {}
        self._ids = itertools.count(1)

    # ----------------------------------------------------------------- test helpers

    def add_user(self, username: str, groups: Iterable[str] = (), **kwargs: Any) -> MemoryUser:
        user = MemoryUser(next(self._ids), username, set(groups), **kwargs)
        self.users[user.user_id] = user
        return user

    def add_token(self, token_hash: str, user: MemoryUser, *, expires_in: float = 3600.0,
                  **kwargs: Any) -> MemoryToken:
        token = MemoryToken(next(self._ids), user.user_id, time.time() + expires_in, **kwargs)
        self.tokens[token_hash] = token
        return token

    def add_connection(self, slug: str, **kwargs: Any) -> ConnectionRecord:
        record = ConnectionRecord(slug=slug, transport="http", url=f"http://upstream/{slug}",
                                  command=(), credentials={}, connection_id=next(self._ids),
                                  **kwargs)
        self.connections[slug] = record
        return record

    def grant(self, role: str, rules: Mapping[str, Any], connection_id: int,
              **kwargs: Any) -> MemoryGrant:
        self.roles[role] = rules
        grant = MemoryGrant(role, connection_id, **kwargs)
        self.grants.append(grant)
        return grant

    def decide(self, approval_id: int, status: str, note: str = "") -> None:
        approval = self.approvals[approval_id]
        approval.status = status
        approval.decided_at = time.time()
        if note:
            approval.denials.append(note)

    def _log(self, name: str) -> None:
        self.calls.append(name)

    # ----------------------------------------------------------------- identities

    def user_standing(self, user_id: int) -> UserStanding:
        self._log("user_standing")
        user = self.users.get(user_id)
        return UserStanding(active=user is not None and user.active,
                            quarantined=user is not None and user.quarantined)

    def _record(self, user: MemoryUser) -> UserRecord:
        return UserRecord(user.user_id, user.username, tuple(sorted(user.groups)))

    def personal_token_find(self, token_hash: str) -> PersonalTokenRecord | None:
        self._log("personal_token_find")
        token = self.tokens.get(token_hash)
        if token is None:
            return None
        user = self.users[token.user_id]
        return PersonalTokenRecord(token.token_id, user.user_id, user.username,
                                   tuple(sorted(user.groups)), token.connection_ids,
                                   token.revoked, token.expires_at)

    def personal_token_mark_used(self, token_id: int) -> None:
        self._log("personal_token_mark_used")
        for token in self.tokens.values():
            if token.token_id == token_id:
                token.last_used_at = time.time()

    def oidc_identity_resolve(self, *, issuer: str, subject: str, username_hint: str,
                              email: str, claims: Mapping[str, Any],
                              raw_groups: Iterable[Any]) -> UserRecord:
        self._log("oidc_identity_resolve")
        if not subject or len(subject) > 255:
            raise IdentityRefused("the subject must be 1 to 255 characters")
        user_id = self.oidc_subjects.get((issuer, subject))
        if user_id is None:
            user = self.add_user(f"{username_hint}-{len(self.oidc_subjects)}")
            self.oidc_subjects[(issuer, subject)] = user.user_id
        else:
            user = self.users[user_id]
        user.groups = {g for g in raw_groups if isinstance(g, str)}
        return self._record(user)

    # ----------------------------------------------------------------- connections

    def connection_find(self, slug: str) -> ConnectionRecord | None:
        self._log("connection_find")
        record = self.connections.get(slug)
        if record is None:
            return None
        if record.connection_id in self.quarantined_connections:
            return replace(record, quarantined=True)
        return record

    # ----------------------------------------------------------------- grants

    def access_grants(self, user_id: int, groups: tuple[str, ...],
                      connection_id: int) -> AccessGrants:
        self._log("access_grants")
        now = time.time()
        names: set[str] = set()
        valid_until = float("inf")
        for g in self.grants:
            if g.revoked or g.connection_id != connection_id:
                continue
            if g.expires_at is not None and g.expires_at <= now:
                continue
            if g.user_id != user_id and (g.group is None or g.group not in groups):
                continue
            names.add(g.role)
            if g.expires_at is not None:
                valid_until = min(valid_until, g.expires_at)
        return AccessGrants(tuple(GrantedRole(n, self.roles[n]) for n in sorted(names)),
                            valid_until, self.policy_version)

    # ----------------------------------------------------------------- tool catalogue

    def tools_accepted(self, connection_id: int) -> dict[str, str]:
        self._log("tools_accepted")
        return {name: digest
                for (name, digest), (status, _) in self.catalog.get(connection_id, {}).items()
                if status == "accepted"}

    def tool_accepted_schema(self, connection_id: int, name: str) -> dict[str, Any] | None:
        self._log("tool_accepted_schema")
        for (n, _), (status, tool) in self.catalog.get(connection_id, {}).items():
            if n == name and status == "accepted":
                return tool.get("inputSchema") or {}
        return None

    def tool_versions_add(self, connection_id: int,
                          tools: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
        self._log("tool_versions_add")
        entries = self.catalog.setdefault(connection_id, {})
        new = []
        for name, digest, tool in tools:
            if (name, digest) not in entries:
                entries[(name, digest)] = ("pending", tool)
                new.append(name)
        return new

    def accept_tool(self, connection_id: int, name: str, digest: str,
                    tool: dict[str, Any]) -> None:
        entries = self.catalog.setdefault(connection_id, {})
        for key, (status, old) in list(entries.items()):
            if key[0] == name and status == "accepted":
                entries[key] = ("superseded", old)
        entries[(name, digest)] = ("accepted", tool)

    # ----------------------------------------------------------------- approvals

    def _same_call(self, a: MemoryApproval, user_id: int, connection_id: int, tool: str,
                   arguments_sha256: str, policy_version: int) -> bool:
        return (a.user_id, a.connection_id, a.tool, a.arguments_sha256, a.policy_version) == (
            user_id, connection_id, tool, arguments_sha256, policy_version)

    def approval_consume_usable(self, *, user_id: int, username: str, connection_id: int,
                                tool: str, arguments_sha256: str, policy_version: int,
                                request_id: str) -> int | None:
        self._log("approval_consume_usable")
        now = time.time()
        for a in sorted(self.approvals.values(), key=lambda a: a.approval_id):
            if (self._same_call(a, user_id, connection_id, tool, arguments_sha256,
                                policy_version)
                    and a.status == "approved" and a.expires_at > now):
                a.status = "consumed"
                return a.approval_id
        return None

    def approval_propose(self, *, user_id: int, username: str, connection_id: int,
                         connection_slug: str, tool: str, arguments: Any,
                         arguments_sha256: str, policy_version: int, sql_text: str,
                         bytes_estimate: int | None, rule: str, reason: str,
                         approver_groups: list[str], required_approvals: int,
                         request_id: str, ttl: dt.timedelta) -> tuple[int, bool]:
        self._log("approval_propose")
        now = time.time()
        for a in self.approvals.values():
            if (self._same_call(a, user_id, connection_id, tool, arguments_sha256,
                                policy_version)
                    and a.status == "pending" and a.expires_at > now):
                return a.approval_id, False
        approval = MemoryApproval(next(self._ids), user_id, connection_id, tool,
                                  arguments_sha256, policy_version, "pending",
                                  now + ttl.total_seconds())
        self.approvals[approval.approval_id] = approval
        return approval.approval_id, True

    def approval_status(self, approval_id: int) -> str | None:
        self._log("approval_status")
        a = self.approvals.get(approval_id)
        if a is None:
            return None
        if a.status == "pending" and a.expires_at <= time.time():
            return "expired"
        return a.status

    def approval_denial_note(self, approval_id: int) -> str:
        self._log("approval_denial_note")
        return "; ".join(self.approvals[approval_id].denials)

    def approval_last_denial(self, *, user_id: int, connection_id: int, tool: str,
                             arguments_sha256: str, policy_version: int) -> str:
        self._log("approval_last_denial")
        denied = [a for a in self.approvals.values() if a.status == "denied" and self._same_call(
            a, user_id, connection_id, tool, arguments_sha256, policy_version)]
        if not denied:
            return ""
        last = max(denied, key=lambda a: (a.decided_at, a.approval_id))
        return f"#{last.approval_id} {self.approval_denial_note(last.approval_id)}"

    # ----------------------------------------------------------------- sessions

    def session_open(self, *, session_key: str, user_id: int, connection_id: int,
                     auth_method: str, process: str, source_ip: str, user_agent: str) -> None:
        self._log("session_open")
        self.sessions.setdefault(session_key,
                                 MemorySession(user_id, connection_id, auth_method, process))

    def sessions_close(self, session_keys: set[str], reason: str) -> None:
        self._log("sessions_close")
        for key in session_keys:
            session = self.sessions.get(key)
            if session is not None and session.closed_reason is None:
                session.closed_reason = reason

    def session_owner(self, session_key: str) -> SessionOwner | None:
        self._log("session_owner")
        s = self.sessions.get(session_key)
        if s is None:
            return None
        return SessionOwner(s.user_id, s.connection_id,
                            s.closed_reason is not None or s.kill_requested)

    def sessions_over(self, session_keys: set[str]) -> set[str]:
        self._log("sessions_over")
        return {k for k in session_keys if k in self.sessions
                and (self.sessions[k].closed_reason is not None or self.sessions[k].kill_requested)}

    def access_cutoffs(self, *, user_ids: set[int], token_ids: set[int],
                       session_keys: set[str], connection_ids: set[int]) -> AccessCutoffs:
        self._log("access_cutoffs")
        now = time.time()
        live_tokens = {t.token_id for t in self.tokens.values()
                       if not t.revoked and t.expires_at > now}
        return AccessCutoffs(
            users=frozenset(u for u in user_ids if u not in self.users
                            or not self.users[u].active or self.users[u].quarantined),
            tokens=frozenset(token_ids - live_tokens),
            sessions=frozenset(self.sessions_over(session_keys)),
            connections=frozenset(connection_ids & self.quarantined_connections),
        )

    # ----------------------------------------------------------------- invalidation

    def security_revision(self) -> int:
        self._log("security_revision")
        return self.revision

    # ----------------------------------------------------------------- upstream jobs

    def job_remember(self, *, connection_id: int, job_id: str, user_id: int, tool: str,
                     statement: str, fingerprint: str, tables: list[str],
                     column_plan: dict[str, Any], role: str, policy_version: int,
                     request_id: str) -> bool:
        self._log("job_remember")
        if (connection_id, job_id) in self.jobs:
            return False
        self.jobs[(connection_id, job_id)] = SeenJob(job_id, user_id, tool, statement,
                                                     request_id, policy_version)
        return True

    def job_find(self, connection_id: int, job_id: str) -> SeenJob | None:
        self._log("job_find")
        return self.jobs.get((connection_id, job_id))
