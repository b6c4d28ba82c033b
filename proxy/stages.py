"""The gateway's stages, in the order every request to /mcp/<connection-slug> meets them.

`default_stages()` is the order, in code; `run_stages()` runs it top to bottom. Each stage has
one job: it notes what it learns on the call (`Call`, and `CallContext` for the audit record)
and either passes on (None) or returns a `Verdict` that ends the call there, refused and
recorded. Then the handler for the request's method runs (`proxy.handlers.handler_for`):

  stage           job                                                   module
  1 authenticate  bearer JWT (OIDC) or personal token; disabled/          proxy.authenticate
                  quarantined identities refused (401)
  2 connection    the connection is known and not quarantined             proxy.directory
  3 token_scope   a personal token is scoped to this connection
  4 grant         the identity holds a grant here (its access plan)       proxy.access
  5 session       an MCP session serves only whoever opened it, until     proxy.live
                  it is closed or killed
  6 admission     within this identity's share of the gateway (429)       proxy.admission
  7 live          tracked while it runs, so a revocation cuts it off      proxy.live
  8 upstream      the upstream, with its credentials minted now           proxy.google_auth
  9 parse         (POST) one well-formed JSON-RPC message, or refused     proxy.jsonrpc

and then, in the handler of a data request (proxy.handlers.tool_call, .data_request):

  10 authorize    role -> connection -> tool; SQL parsed and checked;     proxy.authorize
                  catalogue pinned
  11 hold         calls a role marks as risky wait for a human approval   proxy.hold
  12 record       the decision, durably, before anything is forwarded     proxy.record
  13 forward      to the upstream over Streamable HTTP or stdio           proxy.handlers.relay
  14 mask         PII in the result, by SQL lineage and content detectors proxy.mask
  15 record       the outcome with the response exactly as it leaves,     proxy.record
                  then release it

Messages the gateway does not police (notifications, pings, progress, cancellation,
server-to-client requests other than sampling/elicitation) are relayed unchanged both ways.
Any internal error fails closed: the client gets an error, never unpoliced or unrecorded data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any, Protocol

from proxy import jsonrpc
from proxy.access import AccessCache
from proxy.admission import Admission, Refusal
from proxy.authenticate import Authenticator, AuthFailure
from proxy.call import Call
from proxy.context import CallContext
from proxy.directory import ConnectionDirectory, UpstreamSpec
from proxy.google_auth import GoogleTokenError
from proxy.live import LiveRegistry
from proxy.verdict import Verdict

# The handlers' half of the order (names as in the table above).
HANDLER_STEPS = ("authorize", "hold", "record", "forward", "mask", "record")


class Stage(Protocol):
    name: str

    async def __call__(self, call: Call) -> Verdict | None:
        """None: pass on to the next stage. A Verdict: the call ends here with it."""


class Authenticate:
    name = "authenticate"

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def __call__(self, call: Call) -> Verdict | None:
        ctx = call.ctx
        try:
            ctx.identity = await self.authenticator.authenticate(call.headers)
        except AuthFailure as exc:
            ctx.auth_method = exc.auth_method
            ctx.refused_owner = exc.owner
            if exc.token_id is not None:
                ctx.detail["token_id"] = exc.token_id
            challenge = (f'Bearer realm="wardgate", error="invalid_token", '
                         f'error_description="{exc.reason}"')
            return Verdict.refuse(401, exc.reason, exc.message,
                                  headers={"www-authenticate": challenge})
        ctx.auth_method = ctx.identity.auth_method
        return None


class Connection:
    name = "connection"

    def __init__(self, directory: ConnectionDirectory) -> None:
        self.directory = directory

    async def __call__(self, call: Call) -> Verdict | None:
        spec = await self.directory.get(call.ctx.connection_slug)
        if spec is None:
            return Verdict.refuse(404, "connection.unknown",
                                  f"Unknown connection {call.ctx.connection_slug!r}")
        if spec.quarantined:
            return Verdict.refuse(403, "connection.quarantined", "This connection is quarantined")
        call.spec = spec
        return None


class TokenScope:
    name = "token_scope"

    async def __call__(self, call: Call) -> Verdict | None:
        assert call.ctx.identity is not None and call.spec is not None
        scope_ids = call.ctx.identity.token_connections
        if scope_ids is not None and call.spec.connection_id not in scope_ids:
            return Verdict.refuse(403, "token.out_of_scope",
                                  "This token is not scoped to this connection")
        return None


class Grant:
    name = "grant"

    def __init__(self, access: AccessCache) -> None:
        self.access = access

    async def __call__(self, call: Call) -> Verdict | None:
        identity, spec = call.ctx.identity, call.spec
        assert identity is not None and spec is not None
        plan = await self.access.plan_for(identity.user_id, identity.groups, spec.connection_id)
        if not plan.roles:
            return Verdict.refuse(403, "access.no_grant", "You have no grant on this connection")
        call.plan = plan
        return None


class SessionBinding:
    name = "session"

    def __init__(self, live: LiveRegistry) -> None:
        self.live = live

    async def __call__(self, call: Call) -> Verdict | None:
        ctx, spec = call.ctx, call.spec
        if not ctx.mcp_session_id:
            return None
        assert ctx.identity is not None and spec is not None
        # A session belongs to whoever opened it, on the connection it was opened on; once
        # closed or killed (also by disabling its owner) it never serves again.
        owner = await self.live.session_owner(ctx.mcp_session_id)
        if owner is not None and (owner.user_id != ctx.identity.user_id
                                  or owner.connection_id != spec.connection_id):
            ctx.detail["session_owner_id"] = owner.user_id
            return Verdict.refuse(404, "session.not_yours", "Unknown MCP session: start a new one")
        if owner is not None and owner.over:
            return Verdict.refuse(404, "session.closed",
                                  "This MCP session was closed: start a new one")
        return None


class AdmissionControl:
    name = "admission"

    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    async def __call__(self, call: Call) -> Verdict | None:
        ctx, spec = call.ctx, call.spec
        assert ctx.identity is not None and spec is not None
        kind = "stream" if call.http_method == "GET" else "request"
        user = ctx.identity.user_id
        refusal = self.admission.enter(user, spec.connection_id, kind)
        if refusal is not None:
            return rate_limited(ctx, refusal)
        # Held until the call ends, whatever happens from here on.
        call.exits.callback(self.admission.leave, user, spec.connection_id, kind)
        self.admission.session_seen(ctx.mcp_session_id, user)
        return None


def rate_limited(ctx: CallContext, refusal: Refusal) -> Verdict:
    """A 429 that says when to retry (also noted for the audit record)."""
    ctx.detail["retry_after"] = refusal.retry_after
    return Verdict.refuse(429, refusal.reason, refusal.message,
                          headers={"retry-after": str(refusal.retry_after)})


class LiveTracking:
    name = "live"

    def __init__(self, live: LiveRegistry) -> None:
        self.live = live

    async def __call__(self, call: Call) -> Verdict | None:
        assert call.ctx.identity is not None and call.spec is not None
        call.exits.enter_context(self.live.track(call.ctx.identity, call.spec.connection_id,
                                                 call.ctx.mcp_session_id))
        return None


class UpstreamCredentials:
    name = "upstream"

    def __init__(self, upstream_for: Callable[[UpstreamSpec], Awaitable[Any]]) -> None:
        self.upstream_for = upstream_for

    async def __call__(self, call: Call) -> Verdict | None:
        assert call.spec is not None
        try:
            call.upstream = await self.upstream_for(call.spec)
        except GoogleTokenError as exc:
            return Verdict.refuse(502, "upstream.credentials_unavailable", exc.message,
                                  code=jsonrpc.GATEWAY_ERROR)
        return None


class Parse:
    name = "parse"

    async def __call__(self, call: Call) -> Verdict | None:
        if call.http_method in ("GET", "DELETE"):  # a stream, a session's end: no message
            return None
        ctx = call.ctx
        try:
            message, kind = jsonrpc.parse_message(call.body)
            jsonrpc.check_routing_headers(call.headers, message)
        except jsonrpc.BadMessage as exc:
            ctx.detail["body_bytes"] = len(call.body)
            ctx.jsonrpc_method = exc.method
            return Verdict.refuse(400, exc.reason, exc.message, code=exc.code)
        ctx.protocol_version = jsonrpc.protocol_version_of(call.headers, message)
        call.message, call.kind = message, kind
        if kind == "request":
            ctx.jsonrpc_method = message["method"]
            ctx.jsonrpc_id = message["id"]
        return None


def default_stages(
    *, authenticator: Authenticator, directory: ConnectionDirectory, access: AccessCache,
    live: LiveRegistry, admission: Admission,
    upstream_for: Callable[[UpstreamSpec], Awaitable[Any]],
) -> list[Stage]:
    """The stages every request meets, in order (the table in this module's docstring)."""
    return [
        Authenticate(authenticator),
        Connection(directory),
        TokenScope(),
        Grant(access),
        SessionBinding(live),
        AdmissionControl(admission),
        LiveTracking(live),
        UpstreamCredentials(upstream_for),
        Parse(),
    ]


async def run_stages(stages: Sequence[Stage], call: Call,
                     timers: Sequence[Callable[[float], None]] | None = None) -> Verdict | None:
    """Run the stages top to bottom; the first verdict ends the run and is returned.
    `timers`: one per stage, each told how long its stage took (proxy.metrics)."""
    if timers is None:
        for stage in stages:
            verdict = await stage(call)
            if verdict is not None:
                return verdict
        return None
    for stage, timer in zip(stages, timers, strict=True):
        started = perf_counter()
        verdict = await stage(call)
        timer(perf_counter() - started)
        if verdict is not None:
            return verdict
    return None
