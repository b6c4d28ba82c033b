"""The second way to data: query jobs, reached by id without SQL in the call.

Google's BigQuery MCP server answers ``execute_sql`` with a ``jobReference``, and
``get_query_results`` / ``get_job`` / ``cancel_job`` take that job id. The gateway therefore
remembers every job it saw created through a SQL tool (in the store — the portal's
``UpstreamJob``: job id, identity, statement, lineage, role and policy version, in the database
so every gateway process shares it) and, for a job tool (``Connection.job_tools``):

* refuses a job it did not see created on this connection (``job.unknown``) or one another
  identity created (``job.not_yours``) — for every kind, including ``cancel``;
* for ``results`` and ``info``, authorizes the job's statement again under the caller's current
  role (so a revoked table or a tightened rule applies to old jobs too) and masks the rows with
  that statement's column plan, exactly as if the statement had been sent now;
* for ``info`` (the job resource: statement, statistics, errors) passes error texts through the
  call's error-text policy, since BigQuery quotes values in them.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from proxy.db import run_db
from proxy.error_texts import ErrorTextPolicy
from proxy.mask import ColumnPlan
from proxy.store import GatewayStore, SeenJob

__all__ = ["SeenJob", "job_id_of", "job_info_public", "job_lookup", "job_remember"]

STATEMENT_ARGUMENT = "\x00wardgate-job-statement"  # never a real argument name
# A JSON text can spell the key "jobReference" only literally or with \u escapes of its
# letters (b c e f j n o R r): one of these must appear for it to name a job.
_JOB_KEY_LETTER_ESCAPE = re.compile(r"\\u00(?:6[2356aefAEF]|52|72)")


def _job_reference(value: Any) -> str | None:
    if isinstance(value, Mapping):
        ref = value.get("jobReference")
        if isinstance(ref, Mapping) and isinstance(ref.get("jobId"), str) and ref["jobId"]:
            return ref["jobId"]
    return None


def job_id_of(result: Mapping[str, Any]) -> str | None:
    """The id of the job a SQL tool's result reports (BigQuery's ``jobReference.jobId``, in
    structured content or in a JSON text block), or None."""
    found = _job_reference(result.get("structuredContent"))
    if found:
        return found
    for block in result.get("content") or []:
        if isinstance(block, Mapping) and block.get("type") == "text":
            text = block.get("text")
            if isinstance(text, str) and "jobReference" not in text \
                    and not _JOB_KEY_LETTER_ESCAPE.search(text):
                # No "jobReference" key, however spelled: a query's rows (the common case)
                # are not parsed a second time just to find no job.
                continue
            try:
                found = _job_reference(json.loads(text or ""))
            except (TypeError, ValueError):
                continue
            if found:
                return found
    return None


def _plan_json(plan: ColumnPlan | None) -> dict[str, Any]:
    if plan is None:
        return {}
    return {"by_position": [sorted(c) for c in plan.by_position],
            "by_name": {k: sorted(v) for k, v in plan.by_name.items()},
            "all_classes": sorted(plan.all_classes)}


async def job_remember(store: GatewayStore, *, connection_id: int, job_id: str, user_id: int, tool: str,
                       statement: str, fingerprint: str, tables: tuple[str, ...],
                       plan: ColumnPlan | None, role: str, policy_version: int,
                       request_id: str) -> bool:
    """Record a job seen created; True if it was new."""
    # The first sighting wins (the store keeps it): a later result naming the same id (another
    # identity replaying it, or a buggy upstream) never takes the job over.
    return await run_db(functools.partial(
        store.job_remember, connection_id=connection_id, job_id=job_id[:1024], user_id=user_id,
        tool=tool, statement=statement, fingerprint=fingerprint, tables=list(tables),
        column_plan=_plan_json(plan), role=role, policy_version=policy_version,
        request_id=request_id))


async def job_lookup(store: GatewayStore, connection_id: int, job_id: Any) -> SeenJob | None:
    if not isinstance(job_id, str) or not job_id or len(job_id) > 1024:
        return None
    return await run_db(store.job_find, connection_id, job_id)


def _public_messages(value: Any, texts: ErrorTextPolicy) -> Any:
    if isinstance(value, dict):
        return {k: (texts.public(v, source="BigQuery") if k == "message" and isinstance(v, str)
                    else _public_messages(v, texts)) for k, v in value.items()}
    if isinstance(value, list):
        return [_public_messages(v, texts) for v in value]
    return value


def job_info_public(result: dict[str, Any], texts: ErrorTextPolicy) -> dict[str, Any]:
    """A get_job result with every error ``message`` through the error-text policy, in the
    structured content and in JSON text blocks alike (other text goes to the masker)."""
    out = dict(result)
    if isinstance(result.get("structuredContent"), dict):
        out["structuredContent"] = _public_messages(result["structuredContent"], texts)
    blocks = []
    for block in result.get("content") or []:
        if isinstance(block, dict) and block.get("type") == "text":
            try:
                parsed = json.loads(block.get("text") or "")
            except (TypeError, ValueError):
                # Prose may quote values as well: through the policy as a whole.
                blocks.append({**block, "text": texts.public(block.get("text") or "",
                                                             source="BigQuery")})
                continue
            block = {**block, "text": json.dumps(_public_messages(parsed, texts))}
        blocks.append(block)
    out["content"] = blocks
    return out
