"""The data path, in order. Every MCP request at /mcp/<connection-slug> goes through:

  1. authenticate   bearer JWT (OIDC) or personal token; disabled/quarantined refused
                    (proxy.authenticate)
  2. connection     known, enabled, not quarantined; token scoped to it (proxy.directory)
  3. parse          one well-formed JSON-RPC message; bad input refused and recorded
  4. authorize      role -> connection -> tool; SQL parsed and checked; catalogue pinned
                    (proxy.authorize, proxy.tool_catalog)
  5. hold           calls a role marks as risky wait for a human approval (proxy.hold)
  6. record         the decision, durably, before anything is forwarded (proxy.record)
  7. forward        to the upstream over Streamable HTTP or stdio (proxy.transports)
  8. mask           PII in the result, by SQL lineage and content detectors (proxy.mask)
  9. record         the outcome with the response exactly as it leaves, then release it

Messages the gateway does not police (notifications, pings, progress, cancellation,
server-to-client requests other than sampling/elicitation) are relayed unchanged both ways.
Any internal error fails closed: the client gets an error, never unpoliced or unrecorded data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from django.db import DatabaseError
from mcp.shared.inbound import decode_header_value, validate_mcp_param_headers

from audit.writer import AuditWriter
from policy.masking import MaskingPolicy
from policy.roles import NO_ACCESS, AccessPlan
from policy.sql_policy import Reason
from proxy.access import AccessCache
from proxy.admission import Admission, Refusal
from proxy.asgi_io import Receive, Scope, Send, send_bytes, send_json, start_stream, stream_chunk
from proxy.authenticate import Authenticator, AuthFailure
from proxy.authorize import Decision, SqlToolContext, authorize_tool_call, deny
from proxy.bigquery_facts import BigQueryFacts
from proxy.config import GatewayConfig
from proxy.context import CallContext
from proxy.directory import ConnectionDirectory, UpstreamSpec
from proxy.error_texts import ErrorTextPolicy
from proxy.google_auth import (
    STDIO_TOKEN_ENV,
    GoogleTokenError,
    GoogleTokenSource,
    google_auth_config,
)
from proxy.hold import (
    HoldBinding,
    binding_for,
    denial_note,
    last_denial,
    propose,
    use_existing_approval,
    wait_for_decision,
)
from proxy.invalidation import RevisionWatcher
from proxy.jobs import STATEMENT_ARGUMENT, job_id_of, job_info_public, job_lookup, job_remember
from proxy.live import LiveRegistry
from proxy.mask import UnmaskableResult, mask_call_result
from proxy.metadata_tools import MetadataTool, filter_table_listing
from proxy.presets import sql_tool_spec
from proxy.record import Recorder, RecordFailed
from proxy.sql_worker import default_sql_workers
from proxy.sse import SseEvent
from proxy.store import GatewayStore
from proxy.tool_catalog import ToolCatalog
from proxy.transports.http import HttpUpstream, UpstreamError, UpstreamResponse, new_session
from proxy.transports.stdio import StdioCommand, StdioSessionPool

log = logging.getLogger("wardgate.gateway")

POLICY_DENIED = -32001
GATEWAY_ERROR = -32603
# Requests whose results carry data: a decision record before forwarding, an outcome after.
DATA_METHODS = {"tools/call", "resources/read", "prompts/get"}
# Server-to-client requests that need the connection's permission to reach the client.
GUARDED_SERVER_REQUESTS = {"sampling/createMessage": "allow_sampling",
                           "elicitation/create": "allow_elicitation"}


class BadMessage(Exception):
    def __init__(self, reason: str, message: str, code: int = -32600, method: str = "") -> None:
        super().__init__(message)
        self.reason, self.message, self.code, self.method = reason, message, code, method


def rpc_error(id_: Any, code: int, message: str, data: dict[str, Any] | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if data:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": error}


def parse_message(body: bytes) -> tuple[dict[str, Any], str]:
    """One JSON-RPC 2.0 message and its kind: request, notification or response."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadMessage("request.malformed_json", "Parse error: the body is not JSON",
                         -32700) from None
    except RecursionError:  # e.g. 100,000 nested arrays: refused, never a crash
        raise BadMessage("request.too_deep", "Parse error: the body is nested too deeply",
                         -32700) from None
    if isinstance(message, list):
        raise BadMessage("request.batch", "JSON-RPC batches are not accepted; send one message")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise BadMessage("request.not_jsonrpc", "Invalid Request: not a JSON-RPC 2.0 message")
    has_id = "id" in message
    id_ = message.get("id")
    if has_id and (isinstance(id_, bool) or not isinstance(id_, str | int)):
        raise BadMessage("request.bad_id", "Invalid Request: id must be a string or integer")
    if "method" in message:
        if not isinstance(message["method"], str) or not message["method"]:
            raise BadMessage("request.bad_method", "Invalid Request: method must be a string")
        if "params" in message and not isinstance(message["params"], dict):
            raise BadMessage("request.bad_params", "Invalid Request: params must be an object")
        if not has_id and not message["method"].startswith("notifications/"):
            # A request sent without an id would be answered by nobody and policed by nothing
            # (e.g. tools/call as a "notification"): refused.
            raise BadMessage("request.missing_id",
                             f"Invalid Request: {message['method'][:100]!r} needs an id; only "
                             "notifications/* may be sent without one",
                             method=message["method"][:100])
        return message, ("request" if has_id else "notification")
    if has_id and ("result" in message or "error" in message):
        return message, "response"
    raise BadMessage("request.not_jsonrpc", "Invalid Request: neither a request nor a response")


def protocol_version_of(headers: dict[str, str], message: dict[str, Any] | None) -> str:
    version = headers.get("mcp-protocol-version", "")
    if not version and message is not None:
        meta = (message.get("params") or {}).get("_meta") or {}
        if isinstance(meta, dict):
            version = str(meta.get("io.modelcontextprotocol/protocolVersion") or "")
    return version[:32]


