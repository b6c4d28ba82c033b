"""The audit log, read once per pack.

One keyset pass over the period's records (seq order, `seq > last LIMIT n`, no long transaction)
writes every record-level population at once: all records, the access decisions ("calls"), the
denials and the masking actions; gathers the figures (calls per day by decision, denials by
rule, masking by class, field completeness, who did what); and notes which records belong to the
administrative event groups (reports.evidence.events). Memory stays flat: rows go straight to
CSV, aggregates are keyed by small vocabularies (day, decision, rule, class, actor).

The pass reads with a plain DB-API cursor (no ORM row conversion): at a million records the
per-row cost is the whole budget. Counts to reconcile against are taken separately in SQL
(`record_counts`: one GROUP BY scan).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection
from django.db.models import Count, F, Func, IntegerField, Max, Min, Sum

from reports.pack.archive import PackArchive, SideCsv

from .base import (
    CALL_EVENTS,
    DATA_METHODS,
    GATEWAY_EVENTS,
    Evidence,
    PackScope,
    Reservoir,
)
from .events import GROUPS

# Positions in the rows `_reader` yields (`day` is derived from `at`).
(SEQ, AT, DAY, EVENT, REQUEST_ID, ACTOR, AUTH, IP, CONN, SESSION, METHOD, TOOL, DECISION,
 REASONS, MASKING, ROLE, FINGERPRINT, ROWS, BYTES, RESPONSE_SHA, PREV_HASH, HASH) = range(22)
_INDEX = {"request_id": REQUEST_ID, "actor": ACTOR, "auth_method": AUTH, "source_ip": IP,
          "connection": CONN, "jsonrpc_method": METHOD, "tool": TOOL, "decision": DECISION,
          "response_sha256": RESPONSE_SHA}

RECORD_COLUMNS = ("seq", "at", "event", "request_id", "actor", "auth_method", "source_ip",
                  "connection", "mcp_session_id", "jsonrpc_method", "tool", "decision",
                  "reason_rules", "role", "sql_fingerprint", "row_count", "result_bytes",
                  "masked_cells", "response_sha256", "prev_hash", "hash")
RECORD_TEXT = (3, 4, 6, 7, 8, 9, 10, 12, 13)
CALL_COLUMNS = ("seq", "at", "day", "event", "request_id", "actor", "auth_method", "source_ip",
                "connection", "jsonrpc_method", "tool", "decision", "role", "reason_rules",
                "sql_fingerprint", "hash")
CALL_TEXT = (4, 5, 7, 8, 9, 10, 12, 13)
DENIED_COLUMNS = ("seq", "at", "event", "request_id", "actor", "auth_method", "source_ip",
                  "connection", "jsonrpc_method", "tool", "reason_rules", "reason_messages",
                  "tables", "columns", "sql_fingerprint", "hash")
DENIED_TEXT = (3, 4, 6, 7, 8, 9, 10, 11, 12, 13)
MASKING_COLUMNS = ("seq", "at", "day", "request_id", "actor", "connection", "tool", "role",
                   "column", "class", "action", "cells", "hash")
MASKING_TEXT = (3, 4, 5, 6, 7, 8, 9, 10)

# AU-3: what every record of a kind must say (type, time, where, source, outcome, identity).
_COMMON_REQUIRED = ("request_id", "source_ip", "connection", "decision", "auth_method")


def required_fields(event: str, method: str) -> tuple[str, ...]:
    if event in GATEWAY_EVENTS:
        needed = _COMMON_REQUIRED
        if event != "mcp.rejected":
            # A request refused before its body was read (authentication, unknown connection)
            # has no method yet, and only a refused caller may be unidentified.
            needed += ("jsonrpc_method", "actor")
        if event in {"mcp.decision", "mcp.outcome"} and method in DATA_METHODS:
            needed += ("tool",)
        if event == "mcp.outcome":
            needed += ("response_sha256",)
        return needed
    if event.startswith("portal."):
        return ("actor",)
    return ()


class JsonArrayLength(Func):
    """Elements in a JSON array column (SQLite json_array_length, PostgreSQL
    jsonb_array_length)."""

    output_field = IntegerField()

    def as_sqlite(self, compiler: Any, conn: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, conn, function="JSON_ARRAY_LENGTH", **extra)

    def as_postgresql(self, compiler: Any, conn: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, conn, function="JSONB_ARRAY_LENGTH", **extra)


@dataclass(slots=True)
class RecordCounts:
    """The record-level populations counted in SQL, to reconcile the CSVs with."""

    records: int
    calls: int
    denied: int
    masking_actions: int
    groups: dict[str, int]  # administrative event groups (events.GROUPS) by name
    event_types: list[tuple[str, str, int, int, int]]  # (event, decision, n, first, last seq)


def record_counts(scope: PackScope) -> RecordCounts:
    """One GROUP BY event, decision over the period (one scan): every count the stream's files
    must reconcile with follows from it, since calls, denials and the event groups are defined
    by event and decision alone."""
    rows = (scope.records().values("event", "decision")
            .annotate(n=Count("id"), first=Min("seq"), last=Max("seq"),
                      masking=Sum(JsonArrayLength(F("masking"))))
            .order_by("event", "decision"))
    types: list[tuple[str, str, int, int, int]] = []
    records = calls = denied = masking = 0
    groups = {g.name: 0 for g in GROUPS}
    for r in rows:
        event, decision, n = r["event"], r["decision"], r["n"]
        types.append((event, decision, n, r["first"], r["last"]))
        records += n
        masking += r["masking"] or 0
        if event in CALL_EVENTS:
            calls += n
        if decision == "deny":
            denied += n
        for g in GROUPS:
            if g.matches(event, decision):
                groups[g.name] += n
    return RecordCounts(records, calls, denied, masking, groups, types)


def masking_by_class_sql(scope: PackScope) -> list[tuple[str, str, int, int]]:
    """(class, action, masked cells, records) in SQL, unnesting each record's masking list."""
    if connection.vendor == "postgresql":
        sql = ("SELECT m->>'class', m->>'action', SUM((m->>'count')::bigint), "
               "COUNT(DISTINCT r.id) FROM audit_record r "
               "CROSS JOIN LATERAL jsonb_array_elements(r.masking) AS m "
               "WHERE r.at >= %s AND r.at < %s AND r.seq <= %s GROUP BY 1, 2 ORDER BY 1, 2")
    else:
        sql = ("SELECT json_extract(m.value, '$.class'), json_extract(m.value, '$.action'), "
               "SUM(json_extract(m.value, '$.count')), COUNT(DISTINCT r.id) FROM audit_record r, "
               "json_each(r.masking) AS m WHERE r.at >= %s AND r.at < %s AND r.seq <= %s "
               "GROUP BY 1, 2 ORDER BY 1, 2")
    params = [scope.period_start, scope.period_end, scope.head_seq]
    if connection.vendor != "postgresql":
        params = [connection.ops.adapt_datetimefield_value(v) if i < 2 else v
                  for i, v in enumerate(params)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(str(c or ""), str(a or ""), int(n or 0), int(r or 0))
                for c, a, n, r in cursor.fetchall()]


