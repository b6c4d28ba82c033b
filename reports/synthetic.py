"""A synthetic audit log written through the gateway's real record path.

For the evidence-pack tests and `bench/evidence_pack.py`: `audit_load_generate(records=N, ...)`
simulates N records of gateway traffic (plus a few portal.* events) and appends them with
`audit.services.append_records`, i.e. the real chain code. Nothing is inserted around it:

- SQL is analysed by `policy.sql_analysis.analyze_sql` against the demo schema and checked by
  `policy.sql_policy.check_sql` under real roles (`policy.roles.compile_role_rules`), so denials
  carry the reasons the gateway would give;
- results are masked by `proxy.mask.mask_call_result` with the role's masking policy (keyed
  tokenization with the configured HMAC key), so masking summaries are the real ones;
- every `AuditEntry` is built by `proxy.record.Recorder` from a `CallContext`, exactly as the
  gateway's record stage builds it (argument redaction, response capping and hashing, detail).

The expensive parts (analysis, masking) run once per statement variant and are reused; each
request still gets its own context, request id, response body and hash.

Time is simulated: the records of an N-record load are spread over `days` days from `start`
(weekdays busier than weekends, office hours busier than nights) by handing `append_prepared`
the timestamps through `audit.services.timezone`. Only this generator does that, only while it
appends, and it checks that every stored `at` is the one it meant.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import random
import uuid
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from unittest import mock

from django.db import DEFAULT_DB_ALIAS

from audit import services as audit_services
from audit.services import AuditEntry, append_records

PROJECT = "wardgate-demo"
DATASET = "shop"
CONNECTIONS = ("demo-bigquery", "finance-bq")
DISABLED_ACTOR = "contractor-07"
USER_AGENTS = ("claude-code/2.1.4", "mcp-python/1.9.2", "jupyter-mcp/0.6.0", "cursor/1.3.7")
# Share of records per weekday (Mon..Sun) and per hour of the day (UTC).
WEEKDAY_WEIGHTS = (1.0, 1.05, 1.1, 1.0, 0.9, 0.25, 0.2)
HOUR_WEIGHTS = (0.15, 0.1, 0.1, 0.1, 0.1, 0.15, 0.3, 0.6, 1.0, 1.3, 1.4, 1.4,
                1.2, 1.3, 1.4, 1.4, 1.3, 1.0, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2)

# The demo roles: the analyst role of `portal.services.demo` (without the bytes cap, which
# needs a BigQuery dry run) and a support role that may not read SSNs.
ANALYST_RULES: dict[str, Any] = {
    "tools": ["list_datasets", "list_tables", "get_table_schema", "execute_sql", "dry_run_sql"],
    "sql": {"allowed_statement_classes": ["select"],
            "allowed_tables": ["*.shop.customers", "*.shop.orders", "*.shop.events"]},
    "masking": {"actions": {"email": "partial", "phone": "partial", "card": "partial",
                            "ssn": "redact", "name": "tokenize", "address": "redact",
                            "dob": "partial", "ip": "partial", "iban": "partial"},
                "default_action": "redact", "detect_content": True},
}
SUPPORT_RULES: dict[str, Any] = {
    "tools": ["execute_sql", "list_tables"],
    "sql": {"allowed_statement_classes": ["select"],
            "allowed_tables": ["*.shop.customers", "*.shop.events"],
            "denied_columns": ["*.shop.customers.ssn", "*.shop.customers.card_number"]},
    "masking": {"actions": {"email": "partial", "phone": "partial", "name": "partial"},
                "default_action": "redact", "detect_content": True},
}
COLUMN_CLASSES = {
    "*.*.customers.full_name": "name", "*.*.customers.email": "email",
    "*.*.customers.phone": "phone", "*.*.customers.ssn": "ssn",
    "*.*.customers.card_number": "card", "*.*.customers.date_of_birth": "dob",
    "*.*.customers.street_address": "address", "*.*.customers.ip_address": "ip",
}

# (sql, role) pairs. Those the role allows are "run" against the demo rows and masked.
STATEMENTS: tuple[tuple[str, str], ...] = (
    ("SELECT customer_id, full_name, email, country FROM shop.customers "
     "WHERE country = 'DE' LIMIT 10", "analyst"),
    ("SELECT c.customer_id, c.email, SUM(o.amount) AS total FROM shop.customers AS c "
     "JOIN shop.orders AS o ON o.customer_id = c.customer_id GROUP BY 1, 2 "
     "ORDER BY total DESC LIMIT 5", "analyst"),
    ("SELECT status, COUNT(*) AS n FROM shop.orders GROUP BY status", "analyst"),
    ("SELECT customer_id, phone, card_number FROM shop.customers LIMIT 8", "analyst"),
    ("SELECT event_type, payload FROM shop.events WHERE event_type = 'support_ticket' "
     "LIMIT 5", "analyst"),
    ("SELECT full_name, ssn, date_of_birth FROM shop.customers LIMIT 5", "analyst"),
    ("SELECT customer_id, full_name, email FROM shop.customers LIMIT 6", "support"),
    # Denied by the policy (the reasons come from check_sql / the analyser):
    ("DELETE FROM shop.orders WHERE status = 'cancelled'", "analyst"),
    ("SELECT customer_id, ssn FROM shop.customers LIMIT 20", "support"),
    ("SELECT * FROM shop.orders", "support"),
    ("SELECT email FROM shop.customers; DROP TABLE shop.orders", "analyst"),
    ("SELEC email FROM shop.customers", "analyst"),
)


@dataclass(slots=True)
class LoadResult:
    records: int
    first_seq: int
    last_seq: int
    start: dt.datetime
    end: dt.datetime  # exclusive: every record has start <= at < end
    events: Counter[str] = field(default_factory=Counter)


class _Collector:
    """Stands in for `audit.writer.AuditWriter`: keeps what the Recorder would write."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def write(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


