"""Stage record (proxy.stages): every decision and outcome goes to the hash-chained audit log
(AU-2, AU-3, AU-9) and is durably committed before the gateway acts on it. If the write fails,
the call fails closed."""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from audit.services import AuditEntry
from audit.writer import AuditWriter
from proxy import metrics
from proxy.context import CallContext

_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential|authorization|"
                         r"private[_-]?key|cookie", re.IGNORECASE)
REDACTED = "[REDACTED]"


class RecordFailed(Exception):
    """The audit write failed; the caller must not forward or release anything."""


def redact_arguments(value: Any, depth: int = 0) -> Any:
    """Arguments as recorded: values under secret-looking keys are replaced."""
    if depth > 20:
        return REDACTED
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k)
                    else redact_arguments(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_arguments(v, depth + 1) for v in value]
    return value


class Recorder:
    def __init__(self, writer: AuditWriter, response_cap_bytes: int) -> None:
        self.writer = writer
        self.response_cap = response_cap_bytes

    def keep_response(self, ctx: CallContext, body: bytes) -> None:
        """Remember the response exactly as it leaves: capped text plus a hash of all of it."""
        ctx.result_bytes = len(body)
        ctx.response_sha256 = hashlib.sha256(body).hexdigest()
        ctx.response_body = body[: self.response_cap].decode("utf-8", errors="replace")

    async def record(self, ctx: CallContext, event: str) -> None:
        """Record `event` for the call as it stands now; returns once it is durable."""
        started = perf_counter()
        try:
            await self.writer.write(_entry(ctx, event))
        except Exception as exc:
            raise RecordFailed(str(exc)) from exc
        finally:
            _observe(event, started)

    def submit(self, ctx: CallContext, event: str) -> PendingRecord:
        """Queue the record of the call as it stands now (later changes to `ctx` are not in
        it) and return at once; nothing may act on the record until `written()` returns."""
        started = perf_counter()
        try:
            future = self.writer.submit(_entry(ctx, event))
        except Exception as exc:
            raise RecordFailed(str(exc)) from exc
        return PendingRecord(future, event, started)


def _observe(event: str, started: float) -> None:
    (metrics.observe_record_decision if event == "mcp.decision"
     else metrics.observe_record_outcome)(perf_counter() - started)


@dataclass(slots=True)
class PendingRecord:
    """A record queued for the audit writer, not yet known to be durable."""

    future: asyncio.Future[Any]
    event: str
    started: float

    async def written(self) -> None:
        """Returns once the record is committed; raises RecordFailed if it cannot be."""
        try:
            await self.future
        except Exception as exc:  # a cancellation is not an Exception: it passes as it is
            raise RecordFailed(str(exc)) from exc
        finally:
            _observe(self.event, self.started)


def _entry(ctx: CallContext, event: str) -> AuditEntry:
    sql = ctx.sql
    return AuditEntry(
        request_id=ctx.request_id,
        event=event,
        actor=ctx.actor,
        auth_method=ctx.auth_method,
        source_ip=ctx.source_ip,
        user_agent=ctx.user_agent[:512],
        connection=ctx.connection_slug,
        mcp_session_id=ctx.mcp_session_id[:200],
        jsonrpc_method=ctx.jsonrpc_method[:100],
        tool=ctx.tool[:200],
        arguments=redact_arguments(ctx.arguments) if ctx.arguments is not None else None,
        sql_text=sql.text if sql else "",
        sql_fingerprint=sql.fingerprint if sql else "",
        decision=ctx.decision,
        reasons=list(ctx.reasons),
        masking=list(ctx.masking),
        row_count=ctx.row_count,
        result_bytes=ctx.result_bytes,
        response_body=ctx.response_body if event != "mcp.decision" else "",
        response_sha256=ctx.response_sha256 if event != "mcp.decision" else "",
        upstream_latency_ms=ctx.upstream_latency_ms,
        detail=_detail(ctx),
    )


def _detail(ctx: CallContext) -> dict[str, Any]:
    detail = dict(ctx.detail)
    if ctx.role:
        detail["role"] = ctx.role
    if ctx.protocol_version:
        detail["protocol_version"] = ctx.protocol_version
    if ctx.sql is not None:
        detail["sql"] = {"tables": list(ctx.sql.tables),
                         "statement_classes": list(ctx.sql.statement_classes),
                         "bytes_processed": ctx.sql.bytes_processed}
    if ctx.identity is not None and ctx.identity.token_id is not None:
        detail["token_id"] = ctx.identity.token_id
    return detail
