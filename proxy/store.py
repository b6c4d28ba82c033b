"""What the gateway reads and writes outside itself: the `GatewayStore` interface.

The gateway depends on this protocol, never on the portal: the portal implements it in one
module (`portal.gateway_store`) and the application hands it to the gateway at start-up; tests
use an in-memory implementation (`tests.proxy.store_memory`). Every answer is a frozen
dataclass or plain data, so no database row crosses into the gateway.

The methods block (the portal's run the ORM): the gateway calls them in a worker thread
(`proxy.db.run_db`), only on cache misses and writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class IdentityRefused(Exception):
    """An external identity that cannot be used (e.g. its subject is taken); the message says
    why."""


@dataclass(frozen=True, slots=True)
class UserStanding:
    active: bool
    quarantined: bool


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: int
    username: str
    groups: tuple[str, ...]  # sorted


@dataclass(frozen=True, slots=True)
class PersonalTokenRecord:
    token_id: int
    user_id: int
    username: str
    groups: tuple[str, ...]  # the owner's, sorted
    connection_ids: frozenset[int]  # the connections the token is scoped to
    revoked: bool
    expires_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """An enabled connection as stored (its column classes not yet compiled)."""

    slug: str
    transport: str
    url: str
    command: tuple[str, ...]
    credentials: dict = field(hash=False, compare=False, repr=False)
    sql_tools: dict = field(default_factory=dict, hash=False, compare=False)
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
    column_classes: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class GrantedRole:
    name: str
    rules: Mapping[str, Any] = field(hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class AccessGrants:
    """The roles an identity holds on a connection through live grants (by name, each once),
    until when that holds (the earliest grant expiry, epoch seconds) and the policy version."""

    roles: tuple[GrantedRole, ...]
    valid_until: float
    policy_version: int


@dataclass(frozen=True, slots=True)
class SessionOwner:
    """Who opened an MCP session, where, and whether it is over (closed or kill requested)."""

    user_id: int
    connection_id: int
    over: bool


@dataclass(frozen=True, slots=True)
class AccessCutoffs:
    """Among those asked about: users disabled or quarantined, tokens revoked or expired,
    sessions closed or killed, connections quarantined."""

    users: frozenset[int]
    tokens: frozenset[int]
    sessions: frozenset[str]
    connections: frozenset[int]


@dataclass(frozen=True, slots=True)
class SeenJob:
    job_id: str
    user_id: int
    tool: str
    statement: str
    request_id: str
    policy_version: int


class GatewayStore(Protocol):
    # -- identities (proxy.authenticate)
    def user_standing(self, user_id: int) -> UserStanding: ...

    def personal_token_find(self, token_hash: str) -> PersonalTokenRecord | None:
        """The token with this SHA-256 (hex), revoked or expired ones included."""

    def personal_token_mark_used(self, token_id: int) -> None: ...

    def oidc_identity_resolve(self, *, issuer: str, subject: str, username_hint: str,
                              email: str, claims: Mapping[str, Any],
                              raw_groups: Iterable[Any]) -> UserRecord:
        """The account of a verified OIDC identity (issuer + subject), created on first sight,
        groups synced; raises IdentityRefused."""

    # -- connections (proxy.directory)
    def connection_find(self, slug: str) -> ConnectionRecord | None:
        """The enabled connection `slug`, or None."""

    # -- grants (proxy.access)
    def access_grants(self, user_id: int, groups: tuple[str, ...],
                      connection_id: int) -> AccessGrants: ...

    # -- tool catalogue (proxy.tool_catalog)
    def tools_accepted(self, connection_id: int) -> dict[str, str]:
        """Accepted tool versions: name -> digest."""

    def tool_accepted_schema(self, connection_id: int, name: str) -> dict[str, Any] | None: ...

    def tool_versions_add(self, connection_id: int,
                          tools: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
        """Store unseen (name, digest, tool) versions as pending; the names that were new."""

    # -- approvals (proxy.hold)
    def approval_consume_usable(self, *, user_id: int, username: str, connection_id: int,
                                tool: str, arguments_sha256: str, policy_version: int,
                                request_id: str) -> int | None:
        """An approved, unexpired approval of this exact call, consumed now (once); its id."""

    def approval_propose(self, *, user_id: int, username: str, connection_id: int,
                         connection_slug: str, tool: str, arguments: Any,
                         arguments_sha256: str, policy_version: int, sql_text: str,
                         bytes_estimate: int | None, rule: str, reason: str,
                         approver_groups: list[str], required_approvals: int,
                         request_id: str, ttl: dt.timedelta) -> tuple[int, bool]:
        """The pending approval of this exact call, created if there is none: (id, created)."""

    def approval_status(self, approval_id: int) -> str | None: ...

    def approval_denial_note(self, approval_id: int) -> str: ...

    def approval_last_denial(self, *, user_id: int, connection_id: int, tool: str,
                             arguments_sha256: str, policy_version: int) -> str: ...

    # -- sessions and live calls (proxy.live)
    def session_open(self, *, session_key: str, user_id: int, connection_id: int,
                     auth_method: str, process: str, source_ip: str, user_agent: str) -> None: ...

    def sessions_close(self, session_keys: set[str], reason: str) -> None: ...

    def session_owner(self, session_key: str) -> SessionOwner | None: ...

    def sessions_over(self, session_keys: set[str]) -> set[str]:
        """Those of the sessions that are closed or have a kill requested."""

    def access_cutoffs(self, *, user_ids: set[int], token_ids: set[int],
                       session_keys: set[str], connection_ids: set[int]) -> AccessCutoffs: ...

    # -- invalidation (proxy.invalidation)
    def security_revision(self) -> int: ...

    # -- upstream jobs (proxy.jobs)
    def job_remember(self, *, connection_id: int, job_id: str, user_id: int, tool: str,
                     statement: str, fingerprint: str, tables: list[str],
                     column_plan: dict[str, Any], role: str, policy_version: int,
                     request_id: str) -> bool:
        """Store a job seen created (the first sighting wins); True if it was new."""

    def job_find(self, connection_id: int, job_id: str) -> SeenJob | None: ...