class _Timeline:
    """Timestamps for records 0..n-1, monotonic, inside [start, start + days)."""

    def __init__(self, n: int, start: dt.datetime, days: int) -> None:
        weights: list[float] = []
        for day in range(days):
            weekday = (start + dt.timedelta(days=day)).weekday()
            weights.extend(WEEKDAY_WEIGHTS[weekday] * h for h in HOUR_WEIGHTS)
        total = sum(weights)
        self.cumulative: list[float] = []
        running = 0.0
        for w in weights:
            running += w / total
            self.cumulative.append(running)
        self.weights = [w / total for w in weights]
        self.n = n
        self.start = start

    def at(self, index: int) -> dt.datetime:
        u = (index + 0.5) / self.n
        hour = min(bisect.bisect_left(self.cumulative, u), len(self.cumulative) - 1)
        before = self.cumulative[hour] - self.weights[hour]
        within = (u - before) / self.weights[hour] if self.weights[hour] else 0.0
        seconds = (hour + min(max(within, 0.0), 0.999999)) * 3600
        return self.start + dt.timedelta(seconds=seconds)


class _Clock:
    """Replaces `audit.services.timezone` while a batch is appended: hands out planned times."""

    def __init__(self, times: list[dt.datetime]) -> None:
        self._times = deque(times)

    def now(self) -> dt.datetime:
        return self._times.popleft()


@contextmanager
def _simulated_clock(times: list[dt.datetime]) -> Iterator[None]:
    with mock.patch.object(audit_services, "timezone", _Clock(times)):
        yield


@dataclass(frozen=True, slots=True)
class _Variant:
    """One statement under one role, analysed once; masked results for allowed ones."""

    sql: str
    role: str
    facts: Any  # proxy.context.SqlFacts
    reasons: tuple[Any, ...]  # policy.sql_policy.Reason
    results: tuple[tuple[str, list[dict[str, Any]], int], ...]  # (result json, masking, rows)


