"""One HTTP request to /mcp/<slug> on its way through the stages and to its handler: the
request as it came, what the stages resolved for it, and how to answer. What the gateway
learns for the audit record rides on `ctx` (proxy.context.CallContext)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from policy.roles import AccessPlan
from proxy.asgi_io import Receive, Send
from proxy.context import CallContext
from proxy.directory import UpstreamSpec


@dataclass(slots=True)
class Call:
    ctx: CallContext
    headers: dict[str, str]
    http_method: str  # POST, GET or DELETE
    body: bytes
    send: Send
    receive: Receive
    # What a stage holds until the call ends (admission slot, live-call tracking), released
    # in reverse order once the handler is done.
    exits: ExitStack = field(default_factory=ExitStack)
    spec: UpstreamSpec | None = None  # stage "connection"
    plan: AccessPlan | None = None  # stage "grant"
    upstream: Any = None  # stage "upstream": HttpUpstream or a stdio upstream
    message: dict[str, Any] | None = None  # stage "parse" (POST only)
    kind: str = ""  # stage "parse": request | notification | response
    tool_accepted: bool = False  # stage "authorize": the tool is in the accepted catalogue
    ok: bool = True  # False: the call failed closed (an internal error, the audit unavailable)

    @property
    def params(self) -> dict[str, Any]:
        return (self.message or {}).get("params") or {}
