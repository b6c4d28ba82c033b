"""What the gateway decided about one call, as a value: the decision and its typed reasons.

Stages and handlers return a Verdict instead of writing outcomes onto the call context here
and there; `CallContext.settle` is the one place a verdict becomes what the audit record says.
A verdict from a stage before the call is parsed also says how the refusal leaves (HTTP status,
JSON-RPC code, extra headers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from policy.sql_policy import Reason
from proxy.jsonrpc import POLICY_DENIED

__all__ = ["Outcome", "Reason", "Verdict"]

# allow: forwarded; deny: refused by policy; hold: waiting for an approval; error: the gateway
# or the upstream failed; withheld: a result that could not be masked safely; cancelled: the
# client left or access was revoked mid-call; info: a note, not a decision (catalogue changes).
Outcome = Literal["allow", "deny", "hold", "error", "withheld", "cancelled", "info"]


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Outcome
    reasons: tuple[Reason, ...] = ()
    # For a refusal answered before any handler runs (stages): how it leaves.
    status: int = 403
    code: int = POLICY_DENIED
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def allow(cls) -> Verdict:
        return cls("allow")

    @classmethod
    def deny(cls, *reasons: Reason) -> Verdict:
        return cls("deny", reasons)

    @classmethod
    def refuse(cls, status: int, rule: str, message: str, *, code: int = POLICY_DENIED,
               headers: Mapping[str, str] | None = None) -> Verdict:
        """A denial that is answered as an HTTP error (stages, parse, rate limits)."""
        return cls("deny", (Reason(rule, message),), status, code,
                   MappingProxyType(dict(headers or {})))

    @classmethod
    def of(cls, decision: Outcome, rule: str, message: str) -> Verdict:
        """A verdict with one reason (error, hold, withheld, cancelled)."""
        return cls(decision, (Reason(rule, message),))

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    @property
    def reason(self) -> Reason:
        """The first (for a refusal: the only) reason."""
        return self.reasons[0]

    def reason_dicts(self) -> list[dict[str, str]]:
        """The reasons as recorded and as clients see them: keys without a value left out."""
        return [{k: v for k, v in r.as_dict().items() if v is not None} for r in self.reasons]