class _Scenario:
    """Everything the load reuses: roles, analysed statements, masked results, actors."""

    def __init__(self, rng: random.Random) -> None:
        from bigquery_mcp.demo_data import TABLES, generate
        from policy.classify import ColumnClassifier
        from policy.roles import compile_role_rules
        from proxy.config import gateway_config

        key = gateway_config().token_key
        self.roles = {"analyst": compile_role_rules("analyst", ANALYST_RULES, token_key=key),
                      "support": compile_role_rules("support", SUPPORT_RULES, token_key=key)}
        self.classifier = ColumnClassifier.from_config(COLUMN_CLASSES)
        self.schema = {f"{PROJECT}.{DATASET}.{t.name}": {f.name.lower(): f.field_type
                                                        for f in t.schema} for t in TABLES}
        self.data = generate(customers=120, seed=4242)
        self.variants = [self._variant(sql, role, rng) for sql, role in STATEMENTS]
        self.allowed = [v for v in self.variants if not v.reasons]
        self.denied = [v for v in self.variants if v.reasons]
        self.actors = [(f"analyst{i:02d}", "analyst", "personal_token" if i % 3 else "oidc")
                       for i in range(1, 31)]
        self.actors += [(f"support{i:02d}", "support", "oidc") for i in range(1, 6)]
        self.actors += [("svc-dashboard", "analyst", "personal_token"),
                        (DISABLED_ACTOR, "analyst", "personal_token")]

    def _variant(self, sql: str, role_name: str, rng: random.Random) -> _Variant:
        from policy.sql_analysis import SqlAnalysisError, analyze_sql
        from policy.sql_policy import check_sql, reason_for_error
        from proxy.authorize import column_plan
        from proxy.context import SqlFacts
        from proxy.mask import mask_call_result

        role = self.roles[role_name]
        facts = SqlFacts(text=sql)
        try:
            analysis = analyze_sql(sql, default_project=PROJECT, default_dataset=DATASET,
                                   schema=self.schema)
        except SqlAnalysisError as exc:
            return _Variant(sql, role_name, facts, (reason_for_error(exc),), ())
        facts.fingerprint = analysis.fingerprint
        facts.tables = tuple(sorted(analysis.tables))
        facts.statement_classes = analysis.statement_classes
        reasons = check_sql(analysis, role.sql)
        if reasons:
            return _Variant(sql, role_name, facts, tuple(reasons), ())
        plan = column_plan(analysis, self.classifier, {})
        results = []
        for offset in range(3):
            rows = self._run(sql, offset * 7)
            columns = [{"name": name, "type": "STRING"} for name in (rows[0] if rows else {})]
            payload = {"columns": columns, "rows": rows, "row_count": len(rows),
                       "total_rows": len(rows) + rng.randrange(0, 400), "truncated": False,
                       "total_bytes_processed": rng.randrange(10_000, 5_000_000)}
            result = {"content": [{"type": "text", "text": json.dumps(payload, separators=(",", ":"))}],
                      "structuredContent": payload, "isError": False}
            masked, summary = mask_call_result(result, plan, role.masking)
            results.append((json.dumps(masked, separators=(",", ":"), ensure_ascii=False),
                            summary.as_list(), len(rows)))
        return _Variant(sql, role_name, facts, (), tuple(results))

    def _run(self, sql: str, offset: int) -> list[dict[str, Any]]:
        """A stand-in for BigQuery: rows shaped like the statement's output."""
        customers = self.data["customers"][offset:]
        if "GROUP BY status" in sql:
            counts = Counter(o["status"] for o in self.data["orders"])
            return [{"status": s, "n": n} for s, n in sorted(counts.items())]
        if "SUM(o.amount)" in sql:
            return [{"customer_id": c["customer_id"], "email": c["email"],
                     "total": f"{(c['customer_id'] * 37) % 5000 + 10:.2f}"} for c in customers[:5]]
        if "FROM shop.events" in sql:
            events = [e for e in self.data["events"] if e["event_type"] == "support_ticket"]
            return [{"event_type": e["event_type"], "payload": e["payload"]}
                    for e in events[offset:offset + 5]]
        select = sql.split("SELECT ", 1)[1].split(" FROM ", 1)[0]
        names = [part.strip().split(".")[-1] for part in select.split(",")]
        limit = int(sql.rsplit("LIMIT ", 1)[1]) if "LIMIT " in sql else 10
        return [{n: c[n] for n in names} for c in customers[:limit]]


