"""Attacks on Google's remote BigQuery MCP server behind the gateway (stand-in, as in
test_google_remote): a job id from another connection, a header that disagrees with the body,
a header for an argument the body leaves out, and Google access tokens kept out of the logs."""

# ruff: noqa: F811  (the stand-in fixtures are imported from test_google_remote)
from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from tests.conftest import DATASET, PROJECT
from tests.proxy.test_gateway_auth import META
from tests.proxy.test_google_remote import (  # noqa: F401  (fixtures)
    _call,
    _job_id,
    _reason,
    remote,
    standin_url,
    token_endpoint,
)
from tests.proxy.test_masking_adversarial import twin_dataset  # noqa: F401  (fixture)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _headers(token: str, **extra: str) -> dict[str, str]:
    return {"content-type": "application/json", "mcp-protocol-version": "2026-07-28",
            "accept": "application/json, text/event-stream", "mcp-method": "tools/call",
            "mcp-name": "execute_sql_readonly", "authorization": f"Bearer {token}", **extra}


async def test_a_job_seen_on_one_connection_is_unknown_on_another(gateway, remote) -> None:  # type: ignore[no-untyped-def]
    created = await _call(gateway.url("bq-remote"), remote["token"], "execute_sql_readonly", {
        "projectId": PROJECT, "query": f"SELECT email FROM {DATASET}.customers LIMIT 2"})
    assert not created.is_error, _reason(created)
    # Same identity, same upstream project, another connection (another policy).
    elsewhere = await _call(gateway.url("bq-remote-twin"), remote["token"], "get_query_results",
                            {"projectId": PROJECT, "jobId": _job_id(created)})
    assert elsewhere.is_error and "job.unknown" in _reason(elsewhere)


@pytest.mark.parametrize("extra", [
    {"mcp-param-project": PROJECT.upper()},           # same project, other spelling
    {"mcp-param-project": f"{PROJECT},other"},        # a list an upstream might split
    {"mcp-param-query": "SELECT ssn FROM x"},          # a header for an unmirrored argument
])
async def test_headers_that_do_not_say_what_the_body_says_are_refused(
    gateway, remote, extra
) -> None:  # type: ignore[no-untyped-def]
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "execute_sql_readonly", "_meta": META,
        "arguments": {"projectId": PROJECT, "query": f"SELECT order_id FROM {DATASET}.orders"}}}
    async with httpx.AsyncClient() as http:
        answer = await http.post(gateway.url("bq-remote"), json=call,
                                 headers=_headers(remote["token"], **extra))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["data"]["reason"] == "request.header_mismatch"


async def test_header_for_a_project_the_body_leaves_out_is_refused(gateway, remote) -> None:  # type: ignore[no-untyped-def]
    call = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
        "name": "execute_sql_readonly", "_meta": META,
        "arguments": {"query": f"SELECT order_id FROM {DATASET}.orders"}}}
    async with httpx.AsyncClient() as http:
        answer = await http.post(gateway.url("bq-remote"), json=call, headers=_headers(
            remote["token"], **{"mcp-param-project": "someone-elses-project"}))
    assert answer.status_code == 400, answer.text


async def test_google_access_tokens_never_reach_the_logs(gateway, remote, token_endpoint,
                                                         caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    before = len(token_endpoint.issued)
    token_endpoint.lifetime = 1
    try:
        for _ in range(2):
            result = await _call(gateway.url("bq-remote"), remote["token"],
                                 "execute_sql_readonly", {
                                     "projectId": PROJECT,
                                     "query": f"SELECT order_id FROM {DATASET}.orders LIMIT 1"})
            assert not result.is_error, _reason(result)
            await asyncio.sleep(1.1)
    finally:
        token_endpoint.lifetime = 3600
    minted = token_endpoint.issued[before:]
    assert minted
    assert all(g.scope == "https://www.googleapis.com/auth/bigquery" for g in minted)
    logged = "\n".join(r.getMessage() + repr(r.args) + str(r.exc_text) for r in caplog.records)
    assert logged  # the run did log (at DEBUG)
    for grant in minted:
        assert grant.token not in logged
    assert remote["sa"]["private_key"].splitlines()[1] not in logged


async def test_dataset_tools_answer_only_about_datasets_the_role_may_query(
    gateway, remote, twin_dataset
) -> None:  # type: ignore[no-untyped-def]
    """The role on bq-remote may query the demo dataset only: the twin dataset (same project)
    is neither listed nor described, though Google's server would happily do both."""
    url = gateway.url("bq-remote")
    listing = await _call(url, remote["token"], "list_dataset_ids", {"projectId": PROJECT})
    assert not listing.is_error, _reason(listing)
    assert listing.structured_content["datasetIds"] == [DATASET]
    assert twin_dataset not in json.dumps(listing.model_dump(mode="json"))
    mine = await _call(url, remote["token"], "get_dataset_info",
                       {"projectId": PROJECT, "datasetId": DATASET})
    assert not mine.is_error, _reason(mine)
    other = await _call(url, remote["token"], "get_dataset_info",
                        {"projectId": PROJECT, "datasetId": twin_dataset})
    assert other.is_error and "metadata.dataset_not_allowed" in _reason(other)
