"""dry_run_sql on a recorded BigQuery response: the real client path, a real byte figure."""

from __future__ import annotations

import pytest
from mcp.client import Client

from bigquery_mcp.client import make_bigquery_client
from bigquery_mcp.server import build_server
from tests.recorded_bigquery import RecordedBigQuery

pytestmark = pytest.mark.asyncio


async def test_dry_run_reads_total_bytes_from_bigquery_response() -> None:
    with RecordedBigQuery() as recorded:
        server = build_server(make_bigquery_client("wardgate-test", recorded.endpoint))
        async with Client(server) as client:
            result = await client.call_tool("dry_run_sql", {"sql": "SELECT * FROM shop.orders"})
    assert not result.is_error
    assert result.structured_content == {"total_bytes_processed": 5368709120,
                                         "statement_type": "SELECT"}
    sent = recorded.requests[0]["body"]
    assert sent["configuration"]["dryRun"] is True
    assert sent["configuration"]["query"]["useQueryCache"] is False