# Scenario weights: how often each kind of request happens.
_KINDS: tuple[tuple[str, float], ...] = (
    ("sql_allowed", 40), ("sql_denied", 8), ("tool_allowed", 8), ("tool_not_granted", 2),
    ("plain", 20), ("notification", 8), ("rejected", 5), ("upstream_error", 1),
    ("withheld", 0.5), ("session_closed", 2), ("stream_opened", 1), ("server_request", 0.3),
    ("catalog_changed", 0.1), ("hold", 0.3), ("portal", 0.4),
)
_PLAIN_METHODS = ("initialize", "tools/list", "ping", "resources/list")
_REJECTIONS = (("auth.unknown_token", "Unknown or revoked token", "personal_token"),
               ("auth.expired_token", "This token has expired", "personal_token"),
               ("auth.invalid_token", "The bearer token is not valid here", "oidc"),
               ("access.no_grant", "You have no grant on this connection", "oidc"),
               ("request.malformed_json", "Parse error: the body is not JSON", "personal_token"))
_PORTAL_EVENTS = ("portal.grant_created", "portal.grant_revoked", "portal.token_issued",
                  "portal.token_revoked", "portal.account_created", "portal.quarantine_created",
                  "portal.quarantine_lifted", "portal.audit_searched", "portal.pack_exported",
                  "portal.role_updated")


