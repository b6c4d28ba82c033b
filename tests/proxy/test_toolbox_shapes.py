"""The masker on the MCP Toolbox's result shape, with real rows: the Toolbox answers
`bigquery-execute-sql` with one text block per row, each a JSON object (its MCP layer marshals
every row of the result on its own), and no structured content. Its BigQuery cannot be the
emulator, so the rows come from our server on the emulator, re-shaped the Toolbox's way, and
are masked with the column plan the authorize stage derives for the statement: every cell must
mask exactly as in our own shape, and no classified value may survive."""

from __future__ import annotations

import json

import pytest
from mcp.client import Client

from tests.adversarial_corpus import legit_statements
from tests.conftest import DATASET, PROJECT
from tests.proxy.test_masking_adversarial import _leaks, _needles, _raw_rows

pytestmark = pytest.mark.asyncio


async def test_toolbox_rows_mask_like_our_own_shape(mcp_server_url, bigquery_emulator) -> None:  # type: ignore[no-untyped-def]
    from policy.classify import ColumnClassifier
    from policy.roles import AccessPlan, compile_role_rules
    from portal.services.demo import DEMO_ANALYST_RULES, DEMO_COLUMN_CLASSES
    from proxy.authorize import SqlToolContext, authorize_tool_call
    from proxy.bigquery_facts import BigQueryFacts
    from proxy.mask import mask_call_result

    role = compile_role_rules("analyst", {**DEMO_ANALYST_RULES, "tools": ["execute_sql"]},
                              token_key=b"toolbox-shape-test-key-0123456789")
    sql_tool = SqlToolContext("sql", PROJECT, DATASET,
                              BigQueryFacts(project=PROJECT, endpoint=bigquery_emulator.endpoint),
                              ColumnClassifier.from_config(DEMO_COLUMN_CLASSES))
    # payload is free text read through the detectors (action "detect"): values in it that have
    # no PII shape pass by design, in either shape; the other classified columns must not.
    needles = _needles([{k: v for k, v in row.items() if k != "payload"}
                        for row in await _raw_rows(mcp_server_url)])
    statements = legit_statements(DATASET)
    shown = []
    async with Client(mcp_server_url) as direct:
        for sql in statements:
            decision = await authorize_tool_call(
                plan=AccessPlan(roles=(role,)), tool="execute_sql", arguments={"sql": sql},
                tool_is_accepted=True, sql_tool=sql_tool)
            assert decision.allowed, (sql, decision.reasons)
            raw = (await direct.call_tool("execute_sql", {"sql": sql})).model_dump(
                mode="json", by_alias=True, exclude_none=True)
            rows = raw["structuredContent"]["rows"]
            toolbox = {"content": [{"type": "text", "text": json.dumps(r)} for r in rows]}
            ours, _ = mask_call_result(raw, decision.columns, role.masking)
            theirs, _ = mask_call_result(toolbox, decision.columns, role.masking)
            got = [json.loads(block["text"]) for block in theirs["content"]]
            assert got == ours["structuredContent"]["rows"], sql
            shown.append(json.dumps(theirs))
    assert not _leaks(shown, statements, needles)