@dataclass(slots=True)
class StreamStats:
    calls_by_day: Counter[tuple[str, str]] = field(default_factory=Counter)
    records_by_day: Counter[str] = field(default_factory=Counter)
    denials_by_rule: Counter[str] = field(default_factory=Counter)
    masking: Counter[tuple[str, str]] = field(default_factory=Counter)  # cells
    masking_records: Counter[tuple[str, str]] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    missing: Counter[tuple[str, str]] = field(default_factory=Counter)
    who: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    auth_methods: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, decision)
    allowed_without_role: int = 0
    allowed_without_identity: int = 0
    rejected_without_actor: int = 0  # refused requests that name nobody (IA-2 gap)
    held: int = 0
    group_seqs: dict[str, list[int]] = field(default_factory=dict)


@dataclass(slots=True)
class StreamResult:
    records: Evidence
    calls: Evidence
    denied: Evidence
    masking: Evidence
    stats: StreamStats


def _reader(scope: PackScope, batch_size: int,
            progress: Callable[[float], None] | None) -> Iterator[tuple[Any, ...]]:
    """The period's records as (seq, at_iso, day, event, ..., reasons_json, masking_json, role,
    ...), keyset-paginated on seq. JSON columns come as text: most are '[]' and never parsed."""
    if scope.first_seq is None or scope.last_seq is None:
        return
    sqlite = connection.vendor == "sqlite"
    at, reasons, masking, role = (
        ("CAST(at AS TEXT)", "reasons", "masking", "json_extract(detail, '$.role')") if sqlite
        else ("at", "reasons::text", "masking::text", "detail->>'role'"))
    # Windows of seq values rather than `seq > last ORDER BY seq LIMIT n`: with stale table
    # statistics PostgreSQL plans the LIMIT query as a bitmap scan of everything above `last`
    # plus a sort, which makes the pass quadratic. seq is gapless, so a window holds ~n rows.
    sql = (f"SELECT seq, {at}, event, request_id, actor, auth_method, source_ip, connection, "
           f"mcp_session_id, jsonrpc_method, tool, decision, {reasons}, {masking}, {role}, "
           "sql_fingerprint, row_count, result_bytes, response_sha256, prev_hash, hash "
           "FROM audit_record WHERE seq > %s AND seq <= %s ORDER BY seq")
    lo, hi = scope.first_seq, scope.last_seq
    if sqlite:  # stored as 'YYYY-MM-DD HH:MM:SS[.ffffff]' UTC: compare and slice the text
        start = connection.ops.adapt_datetimefield_value(scope.period_start)
        end = connection.ops.adapt_datetimefield_value(scope.period_end)
    else:
        start, end = scope.period_start, scope.period_end
    last = lo - 1
    span = max(hi - lo + 1, 1)
    with connection.cursor() as cursor:
        while last < hi:
            upto = min(last + batch_size, hi)
            cursor.execute(sql, [last, upto])
            for row in cursor.fetchall():
                when = row[1]
                if when < start or when >= end:
                    continue  # outside the period (a clock step between appends)
                if sqlite:
                    iso = when.replace(" ", "T", 1) + "+00:00"
                    day = when[:10]
                else:
                    iso = when.isoformat()
                    day = iso[:10]
                yield (row[0], iso, day, *row[2:])
            last = upto
            if progress is not None:
                progress((last - lo + 1) / span)


