"""tools/call: authorize -> hold -> record the decision -> forward -> mask -> record the
outcome -> release (stages 10-15, proxy.stages)."""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from mcp.shared.inbound import validate_mcp_param_headers

from proxy import jsonrpc, metrics
from proxy.authorize import Decision, SqlToolContext, authorize_tool_call, deny
from proxy.call import Call
from proxy.error_texts import ErrorTextPolicy
from proxy.handlers.approval import hold_for_approval
from proxy.handlers.relay import exchange
from proxy.handlers.respond import answer, decision_data, denial_text, refuse, tool_error
from proxy.hold import binding_for, use_existing_approval
from proxy.jobs import STATEMENT_ARGUMENT, job_id_of, job_info_public, job_lookup, job_remember
from proxy.mask import mask_call_result
from proxy.metadata_tools import MetadataTool, filter_dataset_listing, filter_table_listing
from proxy.verdict import Verdict

if TYPE_CHECKING:
    from proxy.pipeline import Pipeline


async def handle_tool_call(gw: Pipeline, call: Call) -> None:
    ctx, spec, plan, params = call.ctx, call.spec, call.plan, call.params
    assert spec is not None and plan is not None
    ctx.tool = params.get("name") if isinstance(params.get("name"), str) else ""
    ctx.arguments = params.get("arguments")
    mismatch = await _param_header_mismatch(gw, call)
    if mismatch is not None:
        await refuse(gw.recorder, ctx, call.send,
                     Verdict.refuse(400, "request.header_mismatch", mismatch,
                                    code=jsonrpc.HEADER_MISMATCH))
        return
    # 10. authorize
    started = perf_counter()
    tool_ok = bool(ctx.tool) and await gw.catalog.callable(spec.connection_id, ctx.tool)
    call.tool_accepted = tool_ok
    metadata_spec = spec.metadata_tools.get(ctx.tool)
    metadata = MetadataTool.from_spec(metadata_spec, spec.bigquery_project,
                                      spec.default_dataset) if metadata_spec else None
    job_tool = spec.job_tools.get(ctx.tool)
    sql_tool = gw.sql_tool(spec, ctx.tool)
    if job_tool is not None:
        decision = await _authorize_job(gw, call, job_tool, tool_ok)
    else:
        decision = await authorize_tool_call(
            plan=plan, tool=params.get("name"), arguments=ctx.arguments,
            tool_is_accepted=tool_ok, sql_tool=sql_tool,
            request_id=ctx.request_id, metadata_tool=metadata,
            project_argument=spec.project_argument, project=spec.bigquery_project,
        )
    ctx.sql = decision.sql
    if decision.allowed:
        ctx.role = decision.role.name if decision.role else ""
        ctx.settle(Verdict.allow())
    else:
        ctx.settle(Verdict.deny(*decision.reasons))
    metrics.observe_authorize(perf_counter() - started)
    if not decision.allowed:
        # 12. record the decision, then answer it
        await gw.recorder.record(ctx, "mcp.decision")
        result = tool_error(ctx, denial_text(ctx.reasons), decision_data(ctx))
        await answer(gw.recorder, ctx, call.send, jsonrpc.result(ctx.jsonrpc_id, result))
        return
    masking = decision.role.masking if decision.role else None
    ctx.error_texts = ErrorTextPolicy(ctx.request_id, decision.reads_masked, masking)

    async def mask(result: dict[str, Any]) -> dict[str, Any]:  # 14. mask
        assert masking is not None
        raw = result
        if result.get("isError") is True:
            result = _error_result_text(result, ctx.error_texts)
        elif job_tool is not None and job_tool["kind"] == "info":
            result = job_info_public(result, ctx.error_texts)
        elif metadata is not None and metadata.lists_datasets and decision.role is not None:
            result = filter_dataset_listing(result, metadata, decision.role)
        elif metadata is not None and metadata.lists and decision.role is not None:
            result = filter_table_listing(result, metadata, decision.role,
                                          ctx.arguments if isinstance(ctx.arguments, dict)
                                          else {})
        masked, summary = mask_call_result(result, decision.columns, masking)
        ctx.masking = summary.as_list()
        ctx.row_count = _row_count(masked)
        if sql_tool is not None and job_tool is None and raw.get("isError") is not True:
            await _remember_job(gw, call, decision, raw)
        return masked

    # 11. hold for approval where the role says so
    sql = decision.sql
    rule = decision.role.approval_rule_for(
        ctx.tool, sql.tables if sql else (), sql.statement_classes if sql else (),
        sql.bytes_processed if sql else None) if decision.role else None
    if rule is not None:
        started = perf_counter()
        binding = binding_for(ctx, spec.connection_id, plan.policy_version)
        approval_id = await use_existing_approval(gw.store, binding, ctx.request_id)
        # Timed: the look-up every risky call pays; a human's wait for approval is not.
        metrics.observe_hold(perf_counter() - started)
        if approval_id is None:
            await hold_for_approval(gw, call, rule, binding, mask)
            return
        ctx.detail["approval_id"] = approval_id
    # 12. record the decision before anything is forwarded; a read-only call may be forwarded
    # while its record is written, but nothing is released before it is durable
    if rule is None and not gw.config.strict_decision_order \
            and _read_only(decision, sql_tool, job_tool, metadata):
        pending = gw.recorder.submit(ctx, "mcp.decision")
        await exchange(gw, call, mask, decision=pending)  # 13-15
        return
    await gw.recorder.record(ctx, "mcp.decision")
    # 13-15. forward, mask, record the outcome, release
    await exchange(gw, call, mask)