def tool_error_result(ctx: CallContext, text: str, data: dict[str, Any]) -> dict[str, Any]:
    """A CallToolResult with isError, so the model sees why (the MCP way to report tool
    failures); shaped for the protocol revision the client speaks."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True,
                              "_meta": {"io.wardgate/decision": data}}
    if ctx.protocol_version >= "2026-07-28":
        result["resultType"] = "complete"
    return result


def denial_text(reasons: list[dict[str, str]]) -> str:
    lines = [f"- {r.get('message', '')} [{r.get('rule', '')}]" for r in reasons]
    return "Wardgate denied this call:\n" + "\n".join(lines)


class Pipeline:
    def __init__(self, config: GatewayConfig, *, store: GatewayStore) -> None:
        self.config = config
        self.store = store
        # One upstream pool per connection, so a connection's load never starves another's.
        self.pools: dict[str, aiohttp.ClientSession] = {}
        self.admission = Admission(config.admission)
        self.directory = ConnectionDirectory(store, config.connection_cache_seconds)
        self.authenticator = Authenticator(store, config.oidc)
        self.access = AccessCache(store, config.token_key)
        self.catalog = ToolCatalog(store)
        self.recorder = Recorder(AuditWriter(), config.audit_response_cap_bytes)
        self.stdio = StdioSessionPool()
        self.facts: dict[str, tuple[UpstreamSpec, BigQueryFacts]] = {}
        self.tokens: dict[str, tuple[dict, str, GoogleTokenSource | None]] = {}
        self.hold = config.hold
        self.live = LiveRegistry(store)
        self._sweeps: set[asyncio.Task[int]] = set()
        self.watcher = RevisionWatcher(store, config.revision_poll_seconds,
                                       [self.invalidate_caches, self._schedule_sweep])

    def _schedule_sweep(self) -> None:
        # Access may have been taken away: re-check what is open in this process.
        task = asyncio.get_running_loop().create_task(self._sweep())
        self._sweeps.add(task)
        task.add_done_callback(self._sweep_done)

    def _sweep_done(self, task: asyncio.Task[Any]) -> None:
        self._sweeps.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The next revision change sweeps again (e.g. once the database is back).
            log.warning("live-call sweep failed: %r", task.exception())

    async def _sweep(self) -> int:
        """Cut off live calls that lost access, and end the stdio subprocesses (and the
        credentials they hold) of sessions that are closed or killed, wherever that happened."""
        cut = await self.live.sweep()
        for key in await self.live.sessions_over(self.stdio.session_ids()):
            await self.stdio.close_session(key)
        return cut

    def invalidate_caches(self) -> None:
        """Forget every cached identity, plan, catalogue and connection (revision moved)."""
        self.authenticator.invalidate()
        self.access.invalidate()
        self.catalog.invalidate()
        self.directory.invalidate()

    async def start(self) -> None:
        default_sql_workers().warm()
        await self.recorder.writer.start()
        await self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()
        await self.stdio.close_all()
        for pool in self.pools.values():
            await pool.close()
        self.pools.clear()
        await self.recorder.writer.stop()

    # ------------------------------------------------------------------ entry points

    async def reject_bad_request(
        self, scope: Scope, headers: dict[str, str], slug: str, send: Send, *,
        status: int, reason: str, message: str, response_headers: dict[str, str] | None = None,
    ) -> None:
        """Refuse and record a request that fails before the pipeline proper (bad host,
        repeated headers, HTTP method, oversized body)."""
        ctx = self._context(scope, headers, slug)

        async def refuse() -> None:
            if reason != "request.repeated_header":
                await self._attribute(ctx, headers)
            await self._refuse(ctx, send, status, reason, message, response_headers)

        await self._failing_closed(ctx, send, refuse())

    async def _attribute(self, ctx: CallContext, headers: dict[str, str]) -> None:
        """Name who sent a request refused before authentication, when its credential says so
        (valid, or known but refused); an anonymous request stays anonymous."""
        try:
            ctx.identity = await self.authenticator.authenticate(headers)
            ctx.auth_method = ctx.identity.auth_method
        except AuthFailure as exc:
            ctx.auth_method, ctx.refused_owner = exc.auth_method, exc.owner

    async def handle(
        self, scope: Scope, headers: dict[str, str], slug: str, method: str, body: bytes,
        receive: Receive, send: Send,
    ) -> None:
        ctx = self._context(scope, headers, slug)
        if method != "POST":  # GET relays watch the client themselves
            await self._failing_closed(ctx, send, self._handle(ctx, headers, method, body, send,
                                                               receive))
            return
        # The body is read: the next message can only be the client leaving. If it goes, the
        # call is cancelled (upstream too) and recorded as cancelled, as the client saw it.
        sent: list[bool] = []

        async def send_noting_the_end(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                sent.append(True)

        async def watched() -> None:
            try:
                client_left = await _until_client_leaves(
                    receive, self._handle(ctx, headers, method, body, send_noting_the_end,
                                          receive), answered=lambda: bool(sent))
            except asyncio.CancelledError:
                if _cancelling():
                    raise  # the server itself is stopping this request
                # Cut off from here (access revoked): say so, and record what was said.
                await self._cancelled(ctx, "access.revoked", "Access was revoked during the call")
                await self._send_quietly(send, 403, rpc_error(
                    ctx.jsonrpc_id, POLICY_DENIED, "Access was revoked during the call",
                    {"reason": "access.revoked", "request_id": ctx.request_id}))
                return
            if client_left:
                await self._cancelled(ctx, "client.gone",
                                      "The client went away before the answer was sent")

        await self._failing_closed(ctx, send, watched())

    async def _failing_closed(self, ctx: CallContext, send: Send, work: Awaitable[None]) -> None:
        """Run `work`; any failure inside ends in a clear error to the client, never in data."""
        try:
            await work
        except DatabaseError:
            log.warning("database unavailable; failing closed", exc_info=True)
            await self._send_quietly(send, 503, rpc_error(
                ctx.jsonrpc_id, GATEWAY_ERROR, "The gateway's database is unavailable; nothing "
                "was done", {"reason": "database.unavailable", "request_id": ctx.request_id}),
                {"retry-after": str(self.config.admission.retry_after_seconds)})
        except RecordFailed:
            log.exception("audit write failed; failing closed")
            await self._send_quietly(send, 503, rpc_error(
                ctx.jsonrpc_id, GATEWAY_ERROR, "The audit trail is unavailable; nothing was done",
                {"reason": "audit.unavailable", "request_id": ctx.request_id}))
        except Exception:
            log.exception("gateway error; failing closed")
            await self._record_quietly(ctx, "gateway.internal_error")
            await self._send_quietly(send, 500, rpc_error(
                ctx.jsonrpc_id, GATEWAY_ERROR, "Internal gateway error; the call was not completed",
                {"reason": "gateway.internal_error", "request_id": ctx.request_id}))

    # ------------------------------------------------------------------ the stages

    async def _handle(self, ctx: CallContext, headers: dict[str, str], method: str, body: bytes,
                      send: Send, receive: Receive) -> None:
        # 1. authenticate
        try:
            ctx.identity = await self.authenticator.authenticate(headers)
        except AuthFailure as exc:
            ctx.auth_method = exc.auth_method
            ctx.refused_owner = exc.owner
            if exc.token_id is not None:
                ctx.detail["token_id"] = exc.token_id
            await self._refuse(ctx, send, 401, exc.reason, exc.message,
                               {"www-authenticate": f'Bearer realm="wardgate", error="invalid_token", '
                                                    f'error_description="{exc.reason}"'})
            return
        ctx.auth_method = ctx.identity.auth_method
        # 2. connection
        spec = await self.directory.get(ctx.connection_slug)
        if spec is None:
            await self._refuse(ctx, send, 404, "connection.unknown",
                               f"Unknown connection {ctx.connection_slug!r}")
            return
        if spec.quarantined:
            await self._refuse(ctx, send, 403, "connection.quarantined",
                               "This connection is quarantined")
            return
        scope_ids = ctx.identity.token_connections
        if scope_ids is not None and spec.connection_id not in scope_ids:
            await self._refuse(ctx, send, 403, "token.out_of_scope",
                               "This token is not scoped to this connection")
            return
        plan = await self.access.plan_for(ctx.identity.user_id, ctx.identity.groups,
                                          spec.connection_id)
        if plan is NO_ACCESS or not plan.roles:
            await self._refuse(ctx, send, 403, "access.no_grant",
                               "You have no grant on this connection")
            return
        if ctx.mcp_session_id:
            # A session belongs to whoever opened it, on the connection it was opened on; once
            # closed or killed (also by disabling its owner) it never serves again.
            owner = await self.live.session_owner(ctx.mcp_session_id)
            if owner is not None and (owner.user_id != ctx.identity.user_id
                                      or owner.connection_id != spec.connection_id):
                ctx.detail["session_owner_id"] = owner.user_id
                await self._refuse(ctx, send, 404, "session.not_yours",
                                   "Unknown MCP session: start a new one")
                return
            if owner is not None and owner.over:
                await self._refuse(ctx, send, 404, "session.closed",
                                   "This MCP session was closed: start a new one")
                return
        # Within this identity's share of the gateway, or refused at once (429).
        kind = "stream" if method == "GET" else "request"
        user = ctx.identity.user_id
        refusal = self.admission.enter(user, spec.connection_id, kind)
        if refusal is not None:
            await self._refuse_limited(ctx, send, refusal)
            return
        self.admission.session_seen(ctx.mcp_session_id, user)
        try:
            # Tracked while it runs, so a revocation anywhere cuts this call or stream off.
            with self.live.track(ctx.identity, spec.connection_id, ctx.mcp_session_id):
                await self._dispatch(ctx, spec, plan, headers, method, body, send, receive)
        finally:
            self.admission.leave(user, spec.connection_id, kind)

    async def _dispatch(self, ctx: CallContext, spec: UpstreamSpec, plan: AccessPlan,
                        headers: dict[str, str], method: str, body: bytes, send: Send,
                        receive: Receive) -> None:
        try:
            upstream = await self._upstream(spec)
        except GoogleTokenError as exc:
            await self._refuse(ctx, send, 502, "upstream.credentials_unavailable", exc.message,
                               code=GATEWAY_ERROR)
            return
        if method == "GET":
            await self._relay_get(ctx, spec, upstream, headers, send, receive)
            return
        if method == "DELETE":
            await self._relay_delete(ctx, upstream, headers, send)
            return
        # 3. parse
        try:
            message, kind = parse_message(body)
            self._check_routing_headers(headers, message)
        except BadMessage as exc:
            ctx.detail["body_bytes"] = len(body)
            ctx.jsonrpc_method = exc.method
            await self._refuse(ctx, send, 400, exc.reason, exc.message, code=exc.code)
            return
        ctx.protocol_version = protocol_version_of(headers, message)
        if kind != "request":
            await self._relay_client_message(ctx, message, kind, upstream, headers, body, send)
            return
        ctx.jsonrpc_method = message["method"]
        ctx.jsonrpc_id = message["id"]
        params = message.get("params") or {}
        if ctx.jsonrpc_method == "tools/call":
            await self._tool_call(ctx, spec, plan, params, upstream, headers, body, send)
        elif ctx.jsonrpc_method in ("resources/read", "prompts/get"):
            await self._data_request(ctx, plan, params, upstream, headers, body, send)
        else:
            await self._plain_request(ctx, spec, plan, upstream, headers, body, send)

    async def _tool_call(self, ctx: CallContext, spec: UpstreamSpec, plan: AccessPlan,
                         params: dict[str, Any], upstream: Any, headers: dict[str, str],
                         body: bytes, send: Send) -> None:
        ctx.tool = params.get("name") if isinstance(params.get("name"), str) else ""
        ctx.arguments = params.get("arguments")
        mismatch = await self._param_header_mismatch(spec, ctx, headers)
        if mismatch is not None:
            await self._refuse(ctx, send, 400, "request.header_mismatch", mismatch, code=-32001)
            return
        # 4. authorize
        tool_ok = bool(ctx.tool) and await self.catalog.callable(spec.connection_id, ctx.tool)
        metadata_spec = spec.metadata_tools.get(ctx.tool)
        metadata = MetadataTool.from_spec(metadata_spec, spec.bigquery_project,
                                          spec.default_dataset) if metadata_spec else None
        job_tool = spec.job_tools.get(ctx.tool)
        sql_tool = self._sql_tool(spec, ctx.tool)
        if job_tool is not None:
            decision = await self._authorize_job(ctx, spec, plan, job_tool, tool_ok)
        else:
            decision = await authorize_tool_call(
                plan=plan, tool=params.get("name"), arguments=ctx.arguments,
                tool_is_accepted=tool_ok, sql_tool=sql_tool,
                request_id=ctx.request_id, metadata_tool=metadata,
                project_argument=spec.project_argument, project=spec.bigquery_project,
            )
        self._note_decision(ctx, decision)
        if decision.allowed:
            masking = decision.role.masking if decision.role else None
            ctx.error_texts = ErrorTextPolicy(ctx.request_id, decision.reads_masked, masking)

            async def mask(result: dict[str, Any]) -> dict[str, Any]:
                assert masking is not None
                raw = result
                if result.get("isError") is True:
                    result = error_result_text(result, ctx.error_texts)
                elif job_tool is not None and job_tool["kind"] == "info":
                    result = job_info_public(result, ctx.error_texts)
                elif metadata is not None and metadata.lists and decision.role is not None:
                    result = filter_table_listing(result, metadata, decision.role,
                                                  ctx.arguments if isinstance(ctx.arguments, dict)
                                                  else {})
                masked, summary = mask_call_result(result, decision.columns, masking)
                ctx.masking = summary.as_list()
                ctx.row_count = _row_count(masked)
                if sql_tool is not None and job_tool is None and raw.get("isError") is not True:
                    await self._remember_job(ctx, spec, plan, decision, raw)
                return masked

            # 5. hold for approval where the role says so
            sql = decision.sql
            rule = decision.role.approval_rule_for(
                ctx.tool, sql.tables if sql else (), sql.statement_classes if sql else (),
                sql.bytes_processed if sql else None) if decision.role else None
            if rule is not None:
                binding = binding_for(ctx, spec.connection_id, plan.policy_version)
                approval_id = await use_existing_approval(self.store, binding, ctx.request_id)
                if approval_id is None:
                    await self._hold(ctx, rule, binding, params, upstream, headers, body, send,
                                     mask)
                    return
                ctx.detail["approval_id"] = approval_id
        # 6. record the decision before anything is forwarded
        await self.recorder.record(ctx, "mcp.decision")
        if not decision.allowed:
            result = tool_error_result(ctx, denial_text(ctx.reasons),
                                       {"request_id": ctx.request_id, "reasons": ctx.reasons})
            await self._answer(ctx, send, {"jsonrpc": "2.0", "id": ctx.jsonrpc_id, "result": result})
            return
        # 7-9. forward, mask, record the outcome, release
        await self._exchange(ctx, upstream, headers, body, send, mask)

    async def _param_header_mismatch(self, spec: UpstreamSpec, ctx: CallContext,
                                     headers: dict[str, str]) -> str | None:
        """From 2026-07-28 a tool's arguments may be mirrored into Mcp-Param-* headers
        (x-mcp-header in its input schema), and an upstream may route or bill by them (the
        BigQuery remote server's project). The gateway polices the body, so the headers must
        say the same, checked against the accepted version of the tool."""
        if not any(k.lower().startswith("mcp-param-") for k in headers):
            return None
        schema = await self.catalog.accepted_schema(spec.connection_id, ctx.tool)
        if schema is None:
            return "Mcp-Param-* headers for a tool with no accepted schema"
        arguments = ctx.arguments if isinstance(ctx.arguments, dict) else {}
        rejection = validate_mcp_param_headers(schema, arguments, headers)
        return rejection.message if rejection is not None else None

    async def _authorize_job(self, ctx: CallContext, spec: UpstreamSpec, plan: AccessPlan,
                             job_tool: dict[str, str], tool_ok: bool) -> Decision:
        """A job tool: only the identity's own jobs that the gateway saw created; their data
        under the job statement's policy as it stands now (proxy.jobs)."""
        arguments = ctx.arguments if isinstance(ctx.arguments, dict) else {}
        seen = await job_lookup(self.store, spec.connection_id, arguments.get(job_tool["job"]))
        if seen is None:
            return deny("job.unknown", "Wardgate did not see this job created on this "
                        "connection, so it cannot police its data; run the query through it")
        assert ctx.identity is not None
        if seen.user_id != ctx.identity.user_id:
            return deny("job.not_yours", "This job was created by another identity")
        ctx.detail["job"] = {"job_id": seen.job_id, "created_by_request": seen.request_id,
                             "created_with_tool": seen.tool,
                             "policy_version_then": seen.policy_version}
        sql_tool = None
        if job_tool["kind"] != "cancel":
            sql_tool = self._sql_tool(spec, seen.tool, argument=STATEMENT_ARGUMENT)
            if sql_tool is None:
                return deny("job.unknown", f"The job's tool {seen.tool!r} no longer carries SQL "
                            "on this connection")
            arguments = {**arguments, STATEMENT_ARGUMENT: seen.statement}
        return await authorize_tool_call(
            plan=plan, tool=ctx.tool, arguments=arguments, tool_is_accepted=tool_ok,
            sql_tool=sql_tool, request_id=ctx.request_id,
            project_argument=spec.project_argument, project=spec.bigquery_project)

    async def _remember_job(self, ctx: CallContext, spec: UpstreamSpec, plan: AccessPlan,
                            decision: Decision, result: dict[str, Any]) -> None:
        job_id = job_id_of(result)
        if job_id is None or ctx.identity is None or decision.sql is None:
            return
        ctx.detail["job_id"] = job_id
        await job_remember(self.store, connection_id=spec.connection_id, job_id=job_id,
                           user_id=ctx.identity.user_id, tool=ctx.tool,
                           statement=decision.sql.text, fingerprint=decision.sql.fingerprint,
                           tables=decision.sql.tables, plan=decision.columns,
                           role=decision.role.name if decision.role else "",
                           policy_version=plan.policy_version, request_id=ctx.request_id)

    async def _hold(self, ctx: CallContext, rule: Any, binding: HoldBinding,
                    params: dict[str, Any], upstream: Any, headers: dict[str, str], body: bytes,
                    send: Send,
                    mask: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
        approval_id, created = await propose(self.store, binding, ctx, rule, self.hold)
        url = self.hold.approval_url(approval_id, ctx.request_base)
        ctx.decision = "hold"
        ctx.reasons = [{"rule": "approval.required",
                        "message": f"This call needs approval (rule {rule.id!r}): {url}"}]
        ctx.detail.update(approval_id=approval_id, approval_url=url, approval_rule=rule.id)
        await self.recorder.record(ctx, "mcp.decision")
        meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
        progress_token = meta.get("progressToken")
        pending = {"request_id": ctx.request_id, "approval_id": approval_id, "status": "pending",
                   "url": url, "reasons": ctx.reasons}
        previous = await last_denial(self.store, binding) if created else ""
        if previous:
            pending["previous_denial"] = previous
        if progress_token is None or "text/event-stream" not in headers.get("accept", ""):
            text = (f"Approval pending: this call needs approval (rule {rule.id!r}). "
                    f"An approver can decide at {url}. Re-run the identical call once approved."
                    + (f" Your previous request {previous}." if previous else ""))
            result = tool_error_result(ctx, text, pending)
            result["_meta"]["io.wardgate/approval"] = pending
            await self._answer(ctx, send, {"jsonrpc": "2.0", "id": ctx.jsonrpc_id, "result": result})
            return
        # The client keeps the call open: hold it, telling it we are waiting.
        await start_stream(send, 200, {"content-type": "text/event-stream",
                                       "cache-control": "no-cache"})

        async def tick(waited: float) -> None:
            note = {"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": progress_token, "progress": round(waited, 1),
                               "total": self.hold.timeout_seconds,
                               "message": f"Waiting for approval #{approval_id}: {url}"}}
            await stream_chunk(send, SseEvent(data=json.dumps(note), event="message").encode())

        status = await wait_for_decision(self.store, approval_id, self.hold, tick)
        used = await use_existing_approval(self.store, binding, ctx.request_id) if status == "approved" else None
        if used is not None:
            ctx.decision, ctx.reasons = "allow", []
            ctx.detail["approval_id"] = used
            await self.recorder.record(ctx, "mcp.decision")
            await self._exchange(ctx, upstream, headers, body, send, mask, in_stream=True)
            return
        if status == "timeout":
            # Nobody decided yet: the approval stays pending. Say so, and how to go on.
            ctx.decision = "hold"
            ctx.reasons = [{"rule": "approval.pending",
                            "message": f"Approval #{approval_id} is still pending after "
                                       f"{self.hold.timeout_seconds:g}s: {url}"}]
            text = (f"Approval pending: approval #{approval_id} has not been decided yet (rule "
                    f"{rule.id!r}). An approver can decide at {url}. Re-run the identical call "
                    "once it is approved; it then runs once.")
            result = tool_error_result(ctx, text, {**pending, "reasons": ctx.reasons})
            result["_meta"]["io.wardgate/approval"] = {**pending, "reasons": ctx.reasons}
        else:
            # Denied (with the approver's reason), expired, or gone: not granted.
            note = await denial_note(self.store, approval_id) if status == "denied" else ""
            ctx.decision = "deny"
            ctx.reasons = [{"rule": f"approval.{status}",
                            "message": f"Approval #{approval_id} was not granted ({status})"
                                       + (f": {note}" if note else "")}]
            result = tool_error_result(ctx, denial_text(ctx.reasons),
                                       {"request_id": ctx.request_id, "reasons": ctx.reasons,
                                        "approval_id": approval_id})
        out = json.dumps({"jsonrpc": "2.0", "id": ctx.jsonrpc_id, "result": result}).encode()
        await self._finish(ctx, "mcp.outcome", out)
        await stream_chunk(send, SseEvent(data=out.decode(), event="message").encode())
        await stream_chunk(send, b"", more=False)

    async def _data_request(self, ctx: CallContext, plan: AccessPlan, params: dict[str, Any],
                            upstream: Any, headers: dict[str, str], body: bytes,
                            send: Send) -> None:
        if ctx.jsonrpc_method == "resources/read":
            target = params.get("uri")
            role = plan.resource_role(target) if isinstance(target, str) else None
            what = "resource"
        else:
            target = params.get("name")
            role = plan.prompt_role(target) if isinstance(target, str) else None
            what = "prompt"
        ctx.tool = str(target)[:200] if target is not None else ""
        ctx.arguments = params.get("arguments") if what == "prompt" else None
        if role is None:
            ctx.deny([Reason(f"{what}.not_granted", f"No role of yours allows this {what}")])
            await self.recorder.record(ctx, "mcp.decision")
            await self._answer(ctx, send, rpc_error(
                ctx.jsonrpc_id, POLICY_DENIED, denial_text(ctx.reasons),
                {"request_id": ctx.request_id, "reasons": ctx.reasons}))
            return
        ctx.decision, ctx.role = "allow", role.name
        await self.recorder.record(ctx, "mcp.decision")
        policy = role.masking

        def mask(result: dict[str, Any]) -> dict[str, Any]:
            masked, summary = mask_call_result(_as_tool_shape(result), None, policy)
            ctx.masking = summary.as_list()
            return _from_tool_shape(result, masked)

        await self._exchange(ctx, upstream, headers, body, send, mask)

    async def _plain_request(self, ctx: CallContext, spec: UpstreamSpec, plan: AccessPlan,
                             upstream: Any, headers: dict[str, str], body: bytes,
                             send: Send) -> None:
        """Protocol requests (initialize, discover, ping, lists, ...): relayed; listings are
        filtered to what the caller may use and what the catalogue has accepted."""
        if ctx.jsonrpc_method == "initialize" and ctx.identity is not None:
            refusal = self.admission.session_refusal(ctx.identity.user_id)
            if refusal is not None:
                await self._refuse_limited(ctx, send, refusal)
                return
        ctx.decision = "allow"
        transform: Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]] | None
        transform = None
        if ctx.jsonrpc_method == "tools/list":
            async def transform(result: dict[str, Any]) -> dict[str, Any]:
                return await self._filter_tools(ctx, spec, plan, result)
        elif ctx.jsonrpc_method == "resources/list":
            def transform(result: dict[str, Any]) -> dict[str, Any]:
                return _filter_list(result, "resources",
                                    lambda r: plan.resource_role(str(r.get("uri"))) is not None)
        elif ctx.jsonrpc_method == "prompts/list":
            def transform(result: dict[str, Any]) -> dict[str, Any]:
                return _filter_list(result, "prompts",
                                    lambda p: plan.prompt_role(str(p.get("name"))) is not None)
        await self._exchange(ctx, upstream, headers, body, send, transform, event="mcp.request")

    async def _filter_tools(self, ctx: CallContext, spec: UpstreamSpec, plan: AccessPlan,
                            result: dict[str, Any]) -> dict[str, Any]:
        tools = result.get("tools")
        if not isinstance(tools, list):
            raise UnmaskableResult("tools/list result without a tools list")
        review = await self.catalog.review(spec.connection_id, tools)
        if review.newly_seen:
            note = CallContext(ctx.connection_slug, ctx.source_ip, ctx.user_agent,
                               ctx.mcp_session_id, ctx.protocol_version, request_id=ctx.request_id,
                               identity=ctx.identity, auth_method=ctx.auth_method,
                               jsonrpc_method="tools/list", decision="info")
            note.detail = {"new_or_changed_tools": review.newly_seen,
                           "hidden_until_accepted": review.hidden}
            await self.recorder.record(note, "catalog.changed")
        if review.hidden:
            ctx.detail["hidden_tools"] = review.hidden
        visible = [t for t in review.visible if plan.visible(t["name"])]
        return {**result, "tools": visible}

    # ------------------------------------------------------------------ relaying

    async def _exchange(self, ctx: CallContext, upstream: Any, headers: dict[str, str],
                        body: bytes, send: Send, transform: Any,
                        event: str = "mcp.outcome", in_stream: bool = False) -> None:
        """Forward one request; relay what comes back, transforming (masking/filtering) the
        response to this request and recording the outcome before it is released.
        `in_stream`: an SSE response to the client is already open (a held call).
        Cancelled (the client left, access revoked): the upstream is told to cancel too."""
        try:
            await self._forward(ctx, upstream, headers, body, send, transform, event, in_stream)
        except asyncio.CancelledError:
            if ctx.jsonrpc_id is not None:
                task = asyncio.get_running_loop().create_task(
                    self._cancel_upstream(ctx, upstream, headers))
                self._sweeps.add(task)  # type: ignore[arg-type]
                task.add_done_callback(self._sweeps.discard)  # type: ignore[arg-type]
            raise

    async def _cancel_upstream(self, ctx: CallContext, upstream: Any,
                               headers: dict[str, str]) -> None:
        note = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": ctx.jsonrpc_id, "reason": "client went away"}}
        out_headers = {k: v for k, v in headers.items() if k not in ("mcp-method", "mcp-name")}
        try:
            reply = await upstream.send("POST", out_headers, json.dumps(note).encode(),
                                        timeout=5.0)
            await reply.aclose()
        except (UpstreamError, TimeoutError, OSError):
            log.info("could not tell the upstream that request %s was cancelled", ctx.request_id)

    async def _forward(self, ctx: CallContext, upstream: Any, headers: dict[str, str],
                       body: bytes, send: Send, transform: Any, event: str,
                       in_stream: bool) -> None:
        started = time.perf_counter()
        try:
            response = await upstream.send("POST", headers, body,
                                           timeout=self.config.upstream_timeout_seconds)
        except UpstreamError as exc:
            ctx.upstream_latency_ms = round((time.perf_counter() - started) * 1000, 3)
            await self._upstream_failed(ctx, send, exc, event, in_stream=in_stream)
            return
        session_key = response.headers.get("mcp-session-id")
        if ctx.jsonrpc_method == "initialize" and session_key and ctx.identity is not None:
            spec = await self.directory.get(ctx.connection_slug)
            if spec is not None:
                self.admission.session_opened(session_key, ctx.identity.user_id)
                await self.live.session_opened(session_key, ctx.identity, spec.connection_id,
                                               ctx.source_ip, ctx.user_agent)
        if not response.is_stream:
            ctx.upstream_latency_ms = round((time.perf_counter() - started) * 1000, 3)
            out = await self._final_message(ctx, response.body, transform, response.status)
            await self._finish(ctx, event, out)
            if in_stream:
                await stream_chunk(send, SseEvent(data=out.decode(), event="message").encode())
                await stream_chunk(send, b"", more=False)
                return
            await send_bytes(send, response.status, out,
                             {**response.headers, "content-length": str(len(out))})
            return
        try:
            if not in_stream:
                await start_stream(send, response.status, response.headers)
            assert response.events is not None
            failure: UpstreamError | None = None
            try:
                async for sse in response.events:
                    message = _json_or_none(sse.data)
                    if isinstance(message, dict) and message.get("id") == ctx.jsonrpc_id and (
                            "result" in message or "error" in message) and "method" not in message:
                        ctx.upstream_latency_ms = round((time.perf_counter() - started) * 1000, 3)
                        out = await self._final_message(ctx, sse.data.encode(), transform, 200)
                        await self._finish(ctx, event, out)
                        sse.data = out.decode()
                        await stream_chunk(send, sse.encode())
                        break
                    await self._relay_server_message(ctx, sse, message, upstream, headers, send)
                else:
                    failure = UpstreamError("upstream.stream_ended",
                                            "The upstream closed the stream without a response")
            except UpstreamError as exc:
                failure = exc
            if failure is not None:
                # Say so on the stream rather than leave the client waiting, and record it.
                ctx.decision = "error"
                ctx.reasons = [{"rule": failure.reason, "message": failure.message}]
                out = json.dumps(rpc_error(ctx.jsonrpc_id, GATEWAY_ERROR, failure.message,
                                           {"reason": failure.reason,
                                            "request_id": ctx.request_id})).encode()
                await self._finish(ctx, event, out)
                await stream_chunk(send, SseEvent(data=out.decode(), event="message").encode())
            await stream_chunk(send, b"", more=False)
        finally:
            await response.aclose()

    async def _final_message(self, ctx: CallContext, raw: bytes, transform: Any,
                             status: int) -> bytes:
        """The response to this request as it will leave the gateway."""
        message = _json_or_none(raw)
        if not isinstance(message, dict):
            if transform is None and status >= 400:
                return raw  # an upstream HTTP error body (e.g. unknown session): relay it
            ctx.decision = "error"
            ctx.reasons = [{"rule": "upstream.bad_response",
                            "message": "The upstream answered with something that is not JSON-RPC"}]
            return json.dumps(rpc_error(ctx.jsonrpc_id, GATEWAY_ERROR, "Bad upstream response",
                                        {"reason": "upstream.bad_response",
                                         "request_id": ctx.request_id})).encode()
        if ctx.jsonrpc_method in DATA_METHODS and isinstance(message.get("result"), dict) \
                and "inputRequests" in message["result"]:
            refusal = await self._police_input_requests(ctx, message["result"])
            if refusal is not None:
                return refusal
        if "error" in message and ctx.jsonrpc_method in DATA_METHODS:
            message = {**message, "error": upstream_error(message["error"], ctx)}
            ctx.detail["upstream_error"] = message["error"]
            return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        if "error" in message or transform is None or not isinstance(message.get("result"), dict):
            if "error" in message:
                ctx.detail["upstream_error"] = message["error"]
            return raw
        try:
            result = transform(message["result"])
            if hasattr(result, "__await__"):
                result = await result
        except UnmaskableResult as exc:
            ctx.decision = "withheld"
            ctx.reasons = [{"rule": "mask.unmaskable", "message": str(exc)}]
            result = tool_error_result(
                ctx, "Wardgate withheld this result: it may hold sensitive data in a shape that "
                     "cannot be masked safely.",
                {"request_id": ctx.request_id, "reasons": ctx.reasons})
            if ctx.jsonrpc_method != "tools/call":
                return json.dumps(rpc_error(ctx.jsonrpc_id, POLICY_DENIED, "Result withheld",
                                            {"request_id": ctx.request_id,
                                             "reasons": ctx.reasons})).encode()
        if result.get("isError") and ctx.decision == "allow":
            ctx.detail["tool_error"] = True
        return json.dumps({**message, "result": result}, separators=(",", ":"),
                          ensure_ascii=False).encode()

    async def _finish(self, ctx: CallContext, event: str, out: bytes) -> None:
        self.recorder.keep_response(ctx, out)
        await self.recorder.record(ctx, event)

    async def _relay_server_message(self, ctx: CallContext, sse: SseEvent, message: Any,
                                    upstream: Any, headers: dict[str, str], send: Send) -> None:
        """A message from the upstream that is not our response: progress, logs, and
        server-to-client requests. Sampling and elicitation reach the client only where the
        connection allows them; either way they are recorded."""
        if isinstance(message, dict) and message.get("method") in GUARDED_SERVER_REQUESTS \
                and "id" in message:
            allowed = await self._server_request_allowed(ctx, message["method"],
                                                         message.get("params"))
            if not allowed:
                refusal = rpc_error(message["id"], POLICY_DENIED,
                                    f"{message['method']} is not allowed on this connection")
                try:
                    reply = await upstream.send("POST", headers, json.dumps(refusal).encode(),
                                                timeout=self.config.upstream_timeout_seconds)
                    await reply.aclose()
                except UpstreamError:
                    log.warning("could not tell the upstream its %s was refused", message["method"])
                return
        await stream_chunk(send, sse.encode())

    async def _server_request_allowed(self, ctx: CallContext, method: str, params: Any) -> bool:
        """Whether this connection lets a sampling/elicitation request reach the client;
        recorded either way."""
        spec = await self.directory.get(ctx.connection_slug)
        allowed = spec is not None and bool(getattr(spec, GUARDED_SERVER_REQUESTS[method]))
        note = CallContext(ctx.connection_slug, ctx.source_ip, ctx.user_agent,
                           ctx.mcp_session_id, ctx.protocol_version,
                           request_id=ctx.request_id, identity=ctx.identity,
                           auth_method=ctx.auth_method, jsonrpc_method=method,
                           decision="allow" if allowed else "deny", arguments=params)
        await self.recorder.record(note, "mcp.server_request")
        return allowed

    async def _police_input_requests(self, ctx: CallContext,
                                     result: dict[str, Any]) -> bytes | None:
        """From 2026-07-28 sampling and elicitation travel inside an input_required result
        ({"resultType": "input_required", "inputRequests": {key: {"method", "params"}}}); the
        client answers by retrying the call with inputResponses. The legacy rule applies: each
        is recorded, and if any is not allowed the whole result is replaced by a refusal, so
        the client never sees it (the upstream keeps no state: it lives in requestState)."""
        requests = result.get("inputRequests")
        refused: list[dict[str, str]] = []
        if not isinstance(requests, dict):
            refused.append({"rule": "upstream.bad_response",
                            "message": "inputRequests is not an object"})
            requests = {}
        for request in requests.values():
            method = request.get("method") if isinstance(request, dict) else None
            if method not in GUARDED_SERVER_REQUESTS:
                continue  # roots/list: relayed, as on the legacy stream
            if not await self._server_request_allowed(ctx, method, request.get("params")):
                refused.append({"rule": "server_request.not_allowed",
                                "message": f"{method} is not allowed on this connection"})
        if not refused:
            return None
        ctx.decision, ctx.reasons = "deny", refused
        text = "; ".join(r["message"] for r in refused)
        data = {"request_id": ctx.request_id, "reasons": refused}
        if ctx.jsonrpc_method == "tools/call":
            payload = {"jsonrpc": "2.0", "id": ctx.jsonrpc_id,
                       "result": tool_error_result(ctx, text, data)}
        else:
            payload = rpc_error(ctx.jsonrpc_id, POLICY_DENIED, text, data)
        return json.dumps(payload, separators=(",", ":")).encode()

    async def _relay_client_message(self, ctx: CallContext, message: dict[str, Any], kind: str,
                                    upstream: Any, headers: dict[str, str], body: bytes,
                                    send: Send) -> None:
        """Notifications and responses from the client (e.g. notifications/initialized,
        cancellation, progress, answers to server requests): relayed and recorded."""
        ctx.jsonrpc_method = message.get("method", "response")
        ctx.jsonrpc_id = message.get("id")
        ctx.decision = "allow"
        try:
            response = await upstream.send("POST", headers, body,
                                           timeout=self.config.upstream_timeout_seconds)
        except UpstreamError as exc:
            await self._upstream_failed(ctx, send, exc, "mcp.notification")
            return
        try:
            out = response.body if not response.is_stream else b""
            await self.recorder.record(ctx, "mcp.notification")
            await send_bytes(send, response.status, out, response.headers)
        finally:
            await response.aclose()

    async def _relay_get(self, ctx: CallContext, spec: UpstreamSpec, upstream: Any,
                         headers: dict[str, str], send: Send, receive: Receive) -> None:
        """The client's GET stream of server-initiated messages."""
        ctx.jsonrpc_method, ctx.decision = "GET", "allow"
        await self.recorder.record(ctx, "mcp.stream_opened")
        try:
            response = await upstream.send("GET", headers, timeout=None)
        except UpstreamError as exc:
            await self._upstream_failed(ctx, send, exc, "mcp.stream_closed")
            return
        try:
            if not response.is_stream:
                await send_bytes(send, response.status, response.body, response.headers)
                return
            await start_stream(send, response.status, response.headers)
            events = response.events
            assert events is not None

            async def relay() -> None:
                async for sse in events:
                    await self._relay_server_message(ctx, sse, _json_or_none(sse.data), upstream,
                                                     headers, send)

            lifetime = self.config.admission.stream_max_seconds
            try:
                async with asyncio.timeout(lifetime):
                    client_left = await _until_client_leaves(receive, relay())
            except UpstreamError as exc:  # the upstream broke the stream off
                ctx.decision = "error"
                ctx.reasons = [{"rule": exc.reason, "message": exc.message}]
                client_left = False
            except TimeoutError:  # streams do not live forever; the client may reopen one
                ctx.detail["closed_after_max_lifetime_s"] = lifetime
                client_left = False
            ctx.detail["client_left"] = client_left
            await self.recorder.record(ctx, "mcp.stream_closed")
            if not client_left:
                await stream_chunk(send, b"", more=False)
        finally:
            await response.aclose()

    async def _relay_delete(self, ctx: CallContext, upstream: Any, headers: dict[str, str],
                            send: Send) -> None:
        ctx.jsonrpc_method, ctx.decision = "DELETE", "allow"
        try:
            response = await upstream.send("DELETE", headers)
        except UpstreamError as exc:
            await self._upstream_failed(ctx, send, exc, "mcp.session_closed")
            return
        await self.recorder.record(ctx, "mcp.session_closed")
        if ctx.mcp_session_id:
            self.admission.session_closed(ctx.mcp_session_id)
            await self.live.session_closed(ctx.mcp_session_id, "closed by the client")
        await send_bytes(send, response.status, response.body, response.headers)

    # ------------------------------------------------------------------ helpers

    def _context(self, scope: Scope, headers: dict[str, str], slug: str) -> CallContext:
        client = scope.get("client") or ("", 0)
        return CallContext(
            connection_slug=slug,
            source_ip=str(client[0]),
            user_agent=headers.get("user-agent", "")[:512],
            mcp_session_id=headers.get("mcp-session-id", "")[:200],
            protocol_version=headers.get("mcp-protocol-version", "")[:32],
            request_base=f"{scope.get('scheme', 'http')}://{headers.get('host', '')[:255]}",
        )

    async def _upstream(self, spec: UpstreamSpec) -> Any:
        """The upstream with the connection's credentials: static headers / environment, plus
        a Google access token minted now (or cached until shortly before it expires)."""
        headers = dict(spec.credentials.get("headers") or {})
        env = dict(spec.credentials.get("env") or {})
        token = await self._google_token(spec)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
            env[STDIO_TOKEN_ENV] = token
        if spec.transport == "stdio":
            return self.stdio.upstream(spec.slug, StdioCommand(argv=spec.command, env=env))
        pool = self.pools.get(spec.slug)
        if pool is None:
            pool = self.pools[spec.slug] = new_session(
                max_connections=self.config.admission.upstream_pool_size)
        return HttpUpstream(pool, spec.url, headers)

    async def _google_token(self, spec: UpstreamSpec) -> str | None:
        # Checked and fingerprinted once per credentials object (the directory caches specs),
        # so the hot path is a dict lookup; a rotated key gets a fresh token source.
        cached = self.tokens.get(spec.slug)
        if cached is None or cached[0] is not spec.credentials:
            google = google_auth_config(spec.credentials)
            fingerprint = GoogleTokenSource.fingerprint(google) if google is not None else ""
            source = None
            if google is not None:
                same = cached is not None and cached[1] == fingerprint
                source = cached[2] if same and cached is not None else GoogleTokenSource(google)
            cached = (spec.credentials, fingerprint, source)
            self.tokens[spec.slug] = cached
        return None if cached[2] is None else await cached[2].token()

    def _sql_tool(self, spec: UpstreamSpec, tool: str,
                  argument: str | None = None) -> SqlToolContext | None:
        """The SQL context of a tool that carries SQL; `argument` overrides where the statement
        is read from (a job's remembered statement)."""
        parsed = sql_tool_spec(spec.sql_tools.get(tool))
        if parsed is None:
            return None
        cached = self.facts.get(spec.slug)
        if cached is None or cached[0] != spec:
            facts = BigQueryFacts(project=spec.bigquery_project, endpoint=spec.bigquery_endpoint,
                                  credentials=spec.credentials,
                                  timeout_seconds=self.config.bigquery_timeout_seconds)
            self.facts[spec.slug] = (spec, facts)
        else:
            facts = cached[1]
        return SqlToolContext(sql_argument=argument or parsed[0], project=spec.bigquery_project,
                              dataset=spec.default_dataset or None, facts=facts,
                              classifier=spec.classifier, statement_classes=parsed[1])

    @staticmethod
    def _check_routing_headers(headers: dict[str, str], message: dict[str, Any]) -> None:
        # From 2026-07-28 the method and name also travel as headers. The gateway polices the
        # body, so the two must agree, or a header-routing upstream could run something else.
        method_header = headers.get("mcp-method")
        if method_header is not None and method_header != message.get("method"):
            raise BadMessage("request.header_mismatch",
                             "Mcp-Method header does not match the body's method")
        name_header = headers.get("mcp-name")
        if name_header is not None:
            params = message.get("params") or {}
            body_name = params.get("name", params.get("uri"))
            if decode_header_value(name_header) != body_name:
                raise BadMessage("request.header_mismatch",
                                 "Mcp-Name header does not match the body")

    @staticmethod
    def _note_decision(ctx: CallContext, decision: Decision) -> None:
        ctx.sql = decision.sql
        if decision.allowed:
            ctx.decision = "allow"
            ctx.role = decision.role.name if decision.role else ""
        else:
            ctx.deny(decision.reasons)

    async def _refuse(self, ctx: CallContext, send: Send, status: int, reason: str,
                      message: str, headers: dict[str, str] | None = None,
                      code: int = POLICY_DENIED) -> None:
        ctx.decision = "deny"
        ctx.reasons = [{"rule": reason, "message": message}]
        body = rpc_error(ctx.jsonrpc_id, code, message,
                         {"reason": reason, "request_id": ctx.request_id})
        out = json.dumps(body, separators=(",", ":")).encode()
        self.recorder.keep_response(ctx, out)
        await self.recorder.record(ctx, "mcp.rejected")
        await send_bytes(send, status, out, {"content-type": "application/json", **(headers or {})})

    async def _cancelled(self, ctx: CallContext, rule: str, message: str) -> None:
        # Only reached while the call was still running: whatever was recorded before (even
        # an outcome about to be released) never reached the client, and this record says so.
        ctx.decision = "cancelled"
        ctx.reasons = [{"rule": rule, "message": message}]
        ctx.response_body = ctx.response_sha256 = ""
        await self.recorder.record(ctx, "mcp.outcome")

    async def _refuse_limited(self, ctx: CallContext, send: Send, refusal: Refusal) -> None:
        ctx.detail["retry_after"] = refusal.retry_after
        await self._refuse(ctx, send, 429, refusal.reason, refusal.message,
                           {"retry-after": str(refusal.retry_after)})

    async def _upstream_failed(self, ctx: CallContext, send: Send, exc: UpstreamError,
                               event: str, in_stream: bool = False) -> None:
        ctx.decision = "error"
        ctx.reasons = [{"rule": exc.reason, "message": exc.message}]
        if ctx.jsonrpc_method == "tools/call":
            payload = {"jsonrpc": "2.0", "id": ctx.jsonrpc_id, "result": tool_error_result(
                ctx, f"The upstream MCP server failed: {exc.message}",
                {"request_id": ctx.request_id, "reasons": ctx.reasons})}
            status = 200
        else:
            payload = rpc_error(ctx.jsonrpc_id, GATEWAY_ERROR, exc.message,
                                {"reason": exc.reason, "request_id": ctx.request_id})
            status = 502
        out = json.dumps(payload, separators=(",", ":")).encode()
        await self._finish(ctx, event, out)
        if in_stream:
            await stream_chunk(send, SseEvent(data=out.decode(), event="message").encode())
            await stream_chunk(send, b"", more=False)
            return
        await send_bytes(send, status, out, {"content-type": "application/json"})

    async def _answer(self, ctx: CallContext, send: Send, payload: dict[str, Any]) -> None:
        out = json.dumps(payload, separators=(",", ":")).encode()
        await self._finish(ctx, "mcp.outcome", out)
        await send_bytes(send, 200, out, {"content-type": "application/json"})

    async def _record_quietly(self, ctx: CallContext, reason: str) -> None:
        """Best effort: an internal error is recorded too (the caller is failing closed)."""
        ctx.decision = "error"
        ctx.reasons = [{"rule": reason, "message": "internal gateway error"}]
        try:
            await self.recorder.record(ctx, "mcp.error")
        except Exception:
            log.exception("could not record the gateway error")

    @staticmethod
    async def _send_quietly(send: Send, status: int, payload: dict[str, Any],
                            headers: dict[str, str] | None = None) -> None:
        try:
            await send_json(send, status, payload, headers)
        except Exception:  # the response had already started; nothing more can be said
            log.debug("could not send the error response", exc_info=True)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _until_client_leaves(receive: Receive, work: Awaitable[None],
                               answered: Callable[[], bool] | None = None) -> bool:
    """Run `work` until it ends or the client disconnects, whichever comes first; True if the
    client left (`work` is then cancelled). Exceptions from `work` propagate, and so does a
    cancellation of `work` from elsewhere (the live registry cutting a call off).
    `answered`: once it is true the response is complete (the server then reports a
    disconnect too), and only `work` ending counts."""
    async def client_left() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if answered is not None and answered():
            await asyncio.Event().wait()

    job = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(client_left())
    try:
        await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
        left = watcher.done() and not watcher.cancelled() and watcher.exception() is None
    finally:
        for task in (job, watcher):
            task.cancel()
        await asyncio.gather(job, watcher, return_exceptions=True)
    if job.cancelled():
        if left:
            return True
        raise asyncio.CancelledError()
    job.result()  # re-raise what the relay raised
    return False


