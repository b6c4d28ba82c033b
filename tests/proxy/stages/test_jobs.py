"""Stage jobs: jobs seen created are remembered; the first sighting wins; bad ids are unknown;
the job a result reports is found in its structured content or its JSON text."""

from __future__ import annotations

import pytest

from proxy.jobs import job_id_of, job_lookup, job_remember
from tests.proxy.store_memory import MemoryGatewayStore


async def _remember(store: MemoryGatewayStore, job_id: str, user_id: int) -> bool:
    return await job_remember(store, connection_id=1, job_id=job_id, user_id=user_id,
                              tool="execute_sql", statement="SELECT 1", fingerprint="f",
                              tables=("p.d.t",), plan=None, role="reader", policy_version=2,
                              request_id="r1")


async def test_first_sighting_wins(store: MemoryGatewayStore) -> None:
    assert await _remember(store, "job-1", 10)
    assert not await _remember(store, "job-1", 66)  # another identity replaying the id
    seen = await job_lookup(store, 1, "job-1")
    assert (seen.user_id, seen.statement, seen.policy_version) == (10, "SELECT 1", 2)
    assert await job_lookup(store, 2, "job-1") is None  # another connection


@pytest.mark.parametrize("job_id", [None, "", 5, {"jobId": "job-1"}, "x" * 1025])
async def test_malformed_job_ids_are_unknown(store: MemoryGatewayStore, job_id: object) -> None:
    await _remember(store, "job-1", 10)
    assert await job_lookup(store, 1, job_id) is None
    assert "job_find" not in store.calls


async def test_long_job_id_is_stored_truncated(store: MemoryGatewayStore) -> None:
    await _remember(store, "j" * 2000, 10)
    assert (1, "j" * 1024) in store.jobs


def _text_result(text: str, structured: object = None) -> dict:
    result: dict = {"content": [{"type": "text", "text": "no JSON here"},
                                {"type": "text", "text": text}]}
    if structured is not None:
        result["structuredContent"] = structured
    return result


@pytest.mark.parametrize("text", [
    '{"jobReference": {"jobId": "job-7"}, "rows": []}',
    '{"rows": [], "jobReference": {"jobId": "job-7"}}',
    # The key spelled with JSON escapes still names the job.
    '{"\\u006aobReference": {"jobId": "job-7"}}',
    '{"job\\u0052eference": {"jobId": "job-7"}}',
    '{"rows": [{"n": "M\\u00fcller"}], "\\u006A\\u006F\\u0062Reference": {"jobId": "job-7"}}',
])
def test_job_id_found_in_a_json_text_block(text: str) -> None:
    assert job_id_of(_text_result(text, structured={"rows": [{"a": 1}]})) == "job-7"


@pytest.mark.parametrize("text", [
    '{"rows": [{"note": "see jobReference"}], "jobId": "job-7"}',
    '{"rows": [{"jobReference": {"jobId": "job-7"}}]}',  # not the result's own
    '{"rows": [], "\\u0061": 1}',
    '{"rows": [{"n": "M\\u00fcller", "jobRef": "\\u00e9"}]}',
    "jobReference",
])
def test_no_job_id_without_a_top_level_job_reference(text: str) -> None:
    assert job_id_of(_text_result(text)) is None


def test_structured_job_reference_wins() -> None:
    result = _text_result('{"jobReference": {"jobId": "job-text"}}',
                          structured={"jobReference": {"jobId": "job-structured"}})
    assert job_id_of(result) == "job-structured"
