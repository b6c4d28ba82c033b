"""The gateway's data path: every MCP request at /mcp/<connection-slug> runs the stages of
`proxy.stages.default_stages()` top to bottom (the order and what each does are in that
module), then the handler for its method (`proxy.handlers`).

This module holds what outlives one call (the services the stages and handlers share: caches,
pools, the recorder, the live registry) and the two entry points. Any internal error fails
closed: the client gets an error, never unpoliced or unrecorded data.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable
from time import perf_counter
from typing import Any

import aiohttp
from django.db import DatabaseError

from audit.writer import AuditWriter
from proxy import jsonrpc, metrics
from proxy.access import AccessCache
from proxy.admission import Admission
from proxy.asgi_io import Receive, Scope, Send
from proxy.authenticate import Authenticator, AuthFailure
from proxy.authorize import SqlToolContext
from proxy.bigquery_facts import BigQueryFacts
from proxy.call import Call
from proxy.config import GatewayConfig
from proxy.context import CallContext
from proxy.directory import ConnectionDirectory, UpstreamSpec
from proxy.google_auth import STDIO_TOKEN_ENV, GoogleTokenSource, google_auth_config
from proxy.handlers import handler_for
from proxy.handlers.disconnect import cancelling, until_client_leaves
from proxy.handlers.respond import cancelled, record_quietly, refuse, send_quietly
from proxy.invalidation import RevisionWatcher
from proxy.live import LiveRegistry
from proxy.presets import sql_tool_spec
from proxy.record import Recorder, RecordFailed
from proxy.sql_worker import default_sql_workers
from proxy.stages import Stage, default_stages, run_stages
from proxy.store import GatewayStore
from proxy.tool_catalog import ToolCatalog
from proxy.transports.http import HttpUpstream, new_session
from proxy.transports.stdio import StdioCommand, StdioSessionPool
from proxy.verdict import Verdict
from wardgate.logs import request_id

log = logging.getLogger("wardgate.gateway")

__all__ = ["Pipeline"]


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
        self.recorder = Recorder(AuditWriter(on_queue_depth=metrics.audit_queue_depth,
                                             on_batch=metrics.audit_batch_committed),
                                 config.audit_response_cap_bytes)
        self.stdio = StdioSessionPool()
        self.facts: dict[str, tuple[UpstreamSpec, BigQueryFacts]] = {}
        self.tokens: dict[str, tuple[dict, str, GoogleTokenSource | None]] = {}
        self.hold = config.hold
        self.live = LiveRegistry(store)
        # Calls in flight that read masked columns, per (connection, MCP session): while one
        # runs, texts the upstream sends on any stream of that session are withheld
        # (proxy.handlers.relay), since stdio and GET streams cannot say which call they
        # belong to.
        self.masked_calls: Counter[tuple[str, str]] = Counter()
        self._sweeps: set[asyncio.Task[Any]] = set()
        self._metrics_flush: asyncio.Task[None] | None = None
        self.watcher = RevisionWatcher(store, config.revision_poll_seconds,
                                       [self.invalidate_caches, self._schedule_sweep])
        self.stages: list[Stage] = default_stages(
            authenticator=self.authenticator, directory=self.directory, access=self.access,
            live=self.live, admission=self.admission, upstream_for=self._upstream)
        self.stage_timers = tuple(metrics.stage_timer(stage.name) for stage in self.stages)

    def keep_task(self, task: asyncio.Task[Any]) -> None:
        """Hold a reference to a background task (an upstream cancellation) until it ends."""
        self._sweeps.add(task)
        task.add_done_callback(self._sweeps.discard)

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
        self._metrics_flush = asyncio.get_running_loop().create_task(metrics.flush_every(1.0))

    async def stop(self) -> None:
        if self._metrics_flush is not None:
            self._metrics_flush.cancel()
            self._metrics_flush = None
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
        started = perf_counter()
        ctx = self._context(scope, headers, slug)
        token = request_id.set(ctx.request_id)

        async def refuse_it() -> None:
            if reason != "request.repeated_header":
                await self._attribute(ctx, headers)
            await refuse(self.recorder, ctx, send,
                         Verdict.refuse(status, reason, message, headers=response_headers))

        try:
            ok = await self._failing_closed(ctx, send, refuse_it())
            _count(ctx, None, ok, started)
        finally:
            request_id.reset(token)

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
        started = perf_counter()
        ctx = self._context(scope, headers, slug)
        token = request_id.set(ctx.request_id)  # for every log line while serving this call
        try:
            call = await self._serve(ctx, headers, method, body, receive, send)
            _count(ctx, call, call.ok, started)
        finally:
            request_id.reset(token)

    async def _serve(self, ctx: CallContext, headers: dict[str, str], method: str, body: bytes,
                     receive: Receive, send: Send) -> Call:
        if method != "POST":  # GET relays watch the client themselves
            call = Call(ctx, headers, method, body, send, receive)
            call.ok = await self._failing_closed(ctx, send, self._run(call))
            return call
        # The body is read: the next message can only be the client leaving. If it goes, the
        # call is cancelled (upstream too) and recorded as cancelled, as the client saw it.
        sent: list[bool] = []

        async def send_noting_the_end(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                sent.append(True)

        call = Call(ctx, headers, method, body, send_noting_the_end, receive)

        async def watched() -> None:
            try:
                client_left = await until_client_leaves(receive, self._run(call),
                                                        answered=lambda: bool(sent))
            except asyncio.CancelledError:
                if cancelling():
                    raise  # the server itself is stopping this request
                # Cut off from here (access revoked): say so, and record what was said.
                await cancelled(self.recorder, ctx, "access.revoked",
                                "Access was revoked during the call")
                await send_quietly(send, 403, jsonrpc.error(
                    ctx.jsonrpc_id, jsonrpc.POLICY_DENIED, "Access was revoked during the call",
                    jsonrpc.refusal_data("access.revoked", ctx.request_id)))
                return
            if client_left:
                await cancelled(self.recorder, ctx, "client.gone",
                                "The client went away before the answer was sent")

        call.ok = await self._failing_closed(ctx, send, watched())
        return call

    async def _run(self, call: Call) -> None:
        """The stages in order, then the handler; what a stage holds (admission slot, live
        tracking) is released once the handler is done."""
        with call.exits:
            verdict = await run_stages(self.stages, call, self.stage_timers)
            if verdict is not None:
                await refuse(self.recorder, call.ctx, call.send, verdict)
                return
            await handler_for(call)(self, call)

    async def _failing_closed(self, ctx: CallContext, send: Send, work: Awaitable[None]) -> bool:
        """Run `work`; any failure inside ends in a clear error to the client, never in data.
        False if it failed so."""
        try:
            await work
            return True
        except DatabaseError:
            log.warning("database unavailable; failing closed", exc_info=True)
            await send_quietly(send, 503, jsonrpc.error(
                ctx.jsonrpc_id, jsonrpc.GATEWAY_ERROR, "The gateway's database is unavailable; "
                "nothing was done", jsonrpc.refusal_data("database.unavailable", ctx.request_id)),
                {"retry-after": str(self.config.admission.retry_after_seconds)})
        except RecordFailed:
            log.exception("audit write failed; failing closed")
            await send_quietly(send, 503, jsonrpc.error(
                ctx.jsonrpc_id, jsonrpc.GATEWAY_ERROR,
                "The audit trail is unavailable; nothing was done",
                jsonrpc.refusal_data("audit.unavailable", ctx.request_id)))
        except Exception:
            log.exception("gateway error; failing closed")
            await record_quietly(self.recorder, ctx, "gateway.internal_error")
            await send_quietly(send, 500, jsonrpc.error(
                ctx.jsonrpc_id, jsonrpc.GATEWAY_ERROR,
                "Internal gateway error; the call was not completed",
                jsonrpc.refusal_data("gateway.internal_error", ctx.request_id)))
        return False

    # ------------------------------------------------------------------ shared services

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

    def sql_tool(self, spec: UpstreamSpec, tool: str,
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
            # The spec's comparison leaves out the credentials: a rotated key keeps the facts
            # (and their schema version) but gets a new BigQuery client.
            facts = cached[1]
            facts.use_credentials(spec.credentials)
        return SqlToolContext(sql_argument=argument or parsed[0], project=spec.bigquery_project,
                              dataset=spec.default_dataset or None, facts=facts,
                              classifier=spec.classifier, statement_classes=parsed[1])


def _count(ctx: CallContext, call: Call | None, ok: bool, started: float) -> None:
    """The call's figures (proxy.metrics), once it is answered; never fails the call."""
    try:
        tool = ""
        if ctx.jsonrpc_method == "tools/call":  # only an accepted name is a label of its own
            tool = ctx.tool if call is not None and call.tool_accepted else metrics.OTHER
        metrics.call_finished(
            connection=metrics.connection_label(
                ctx.connection_slug, call is not None and call.spec is not None),
            method=ctx.jsonrpc_method, tool=tool, decision=ctx.decision if ok else "error",
            reasons=ctx.reasons, masking=ctx.masking,
            upstream_latency_ms=ctx.upstream_latency_ms,
            upstream_error="upstream_error" in ctx.detail, seconds=perf_counter() - started)
    except Exception:  # noqa: BLE001 - a figure is never worth a failed call
        log.warning("could not count a call in the metrics", exc_info=True)