def stream_records(
    scope: PackScope,
    archive: PackArchive,
    spool: Path,
    *,
    batch_size: int = 5000,
    progress: Callable[[float], None] | None = None,
) -> StreamResult:
    """Write audit-records.csv into the pack and calls/denied/masking CSVs to side files."""
    stats = StreamStats()
    k, seed = scope.sample_size, scope.seed
    call_sample, denied_sample, masking_sample = (Reservoir(k, seed), Reservoir(k, seed + 1),
                                                  Reservoir(k, seed + 2))
    calls = SideCsv(spool, "csv/calls.csv", CALL_COLUMNS, CALL_TEXT)
    denied = SideCsv(spool, "csv/denied-calls.csv", DENIED_COLUMNS, DENIED_TEXT)
    masking = SideCsv(spool, "csv/masking-actions.csv", MASKING_COLUMNS, MASKING_TEXT)
    required_cache: dict[tuple[str, str], tuple[tuple[int, str], ...]] = {}
    groups_cache: dict[tuple[str, str], tuple[list[int], ...]] = {}
    stats.group_seqs = {g.name: [] for g in GROUPS}
    call_events = frozenset(CALL_EVENTS)
    loads = json.loads
    calls_by_day, records_by_day = stats.calls_by_day, stats.records_by_day
    events, who, missing = stats.events, stats.who, stats.missing

    def record_rows() -> Iterator[tuple[Any, ...]]:
        for row in _reader(scope, batch_size, progress):
            seq, iso, day, event = row[SEQ], row[AT], row[DAY], row[EVENT]
            decision, method = row[DECISION], row[METHOD]
            actor, auth, conn, tool = row[ACTOR], row[AUTH], row[CONN], row[TOOL]
            reasons_json, masking_json = row[REASONS], row[MASKING]
            reasons = loads(reasons_json) if reasons_json and reasons_json != "[]" else ()
            rules = ";".join(str(r.get("rule", "")) for r in reasons if isinstance(r, dict))
            mask = loads(masking_json) if masking_json and masking_json != "[]" else ()
            role = row[ROLE] or ""
            record_hash = row[HASH]
            records_by_day[day] += 1
            events[event] += 1
            who[(actor, auth, event, decision)] += 1
            key = (event, method if event in {"mcp.decision", "mcp.outcome"} else "")
            needed = required_cache.get(key)
            if needed is None:
                needed = required_cache[key] = tuple(
                    (_INDEX[name], name) for name in required_fields(event, method))
            for index, name in needed:
                if not row[index]:
                    missing[(event, name)] += 1
            member_of = groups_cache.get((event, decision))
            if member_of is None:
                member_of = groups_cache[(event, decision)] = tuple(
                    stats.group_seqs[g.name] for g in GROUPS if g.matches(event, decision))
            for seqs in member_of:
                seqs.append(seq)
            if event in call_events:
                calls_by_day[(day, decision)] += 1
                stats.auth_methods[(auth, decision)] += 1
                calls.write((seq, iso, day, event, row[REQUEST_ID], actor, auth, row[IP],
                             conn, method, tool, decision, role, rules, row[FINGERPRINT],
                             record_hash))
                call_sample.offer({"seq": seq, "at": iso, "event": event, "actor": actor,
                                   "auth_method": auth, "connection": conn,
                                   "call": tool or method, "decision": decision,
                                   "detail": role or rules, "hash": record_hash})
                if event == "mcp.rejected" and not actor:
                    stats.rejected_without_actor += 1
                if decision == "allow" and event != "mcp.rejected":
                    if not actor:
                        stats.allowed_without_identity += 1
                    if event == "mcp.decision" and method in DATA_METHODS and not role:
                        stats.allowed_without_role += 1
                elif decision == "hold":
                    stats.held += 1
            if decision == "deny":
                for r in reasons:
                    if isinstance(r, dict):
                        stats.denials_by_rule[str(r.get("rule", ""))] += 1
                denied.write((
                    seq, iso, event, row[REQUEST_ID], actor, auth, row[IP], conn, method,
                    tool, rules,
                    " | ".join(str(r.get("message", "")) for r in reasons if isinstance(r, dict)),
                    ";".join(str(r["table"]) for r in reasons
                             if isinstance(r, dict) and r.get("table")),
                    ";".join(str(r["column"]) for r in reasons
                             if isinstance(r, dict) and r.get("column")),
                    row[FINGERPRINT], record_hash))
                denied_sample.offer({"seq": seq, "at": iso, "event": event, "actor": actor,
                                     "connection": conn, "call": tool or method, "rules": rules,
                                     "hash": record_hash})
            cells: Any = ""
            if mask:
                cells = 0
                seen: set[tuple[str, str]] = set()
                for m in mask:
                    if not isinstance(m, dict):
                        continue
                    cls, action = str(m.get("class", "")), str(m.get("action", ""))
                    count = int(m.get("count") or 0)
                    cells += count
                    stats.masking[(cls, action)] += count
                    if (cls, action) not in seen:
                        seen.add((cls, action))
                        stats.masking_records[(cls, action)] += 1
                    column = str(m.get("column", ""))
                    masking.write((seq, iso, day, row[REQUEST_ID], actor, conn, tool, role,
                                   column, cls, action, count, record_hash))
                    masking_sample.offer({"seq": seq, "at": iso, "actor": actor,
                                          "call": tool or method, "column": column,
                                          "class": cls, "action": action, "cells": count,
                                          "hash": record_hash})
            yield (seq, iso, event, row[REQUEST_ID], actor, auth, row[IP], conn,
                   row[SESSION], method, tool, decision, rules, role, row[FINGERPRINT],
                   row[ROWS], row[BYTES], cells, row[RESPONSE_SHA], row[PREV_HASH],
                   record_hash)

    entry = archive.write_csv("csv/audit-records.csv", RECORD_COLUMNS, record_rows(), RECORD_TEXT)
    for side in (calls, denied, masking):
        side.close()
    selection = scope.selection
    records_ev = Evidence(
        name="audit-records", path=entry.path, title="Audit records in the period",
        description="Every audit record of the period, one row each: event, identity, source, "
                    "connection, call, decision and reasons, masking count, and the chain "
                    "links (prev_hash, hash). Bodies, SQL text and arguments are left out; the "
                    "hash covers them.",
        selection=f"SELECT * FROM {selection} ORDER BY seq",
        rows=entry.rows, sha256=entry.sha256, bytes=entry.bytes,
        stats={"events": dict(stats.events), "records_by_day": dict(stats.records_by_day)},
    )
    calls_ev = Evidence(
        name="calls", path=calls.path, title="Access decisions (calls)",
        description="One row per client request the gateway decided: tools/call, resources/read "
                    "and prompts/get decisions (mcp.decision), refused requests (mcp.rejected) "
                    "and protocol requests (mcp.request). The population behind the "
                    "'calls per day by decision' chart.",
        selection=f"SELECT * FROM {selection} AND event IN {CALL_EVENTS} ORDER BY seq",
        stats={"by_day": {f"{d}|{dec}": n for (d, dec), n in sorted(stats.calls_by_day.items())}},
        samples=call_sample.sample(),
    )
    denied_ev = Evidence(
        name="denied", path=denied.path, title="Denied calls with reasons",
        description="Every record with decision 'deny' (policy denials, refused requests, "
                    "refused server requests) with its machine-readable reasons.",
        selection=f"SELECT * FROM {selection} AND decision = 'deny' ORDER BY seq",
        stats={"by_rule": dict(stats.denials_by_rule.most_common())},
        samples=denied_sample.sample(),
    )
    masking_ev = Evidence(
        name="masking", path=masking.path, title="Masking actions",
        description="One row per (record, column, class, action) in the masking summaries of "
                    "the period's records: what was de-identified before results left the "
                    "gateway. The population behind the 'masking actions by class' chart.",
        selection=f"SELECT r.seq, m.* FROM {selection} r, json array elements of r.masking m "
                  "ORDER BY seq",
        samples=masking_sample.sample(),
    )
    for ev, side in ((calls_ev, calls), (denied_ev, denied), (masking_ev, masking)):
        ev.rows, ev.sha256, ev.bytes = side.rows, side.sha256, side.size
        archive.add_side_csv(side)
    return StreamResult(records_ev, calls_ev, denied_ev, masking_ev, stats)