class _Generator:
    def __init__(self, n: int, start: dt.datetime, days: int, seed: int) -> None:
        from proxy.config import gateway_config
        from proxy.record import Recorder

        self.rng = random.Random(seed)
        self.scenario = _Scenario(self.rng)
        self.collector = _Collector()
        self.recorder = Recorder(cast(Any, self.collector), gateway_config().audit_response_cap_bytes)
        self.timeline = _Timeline(n, start, days)
        self.n = n
        self.emitted = 0
        self.kinds = [k for k, _ in _KINDS]
        self.weights = [w for _, w in _KINDS]
        self.disabled_at_index = n * 2 // 5  # the contractor is disabled 40% into the period
        self.disabled = False
        self.sessions: dict[str, str] = {}

    # -- one request --------------------------------------------------------------------

    def next_request(self) -> list[tuple[int, AuditEntry]]:
        """The records of one simulated request, each with its index on the timeline."""
        left = self.n - self.emitted
        if not self.disabled and self.emitted >= self.disabled_at_index:
            kind = "disable"
        else:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            if left < 2 and kind in {"sql_allowed", "tool_allowed", "upstream_error",
                                     "withheld", "hold"}:
                kind = "plain"
        entries = (_run_now(self._build(kind)) if kind not in {"disable", "portal"}
                   else self._portal(kind))
        out = [(self.emitted + i, e) for i, e in enumerate(entries[:left])]
        self.emitted += len(out)
        return out

    def _identity(self) -> tuple[Any, str]:
        from proxy.context import Identity

        name, role, method = self.rng.choice(self.scenario.actors)
        if name == DISABLED_ACTOR and self.disabled:
            return None, role
        user_id = 1000 + self.scenario.actors.index((name, role, method))
        groups = (role,)
        token_id = user_id * 10 if method == "personal_token" else None
        return Identity(user_id, name, groups, method, token_id=token_id), role

    def _context(self, identity: Any) -> Any:
        from proxy.context import CallContext

        connection = CONNECTIONS[0] if self.rng.random() < 0.85 else CONNECTIONS[1]
        ip = f"10.20.{self.rng.randrange(0, 8)}.{self.rng.randrange(2, 250)}"
        session_key = identity.username if identity is not None else ip
        session = self.sessions.get(session_key)
        if session is None or self.rng.random() < 0.02:
            session = self.sessions[session_key] = uuid.UUID(int=self.rng.getrandbits(128)).hex
        ctx = CallContext(connection_slug=connection, source_ip=ip,
                          user_agent=self.rng.choice(USER_AGENTS), mcp_session_id=session,
                          protocol_version="2026-07-28",
                          request_id=uuid.UUID(int=self.rng.getrandbits(128)).hex)
        ctx.identity = identity
        ctx.auth_method = identity.auth_method if identity is not None else "none"
        return ctx

    async def _build(self, kind: str) -> list[AuditEntry]:
        from proxy.context import SqlFacts

        identity, role = self._identity()
        ctx = self._context(identity)
        rec = self.recorder
        self.collector.entries = []
        rid = self.rng.randrange(1, 10_000)
        if identity is None or kind == "rejected":
            rule, message, method = (("auth.account_disabled", "This account is disabled",
                                      "personal_token") if identity is None
                                     else self.rng.choice(_REJECTIONS))
            ctx.identity, ctx.auth_method = None, method
            ctx.decision, ctx.reasons = "deny", [{"rule": rule, "message": message}]
            rec.keep_response(ctx, json.dumps({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32001, "message": message,
                "data": {"reason": rule, "request_id": ctx.request_id}}}).encode())
            await rec.record(ctx, "mcp.rejected")
            return self.collector.entries
        if kind in {"sql_allowed", "sql_denied", "upstream_error", "withheld", "hold"}:
            pool = self.scenario.denied if kind == "sql_denied" else self.scenario.allowed
            candidates = [v for v in pool if v.role == role] or pool
            variant = self.rng.choice(candidates)
            ctx.jsonrpc_method, ctx.tool = "tools/call", "execute_sql"
            ctx.arguments = {"sql": variant.sql, "max_rows": 100}
            f = variant.facts
            ctx.sql = SqlFacts(f.text, f.fingerprint, f.tables, f.statement_classes,
                               self.rng.randrange(10_000, 5_000_000) if not variant.reasons
                               else None)
            if variant.reasons:
                ctx.deny(variant.reasons)
                await rec.record(ctx, "mcp.decision")
                return self.collector.entries
            ctx.role = role
            if kind == "hold":
                ctx.decision = "hold"
                ctx.detail["approval_rule"] = "large-export"
                await rec.record(ctx, "mcp.decision")
                return self.collector.entries
            ctx.decision = "allow"
            await rec.record(ctx, "mcp.decision")
            ctx.upstream_latency_ms = round(self.rng.uniform(80, 2500), 3)
            if kind == "upstream_error":
                ctx.decision = "error"
                ctx.reasons = [{"rule": "upstream.unavailable",
                                "message": "The upstream MCP server did not answer"}]
                body = json.dumps({"jsonrpc": "2.0", "id": rid, "error": {
                    "code": -32002, "message": "The upstream MCP server failed"}}).encode()
            elif kind == "withheld":
                ctx.decision = "withheld"
                ctx.reasons = [{"rule": "mask.unmaskable",
                                "message": "binary block in a result that may hold PII"}]
                body = json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"isError": True}}).encode()
            else:
                result_json, masking, rows = self.rng.choice(variant.results)
                ctx.masking, ctx.row_count = masking, rows
                body = f'{{"jsonrpc":"2.0","id":{rid},"result":{result_json}}}'.encode()
            rec.keep_response(ctx, body)
            await rec.record(ctx, "mcp.outcome")
            return self.collector.entries
        if kind in {"tool_allowed", "tool_not_granted"}:
            ctx.jsonrpc_method = "tools/call"
            if kind == "tool_not_granted":
                ctx.tool = self.rng.choice(["delete_table", "export_bucket", "run_python"])
                ctx.arguments = {"target": "shop.orders"}
                ctx.deny([_reason("tool.not_granted",
                                  f"No role of yours allows the tool {ctx.tool!r} here")])
                await rec.record(ctx, "mcp.decision")
                return self.collector.entries
            ctx.tool = self.rng.choice(["list_tables", "get_table_schema", "list_datasets"])
            ctx.arguments = {"dataset": DATASET}
            ctx.decision, ctx.role = "allow", role
            await rec.record(ctx, "mcp.decision")
            ctx.upstream_latency_ms = round(self.rng.uniform(20, 300), 3)
            body = json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"content": [
                {"type": "text", "text": json.dumps({"tables": ["customers", "events", "orders"]})}
            ]}}, separators=(",", ":")).encode()
            rec.keep_response(ctx, body)
            await rec.record(ctx, "mcp.outcome")
            return self.collector.entries
        ctx.decision = "allow"
        if kind == "plain":
            ctx.jsonrpc_method = self.rng.choice(_PLAIN_METHODS)
            ctx.upstream_latency_ms = round(self.rng.uniform(5, 120), 3)
            rec.keep_response(ctx, json.dumps({"jsonrpc": "2.0", "id": rid, "result": {}}).encode())
            await rec.record(ctx, "mcp.request")
        elif kind == "notification":
            ctx.jsonrpc_method = self.rng.choice(["notifications/initialized",
                                                  "notifications/cancelled"])
            await rec.record(ctx, "mcp.notification")
        elif kind == "session_closed":
            ctx.jsonrpc_method = "DELETE"
            await rec.record(ctx, "mcp.session_closed")
        elif kind == "stream_opened":
            ctx.jsonrpc_method = "GET"
            await rec.record(ctx, "mcp.stream_opened")
        elif kind == "server_request":
            ctx.jsonrpc_method, ctx.decision = "sampling/createMessage", "deny"
            ctx.arguments = {"messages": [{"role": "user", "content": "summarise"}]}
            await rec.record(ctx, "mcp.server_request")
        else:  # catalog_changed
            ctx.jsonrpc_method, ctx.decision = "tools/list", "info"
            ctx.detail = {"new_or_changed_tools": ["execute_sql"],
                          "hidden_until_accepted": ["execute_sql"]}
            await rec.record(ctx, "catalog.changed")
        return self.collector.entries

    def _portal(self, kind: str) -> list[AuditEntry]:
        """What the portal records (portal.* events): account and access changes, reviews."""
        admin = self.rng.choice(["admin", "secops-lead"])
        base = {"auth_method": "session", "source_ip": "10.0.0.5",
                "user_agent": "Mozilla/5.0 (portal)", "decision": "info"}
        if kind == "disable":
            self.disabled = True
            return [AuditEntry(event="portal.account_disabled", actor=admin, **base,
                               request_id=uuid.UUID(int=self.rng.getrandbits(128)).hex,
                               detail={"username": DISABLED_ACTOR,
                                       "reason": "contract ended"})]
        event = self.rng.choice(_PORTAL_EVENTS)
        detail: dict[str, Any] = {"username": self.rng.choice(self.scenario.actors)[0]}
        if event.startswith("portal.grant"):
            detail.update(role=self.rng.choice(["analyst", "support"]), connection=CONNECTIONS[0])
        if event == "portal.audit_searched":
            detail = {"filters": {"decision": "deny"}, "results": self.rng.randrange(1, 500)}
        if event == "portal.pack_exported":
            detail = {"period": "previous month"}
        if kind == "portal" and self.rng.random() < 0.2:
            event, detail = "portal.approval_decided", {
                "outcome": self.rng.choice(["approved", "denied"]),
                "request_id": uuid.UUID(int=self.rng.getrandbits(128)).hex}
        return [AuditEntry(event=event, actor=admin, **base,
                           request_id=uuid.UUID(int=self.rng.getrandbits(128)).hex,
                           detail=detail)]