def _read_only(decision: Decision, sql_tool: SqlToolContext | None,
               job_tool: dict[str, str] | None, metadata: MetadataTool | None) -> bool:
    """Whether the policy classifies the call as read-only: a metadata read or listing, or a
    statement made only of SELECTs on a SQL tool. Job tools (cancel changes state) and every
    tool the gateway cannot classify keep the strict order."""
    if job_tool is not None:
        return False
    if metadata is not None:
        return True
    sql = decision.sql
    return sql_tool is not None and sql is not None and bool(sql.statement_classes) \
        and all(cls == "select" for cls in sql.statement_classes)


async def _param_header_mismatch(gw: Pipeline, call: Call) -> str | None:
    """From 2026-07-28 a tool's arguments may be mirrored into Mcp-Param-* headers
    (x-mcp-header in its input schema), and an upstream may route or bill by them (the
    BigQuery remote server's project). The gateway polices the body, so the headers must
    say the same, checked against the accepted version of the tool."""
    if not any(k.lower().startswith("mcp-param-") for k in call.headers):
        return None
    assert call.spec is not None
    schema = await gw.catalog.accepted_schema(call.spec.connection_id, call.ctx.tool)
    if schema is None:
        return "Mcp-Param-* headers for a tool with no accepted schema"
    arguments = call.ctx.arguments if isinstance(call.ctx.arguments, dict) else {}
    rejection = validate_mcp_param_headers(schema, arguments, call.headers)
    return rejection.message if rejection is not None else None


async def _authorize_job(gw: Pipeline, call: Call, job_tool: dict[str, str],
                         tool_ok: bool) -> Decision:
    """A job tool: only the identity's own jobs that the gateway saw created; their data
    under the job statement's policy as it stands now (proxy.jobs)."""
    ctx, spec, plan = call.ctx, call.spec, call.plan
    assert spec is not None and plan is not None and ctx.identity is not None
    arguments = ctx.arguments if isinstance(ctx.arguments, dict) else {}
    seen = await job_lookup(gw.store, spec.connection_id, arguments.get(job_tool["job"]))
    if seen is None:
        return deny("job.unknown", "Wardgate did not see this job created on this "
                    "connection, so it cannot police its data; run the query through it")
    if seen.user_id != ctx.identity.user_id:
        return deny("job.not_yours", "This job was created by another identity")
    ctx.detail["job"] = {"job_id": seen.job_id, "created_by_request": seen.request_id,
                         "created_with_tool": seen.tool,
                         "policy_version_then": seen.policy_version}
    sql_tool: SqlToolContext | None = None
    if job_tool["kind"] != "cancel":
        sql_tool = gw.sql_tool(spec, seen.tool, argument=STATEMENT_ARGUMENT)
        if sql_tool is None:
            return deny("job.unknown", f"The job's tool {seen.tool!r} no longer carries SQL "
                        "on this connection")
        arguments = {**arguments, STATEMENT_ARGUMENT: seen.statement}
    return await authorize_tool_call(
        plan=plan, tool=ctx.tool, arguments=arguments, tool_is_accepted=tool_ok,
        sql_tool=sql_tool, request_id=ctx.request_id,
        project_argument=spec.project_argument, project=spec.bigquery_project)


async def _remember_job(gw: Pipeline, call: Call, decision: Decision,
                        result: dict[str, Any]) -> None:
    ctx, spec, plan = call.ctx, call.spec, call.plan
    assert spec is not None and plan is not None
    job_id = job_id_of(result)
    if job_id is None or ctx.identity is None or decision.sql is None:
        return
    ctx.detail["job_id"] = job_id
    await job_remember(gw.store, connection_id=spec.connection_id, job_id=job_id,
                       user_id=ctx.identity.user_id, tool=ctx.tool,
                       statement=decision.sql.text, fingerprint=decision.sql.fingerprint,
                       tables=decision.sql.tables, plan=decision.columns,
                       role=decision.role.name if decision.role else "",
                       policy_version=plan.policy_version, request_id=ctx.request_id)


def _error_result_text(result: dict[str, Any], texts: ErrorTextPolicy) -> dict[str, Any]:
    """A tool result that reports an error, its texts passed through ``texts`` and anything
    else (structured content, other blocks) dropped: an error has no rows to mask."""
    parts = [b.get("text", "") for b in result.get("content") or []
             if isinstance(b, dict) and b.get("type") == "text"]
    return jsonrpc.tool_error_in_place_of(
        result, texts.public("\n".join(str(p) for p in parts) or "error"))


def _row_count(result: dict[str, Any]) -> int | None:
    structured = result.get("structuredContent")
    if isinstance(structured, dict):
        if isinstance(structured.get("row_count"), int):
            return structured["row_count"]
        if isinstance(structured.get("rows"), list):
            return len(structured["rows"])
    return None
