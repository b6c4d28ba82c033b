"""What one MCP request carries through the pipeline; each stage adds what it learns and the
record stage writes it all down. Outcomes arrive as a `proxy.verdict.Verdict` (`settle`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from proxy.verdict import Reason, Verdict


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: int
    username: str
    groups: tuple[str, ...]
    auth_method: str  # "oidc" | "personal_token"
    token_id: int | None = None
    # Connections a personal token is scoped to; None = not narrowed (OIDC: grants decide).
    token_connections: frozenset[int] | None = None


@dataclass(slots=True)
class SqlFacts:
    text: str
    fingerprint: str = ""
    tables: tuple[str, ...] = ()
    statement_classes: tuple[str, ...] = ()
    bytes_processed: int | None = None


@dataclass(slots=True)
class CallContext:
    connection_slug: str
    source_ip: str
    user_agent: str
    mcp_session_id: str
    protocol_version: str
    # scheme://host the request came in at (Host checked against the allowed hosts).
    request_base: str = ""
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    identity: Identity | None = None
    # The owner of a known credential that was refused (revoked, expired, disabled account).
    refused_owner: str = ""
    auth_method: str = "none"
    jsonrpc_method: str = ""
    jsonrpc_id: Any = None
    tool: str = ""
    arguments: Any = None
    sql: SqlFacts | None = None
    decision: str = ""
    reasons: list[dict[str, str]] = field(default_factory=list)
    role: str = ""
    masking: list[dict[str, Any]] = field(default_factory=list)
    row_count: int | None = None
    result_bytes: int | None = None
    response_body: str = ""
    response_sha256: str = ""
    upstream_latency_ms: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # How error texts of this call leave (proxy.error_texts.ErrorTextPolicy); None: detected
    # with the strictest policy.
    error_texts: Any = None

    @property
    def actor(self) -> str:
        return self.identity.username if self.identity else self.refused_owner

    def settle(self, verdict: Verdict) -> None:
        """The one place an outcome is written onto the call (and so into its audit record)."""
        self.decision = verdict.decision
        self.reasons = verdict.reason_dicts()

    def deny(self, reasons: Iterable[Reason]) -> None:
        """settle(Verdict.deny(...)), for callers outside the pipeline (reports.synthetic)."""
        self.settle(Verdict.deny(*reasons))
