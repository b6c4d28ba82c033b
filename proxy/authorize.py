"""Stage authorize (proxy.stages; run by proxy.handlers.tool_call): deny by default (AC-3,
AC-6).

A tool call is allowed when one of the caller's roles on the connection allows the tool, the
tool's current version is in the accepted catalogue, and — for tools that carry SQL — the
statement parses (sqlglot, BigQuery dialect), fully resolves, and passes that role's SQL rules
and bytes cap (BigQuery dry run). Roles are tried in name order; the first that allows the
call decides its masking. Every denial carries machine-readable reasons.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policy.classify import ColumnClassifier
from policy.masking import COMPUTED_CLASS
from policy.roles import AccessPlan, RolePolicy
from policy.sql_analysis import ColumnRef, SqlAnalysis, SqlAnalysisError
from policy.sql_policy import (
    Reason,
    check_bytes,
    check_masked_tables,
    check_masked_uses,
    check_sql,
    reason_for_error,
)
from proxy.bigquery_facts import BigQueryFacts, BigQueryFactsError
from proxy.context import SqlFacts
from proxy.error_texts import ErrorTextPolicy
from proxy.mask import ColumnPlan
from proxy.metadata_tools import MetadataTool, metadata_role
from proxy.sql_worker import default_sql_workers


@dataclass(slots=True)
class Decision:
    allowed: bool
    reasons: tuple[Reason, ...] = ()
    role: RolePolicy | None = None
    columns: ColumnPlan | None = None
    sql: SqlFacts | None = None
    # Whether the statement reads a column the chosen role sees masked: then error texts
    # are withheld (proxy.error_texts).
    reads_masked: bool = False


def deny(rule: str, message: str, **kw: str) -> Decision:
    return Decision(False, (Reason(rule, message, **kw),))


@dataclass(frozen=True, slots=True)
class SqlToolContext:
    """What the SQL checks need to know about the connection."""

    sql_argument: str
    project: str
    dataset: str | None
    facts: BigQueryFacts
    classifier: ColumnClassifier
    # The statement classes this tool may run at all (e.g. execute_sql_readonly: select), on
    # top of the role's; None = the role decides alone.
    statement_classes: frozenset[str] | None = None


def column_plan(analysis: SqlAnalysis, classifier: ColumnClassifier,
                policy_tags: Mapping[str, tuple[str, ...]]) -> ColumnPlan:
    def classes(refs: Any) -> frozenset[str]:
        out: set[str] = set()
        for ref in refs:
            out |= classifier.classes_of(ref.table, ref.column, policy_tags)
        return frozenset(out)

    def output_classes(out: Any) -> frozenset[str]:
        found = classes(out.sources)
        # A computed value over classified columns is redacted, never partially kept.
        return found | {COMPUTED_CLASS} if found and not out.direct else found

    by_position = tuple(output_classes(o) for o in analysis.outputs)
    names = tuple(o.name for o in analysis.outputs)
    by_name: dict[str, frozenset[str]] = {}
    for name, found in zip(names, by_position, strict=True):
        if name in by_name:
            # A name given twice gets both classes, redacted (one of the two may be the
            # caller's own value: see proxy.mask.column_classes_for).
            found = by_name[name] | found
            found = found | {COMPUTED_CLASS} if found else found
        by_name[name] = found
    return ColumnPlan(by_position, by_name,
                      classes(analysis.columns) | frozenset().union(*by_position), names)


async def authorize_tool_call(
    *, plan: AccessPlan, tool: Any, arguments: Any, tool_is_accepted: bool,
    sql_tool: SqlToolContext | None, request_id: str = "",
    metadata_tool: MetadataTool | None = None, project_argument: str = "", project: str = "",
) -> Decision:
    if not isinstance(tool, str) or not tool:
        return deny("request.invalid", "tools/call needs a tool name")
    if arguments is not None and not isinstance(arguments, dict):
        return deny("request.invalid", "tools/call arguments must be an object")
    if project_argument and arguments and arguments.get(project_argument) is not None \
            and str(arguments[project_argument]).lower() != project.lower():
        # Unqualified names would resolve in that project, where no policy was checked.
        return deny("request.project_mismatch",
                    f"The {project_argument!r} argument must be this connection's project "
                    f"({project})")
    roles = plan.roles_for(tool)
    if not roles:
        return deny("tool.not_granted", f"No role of yours allows the tool {tool!r} here")
    if not tool_is_accepted:
        return deny("tool.not_accepted",
                    f"The tool {tool!r} (this version) has not been accepted by an admin")
    if metadata_tool is not None:
        role, refusal = metadata_role(roles, metadata_tool, arguments or {})
        return Decision(False, (refusal,)) if refusal else Decision(True, role=role)
    if sql_tool is None:
        return Decision(True, role=roles[0])
    return await _authorize_sql(roles, arguments or {}, sql_tool, request_id)


async def _authorize_sql(roles: tuple[RolePolicy, ...], arguments: dict[str, Any],
                         ctx: SqlToolContext, request_id: str) -> Decision:
    sql = arguments.get(ctx.sql_argument)
    if not isinstance(sql, str) or not sql.strip():
        return deny("sql.missing", f"The {ctx.sql_argument!r} argument must be a SQL string")
    facts = SqlFacts(text=sql)
    # Parsing happens in worker processes, bounded and under a time budget (proxy.sql_worker).
    workers = default_sql_workers()
    try:
        datasets = await workers.datasets(sql, ctx.project, ctx.dataset)
        schema, policy_tags = await ctx.facts.schemas(datasets)
        analysis = await workers.analyze(sql, project=ctx.project,
                                         dataset=ctx.dataset or None, schema=schema,
                                         schema_version=ctx.facts.version)
    except BigQueryFactsError as exc:
        return Decision(False, (Reason(exc.reason, exc.message),), sql=facts)
    except SqlAnalysisError as exc:
        return Decision(False, (reason_for_error(exc),), sql=facts)
    facts.fingerprint = analysis.fingerprint
    facts.tables = tuple(sorted(analysis.tables))
    facts.statement_classes = analysis.statement_classes
    if ctx.statement_classes is not None:
        extra = sorted(set(analysis.statement_classes) - ctx.statement_classes)
        if extra or not analysis.statement_classes:
            return Decision(False, (Reason(
                "sql.tool_statement_class",
                f"This tool may run only {', '.join(sorted(ctx.statement_classes))} statements "
                f"(this one is {', '.join(extra) or 'unclassified'})"),), sql=facts)
    reasons: list[Reason] = []
    chosen: RolePolicy | None = None

    def classes_of(ref: ColumnRef) -> frozenset[str]:
        return ctx.classifier.classes_of(ref.table, ref.column, policy_tags)

    for role in roles:
        found = (check_sql(analysis, role.sql, ctx.project)
                 or check_masked_uses(analysis, classes_of, role.masking)
                 or check_masked_tables(analysis, schema, classes_of, role.masking))
        if not found:
            chosen = role
            break
        reasons.extend(r for r in found if r not in reasons)
    if chosen is None:
        return Decision(False, tuple(reasons), sql=facts)
    columns = ctx.facts.column_plan(
        analysis, ctx.classifier, lambda: column_plan(analysis, ctx.classifier, policy_tags))
    reads_masked = any(chosen.masking.is_masked(c) for c in columns.all_classes
                       if c != COMPUTED_CLASS)
    if chosen.needs_dry_run:
        params = arguments.get("parameters")
        key = hashlib.sha256(
            json.dumps([analysis.normalized_sql, params], sort_keys=True, default=str).encode()
        ).hexdigest()
        try:
            facts.bytes_processed = await ctx.facts.dry_run_bytes(sql, params, key)
        except BigQueryFactsError as exc:
            message = exc.message
            if exc.detail:
                texts = ErrorTextPolicy(request_id, reads_masked, chosen.masking)
                message = f"{exc.message}: {texts.public(exc.detail, source='BigQuery dry run')}"
            return Decision(False, (Reason(exc.reason, message),), role=chosen, sql=facts,
                            reads_masked=reads_masked)
        over = check_bytes(facts.bytes_processed, chosen.sql)
        if over:
            return Decision(False, over, role=chosen, sql=facts)
    return Decision(True, role=chosen, columns=columns, sql=facts, reads_masked=reads_masked)