def _run_now(coro: Coroutine[Any, Any, list[AuditEntry]]) -> list[AuditEntry]:
    """Run a coroutine that never suspends (the Recorder writing to a `_Collector`) without
    the cost of an event loop per request."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(list[AuditEntry], done.value)
    coro.close()
    raise RuntimeError("the record stage suspended: it no longer writes synchronously")


def _reason(rule: str, message: str) -> Any:
    from policy.sql_policy import Reason

    return Reason(rule, message)


def audit_load_generate(
    *,
    records: int,
    start: dt.datetime,
    days: int = 30,
    seed: int = 20260301,
    batch_size: int = 2000,
    using: str = DEFAULT_DB_ALIAS,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Append `records` synthetic audit records spread over [start, start + days).

    Deterministic for a given (records, start, days, seed) apart from the chain position:
    appended after whatever the log already holds.
    """
    if records < 1:
        raise ValueError("records must be at least 1")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    gen = _Generator(records, start, days, seed)
    result = LoadResult(records=0, first_seq=0, last_seq=0, start=start,
                        end=start + dt.timedelta(days=days))
    pending: list[tuple[int, AuditEntry]] = []

    def flush() -> None:
        times = [gen.timeline.at(i) for i, _ in pending]
        with _simulated_clock(times):
            stored = append_records([e for _, e in pending], using=using)
        if stored[0].at != times[0] or stored[-1].at != times[-1]:
            raise RuntimeError("audit.services no longer stamps records through "
                               "timezone.now(); update reports.synthetic")
        result.first_seq = result.first_seq or stored[0].seq
        result.last_seq = stored[-1].seq
        result.records += len(stored)
        result.events.update(r.event for r in stored)
        pending.clear()
        if progress is not None:
            progress(result.records)

    while gen.emitted < records:
        pending.extend(gen.next_request())
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return result