def upstream_error(error: Any, ctx: CallContext) -> dict[str, Any]:
    """A JSON-RPC error from the upstream to a data request, as it may leave: code kept, text
    through the call's error-text policy, upstream data dropped (it may quote values)."""
    texts = ctx.error_texts or ErrorTextPolicy(ctx.request_id, withhold=False)
    code = error.get("code") if isinstance(error, dict) else None
    text = error.get("message", "") if isinstance(error, dict) else error
    return {"code": code if type(code) is int else GATEWAY_ERROR,
            "message": texts.public(text),
            "data": {"reason": "upstream.error", "request_id": ctx.request_id}}


def error_result_text(result: dict[str, Any], texts: ErrorTextPolicy) -> dict[str, Any]:
    """A tool result that reports an error, its texts passed through ``texts`` and anything
    else (structured content, other blocks) dropped: an error has no rows to mask."""
    parts = [b.get("text", "") for b in result.get("content") or []
             if isinstance(b, dict) and b.get("type") == "text"]
    text = texts.public("\n".join(str(p) for p in parts) or "error")
    out: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    for key in ("_meta", "resultType"):  # envelope fields, kept (2026-07-28 needs resultType)
        if key in result:
            out[key] = result[key]
    return out


def _json_or_none(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _row_count(result: dict[str, Any]) -> int | None:
    structured = result.get("structuredContent")
    if isinstance(structured, dict):
        if isinstance(structured.get("row_count"), int):
            return structured["row_count"]
        if isinstance(structured.get("rows"), list):
            return len(structured["rows"])
    return None


def _filter_list(result: dict[str, Any], key: str, keep: Callable[[dict], bool]) -> dict[str, Any]:
    items = result.get(key)
    if not isinstance(items, list):
        raise UnmaskableResult(f"{key} list result without a {key} list")
    return {**result, key: [i for i in items if isinstance(i, dict) and keep(i)]}


def _as_tool_shape(result: dict[str, Any]) -> dict[str, Any]:
    """resources/read and prompts/get results, put in CallToolResult shape for the masker."""
    if "contents" in result:  # resources/read
        blocks = []
        for item in result.get("contents") or []:
            if isinstance(item, dict) and "text" in item:
                blocks.append({"type": "text", "text": item["text"]})
            elif isinstance(item, dict) and "blob" in item:
                blocks.append({"type": "resource", "resource": item})
            else:
                blocks.append(item)
        return {"content": blocks}
    blocks = [m.get("content") for m in result.get("messages") or [] if isinstance(m, dict)]
    return {"content": blocks}


def _from_tool_shape(original: dict[str, Any], masked: dict[str, Any]) -> dict[str, Any]:
    blocks = masked.get("content") or []
    if "contents" in original:
        contents = []
        for item, block in zip(original.get("contents") or [], blocks, strict=False):
            if isinstance(item, dict) and "text" in item and isinstance(block, dict):
                contents.append({**item, "text": block.get("text", "")})
            else:
                contents.append(item)
        return {**original, "contents": contents}
    messages = []
    for message, block in zip(original.get("messages") or [], blocks, strict=False):
        messages.append({**message, "content": block} if isinstance(message, dict) else message)
    return {**original, "messages": messages}


__all__ = ["MaskingPolicy", "Pipeline", "UpstreamResponse", "parse_message"]
