"""Google's BigQuery remote MCP server behind the gateway: a stand-in written from Google's tool
reference (tests/bigquery_remote_standin.py), backed by the emulator, demanding Google access
tokens that the gateway mints with google-auth from a service-account key whose token_uri is a
loopback token endpoint (tests/google_token_endpoint.py).

Checked here: the adversarial corpus through the remote server's shapes (QueryResponse with
f/v rows), jobs (get_query_results / get_job / cancel_job only for the caller's own jobs the
gateway saw created, masked with the statement's plan), per-tool statement classes, the
project argument, and tokens (minted, refreshed after expiry, never recorded, fail closed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import Iterator

import httpx
import pytest

from proxy.db import run_db
from tests.adversarial_corpus import adversarial_cases
from tests.conftest import DATASET, PROJECT, http_server
from tests.google_token_endpoint import GoogleTokenEndpoint
from tests.proxy.test_gateway_auth import META
from tests.proxy.test_masking_adversarial import (
    TWIN,
    _audit_texts,
    _last_seq,
    _leaks,
    _needles,
    _raw_rows,
    twin_dataset,  # noqa: F401  (fixture)
)
from tests.proxy.test_scale_out import two_gateways  # noqa: F401  (fixture)
from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

REQUEST_ID = re.compile(r"[0-9a-f]{32}")
REMOTE_TOOLS = ["list_dataset_ids", "get_dataset_info", "list_table_ids", "get_table_info",
                "execute_sql_readonly", "execute_sql", "get_query_results", "get_job",
                "cancel_job"]


@pytest.fixture(scope="session")
def token_endpoint() -> Iterator[GoogleTokenEndpoint]:
    endpoint = GoogleTokenEndpoint(lifetime=3600).start()
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="session")
def standin_url(bigquery_emulator, token_endpoint, tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with http_server(lambda port: [
            sys.executable, "-m", "tests.bigquery_remote_standin", "--port", str(port), "--project", PROJECT,
            "--endpoint", bigquery_emulator.endpoint, "--tokeninfo", token_endpoint.tokeninfo_url],
            tmp_path_factory.mktemp("standin")) as url:
        yield url


def _remote_connection(slug: str, url: str, dataset: str, sa: dict, emulator: str):  # type: ignore[no-untyped-def]
    from portal.models import Connection
    from portal.services.demo import DEMO_COLUMN_CLASSES
    from portal.services.policy import connection_credentials_set, connection_save

    conn = Connection(slug=slug, name=slug, transport="http", upstream_url=url,
                      preset="bigquery-remote", bigquery_project=PROJECT,
                      bigquery_endpoint=emulator, default_dataset=dataset,
                      column_classes=DEMO_COLUMN_CLASSES)
    connection_save(connection=conn, by=None, reason="Google remote stand-in")
    connection_credentials_set(connection=conn, credentials={"google": {"service_account": sa}},
                               by=None, reason="service account")
    return conn


def _analyst_rules(dataset: str, classes: list[str] | None = None) -> dict:
    from portal.services.demo import DEMO_ANALYST_RULES

    sql = dict(DEMO_ANALYST_RULES["sql"])
    sql["allowed_tables"] = [t.replace(".shop.", f".{dataset}.") for t in sql["allowed_tables"]]
    if classes:
        sql["allowed_statement_classes"] = classes
    return {**DEMO_ANALYST_RULES, "tools": REMOTE_TOOLS, "sql": sql}


@pytest.fixture
def remote(engineer, standin_url, bigquery_emulator, token_endpoint, twin_dataset):  # type: ignore[no-untyped-def]  # noqa: F811
    """The demo and twin datasets behind the remote stand-in; the engineer and a colleague
    both hold the analyst role on both."""
    from portal.models import Grant, Role
    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.events import SYSTEM
    from portal.services.security import security_revision_bump
    from portal.services.tokens import token_issue
    from tests.conftest import make_user

    sa = token_endpoint.service_account()
    conns = {}
    for slug, dataset in (("bq-remote", DATASET), ("bq-remote-twin", twin_dataset)):
        conn = _remote_connection(slug, standin_url, dataset, sa, bigquery_emulator.endpoint)
        role = Role.objects.create(name=f"analyst-{slug}", rules=_analyst_rules(dataset))
        Grant.objects.create(role=role, connection=conn, group=engineer.groups.get(),
                             reason="remote stand-in")
        tool_catalog_refresh(connection=conn)
        tool_catalog_accept(connection=conn, by=None, meta=SYSTEM)
        conns[slug] = conn
    security_revision_bump()
    colleague = make_user("colleague", "engineer")
    _, mine = token_issue(user=engineer, connections=list(conns.values()),
                           by=None, meta=SYSTEM)
    _, theirs = token_issue(user=colleague, connections=list(conns.values()),
                           by=None, meta=SYSTEM)
    return {"token": mine, "colleague": theirs, "connections": conns, "sa": sa}


def _answer(result, dataset: str) -> str:  # type: ignore[no-untyped-def]
    """What the caller sees, with request ids, job ids and the dataset name removed."""
    def strip(value):  # type: ignore[no-untyped-def]
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "jobReference"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    content = []
    for block in result.content:
        shown = block.model_dump(mode="json", exclude_none=True)
        with contextlib.suppress(KeyError, ValueError):
            shown["text"] = strip(json.loads(shown["text"]))
        content.append(shown)
    text = json.dumps({"isError": result.is_error, "content": content,
                       "structured": strip(result.structured_content)}, sort_keys=True,
                      ensure_ascii=False)
    return REQUEST_ID.sub("<request-id>", text).replace(dataset, "<dataset>")


async def _run_all(url: str, token: str, statements: list[str]) -> list:  # type: ignore[type-arg]
    out = []
    async with gateway_client(url, token) as client:
        for sql in statements:
            out.append(await client.call_tool("execute_sql_readonly",
                                              {"projectId": PROJECT, "query": sql}))
    return out


async def test_adversarial_corpus_through_the_remote_server_leaks_nothing(
    gateway, remote, mcp_server_url, token_endpoint
) -> None:  # type: ignore[no-untyped-def]
    cases = adversarial_cases(DATASET)
    seq_before = await run_db(_last_seq)
    statements = [c.sql for c in cases]
    real = await _run_all(gateway.url("bq-remote"), remote["token"], statements)
    twin = await _run_all(gateway.url("bq-remote-twin"), remote["token"],
                          [s.replace(f"{DATASET}.", f"{TWIN}.") for s in statements])
    depends = [f"{c.leak}/{c.context}/{c.column}: {c.sql}"
               for c, a, b in zip(cases, real, twin, strict=True)
               if _answer(a, DATASET) != _answer(b, TWIN)]
    assert not depends, f"{len(depends)} answers depend on classified values:\n" + "\n".join(
        depends[:10])
    needles = _needles(await _raw_rows(mcp_server_url))
    leaks = _leaks([_answer(r, DATASET) for r in real], statements, needles)
    assert not leaks, "\n".join(leaks[:10])
    audit = await run_db(_audit_texts, seq_before)
    assert len(audit) >= 2 * len(cases)
    leaks = _leaks([text for _, text in audit], [sql for sql, _ in audit], needles)
    assert not leaks, "audit trail: " + "\n".join(leaks[:10])
    for case, result in zip(cases, real, strict=True):
        assert result.is_error, case.sql
    # The stand-in only answers with a live Google token: it got ones the gateway minted.
    assert token_endpoint.issued


async def _call(url: str, token: str, tool: str, arguments: dict):  # type: ignore[no-untyped-def]
    async with gateway_client(url, token) as client:
        return await client.call_tool(tool, arguments)


def _job_id(result) -> str:  # type: ignore[no-untyped-def]
    return result.structured_content["jobReference"]["jobId"]


def _reason(result) -> str:  # type: ignore[no-untyped-def]
    return result.content[0].text


async def test_job_results_are_masked_with_the_statement_plan_and_only_for_their_owner(
    gateway, remote, bigquery_client, mcp_server_url
) -> None:  # type: ignore[no-untyped-def]
    url = gateway.url("bq-remote")
    sql = f"SELECT customer_id, email, ssn FROM {DATASET}.customers ORDER BY customer_id LIMIT 5"
    first = await _call(url, remote["token"], "execute_sql_readonly",
                        {"projectId": PROJECT, "query": sql})
    assert not first.is_error, _reason(first)
    job_id = _job_id(first)
    # The same job's rows, fetched by id: masked exactly as the statement's answer was.
    again = await _call(url, remote["token"], "get_query_results",
                        {"projectId": PROJECT, "jobId": job_id})
    assert not again.is_error, _reason(again)
    assert again.structured_content["rows"] == first.structured_content["rows"]
    emails = [row["f"][1]["v"] for row in again.structured_content["rows"]]
    assert emails and all("***" in e for e in emails if e), emails  # partial, as the role says
    needles = _needles(await _raw_rows(mcp_server_url))
    assert not _leaks([json.dumps(again.model_dump(mode="json"))], ["get_query_results"],
                      needles)

    # Another identity, same grant: refused for results, job and cancel; no statement shown.
    for tool in ("get_query_results", "get_job", "cancel_job"):
        other = await _call(url, remote["colleague"], tool, {"projectId": PROJECT,
                                                             "jobId": job_id})
        assert other.is_error and "job.not_yours" in _reason(other), (tool, _reason(other))
        assert "customers" not in json.dumps(other.model_dump(mode="json"))

    # A job created behind the gateway's back: refused, whoever asks.
    direct = bigquery_client.query(f"SELECT email FROM {DATASET}.customers LIMIT 3")
    direct.result()
    unknown = await _call(url, remote["token"], "get_query_results",
                          {"projectId": PROJECT, "jobId": direct.job_id})
    assert unknown.is_error and "job.unknown" in _reason(unknown)

    # The owner may see the job (its own statement) and cancel it.
    info = await _call(url, remote["token"], "get_job", {"projectId": PROJECT, "jobId": job_id})
    assert not info.is_error, _reason(info)
    assert info.structured_content["jobReference"]["jobId"] == job_id
    cancel = await _call(url, remote["token"], "cancel_job", {"projectId": PROJECT,
                                                              "jobId": job_id})
    assert not cancel.is_error, _reason(cancel)

    # Recorded like every data call, with the job and its statement.
    from audit.models import AuditRecord

    records = await run_db(lambda: list(AuditRecord.objects.filter(
        tool="get_query_results", event="mcp.outcome").order_by("seq")))
    assert records and records[0].sql_text == sql
    assert records[0].detail["job"]["job_id"] == job_id


async def test_a_tightened_rule_applies_to_old_jobs(gateway, remote) -> None:  # type: ignore[no-untyped-def]
    from portal.models import Role
    from portal.services.security import security_revision_bump

    url = gateway.url("bq-remote")
    first = await _call(url, remote["token"], "execute_sql_readonly", {
        "projectId": PROJECT, "query": f"SELECT order_id FROM {DATASET}.orders LIMIT 2"})
    assert not first.is_error, _reason(first)

    def tighten() -> None:
        role = Role.objects.get(name="analyst-bq-remote")
        role.rules = {**role.rules, "sql": {**role.rules["sql"],
                                            "allowed_tables": ["*.shop.customers"]}}
        role.save()
        security_revision_bump()

    await run_db(tighten)
    await asyncio.sleep(0.5)
    later = await _call(url, remote["token"], "get_query_results",
                        {"projectId": PROJECT, "jobId": _job_id(first)})
    assert later.is_error and "sql.table_not_allowed" in _reason(later)


async def test_readonly_tool_runs_select_only_and_project_must_be_the_connections(
    gateway, remote
) -> None:  # type: ignore[no-untyped-def]
    from portal.models import Role
    from portal.services.security import security_revision_bump

    def allow_writes() -> None:
        role = Role.objects.get(name="analyst-bq-remote")
        role.rules = _analyst_rules(DATASET, ["select", "insert"])
        role.save()
        security_revision_bump()

    await run_db(allow_writes)
    await asyncio.sleep(0.5)
    url = gateway.url("bq-remote")
    insert = f"INSERT INTO {DATASET}.orders (order_id) VALUES (999999)"
    readonly = await _call(url, remote["token"], "execute_sql_readonly",
                           {"projectId": PROJECT, "query": insert})
    assert readonly.is_error and "sql.tool_statement_class" in _reason(readonly)
    # The role allows inserts, so the same statement passes the tool check on execute_sql
    # (whatever happens next is the role's and BigQuery's business).
    # (dryRun: the shared emulator data must not change.)
    plain = await _call(url, remote["token"], "execute_sql", {"projectId": PROJECT,
                                                             "query": insert, "dryRun": True})
    assert not plain.is_error, _reason(plain)

    other = await _call(url, remote["token"], "execute_sql_readonly", {
        "projectId": "someone-elses-project", "query": f"SELECT 1 FROM {DATASET}.orders"})
    assert other.is_error and "request.project_mismatch" in _reason(other)
    info = await _call(url, remote["token"], "get_table_info", {
        "projectId": PROJECT, "datasetId": "hr", "tableId": "payroll"})
    assert info.is_error and "metadata.table_not_allowed" in _reason(info)
    listing = await _call(url, remote["token"], "list_table_ids", {
        "projectId": PROJECT, "datasetId": DATASET})
    assert not listing.is_error, _reason(listing)


async def test_access_tokens_are_minted_refreshed_never_recorded_and_fail_closed(
    gateway, remote, token_endpoint
) -> None:  # type: ignore[no-untyped-def]
    url = gateway.url("bq-remote")
    query = {"projectId": PROJECT, "query": f"SELECT order_id FROM {DATASET}.orders LIMIT 1"}
    token_endpoint.lifetime = 2
    try:
        before = len(token_endpoint.issued)
        first = await _call(url, remote["token"], "execute_sql_readonly", query)
        assert not first.is_error, _reason(first)
        await asyncio.sleep(2.2)  # the token has expired: the stand-in would refuse it
        second = await _call(url, remote["token"], "execute_sql_readonly", query)
        assert not second.is_error, _reason(second)
        assert len(token_endpoint.issued) >= before + 1
        # Each token the stand-in accepted was signed for by our service account.
        assert {g.client_email for g in token_endpoint.issued[before:]} == {
            remote["sa"]["client_email"]}

        # Minting fails: the call fails closed, with a clear reason, nothing sent upstream.
        token_endpoint.fail = True
        await asyncio.sleep(2.2)
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "execute_sql_readonly", "arguments": query, "_meta": META}}
        async with httpx.AsyncClient() as http:
            refused = await http.post(url, json=call, headers={
                "content-type": "application/json", "mcp-protocol-version": "2026-07-28",
                "accept": "application/json, text/event-stream", "mcp-method": "tools/call",
                "mcp-name": "execute_sql_readonly", "authorization": f"Bearer {remote['token']}"})
        assert refused.status_code == 502
        error = refused.json()["error"]
        assert error["data"]["reason"] == "upstream.credentials_unavailable"
        assert "could not mint a Google access token" in error["message"]
    finally:
        token_endpoint.fail = False
        token_endpoint.lifetime = 3600

    from audit.models import AuditRecord

    def texts() -> list[str]:
        return [json.dumps([r.reasons, r.response_body, r.detail, r.arguments])
                for r in AuditRecord.objects.all()]

    recorded = "\n".join(await run_db(texts))
    assert "could not mint a Google access token" in recorded
    for grant in token_endpoint.issued:
        assert grant.token not in recorded
    assert remote["sa"]["private_key"].splitlines()[1] not in recorded


async def test_mirrored_project_header_must_match_the_policed_body(gateway, remote) -> None:  # type: ignore[no-untyped-def]
    """The official client mirrors projectId into Mcp-Param-Project (x-mcp-header); a caller
    who sends another project in the header than in the body is refused by the gateway."""
    url = gateway.url("bq-remote")
    # Through the official client the header is sent and agrees (the stand-in checks it too).
    ok = await _call(url, remote["token"], "execute_sql_readonly", {
        "projectId": PROJECT, "query": f"SELECT order_id FROM {DATASET}.orders LIMIT 1"})
    assert not ok.is_error, _reason(ok)
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "execute_sql_readonly", "_meta": META,
        "arguments": {"projectId": PROJECT, "query": f"SELECT 1 FROM {DATASET}.orders"}}}
    async with httpx.AsyncClient() as http:
        refused = await http.post(url, json=call, headers={
            "content-type": "application/json", "mcp-protocol-version": "2026-07-28",
            "accept": "application/json, text/event-stream", "mcp-method": "tools/call",
            "mcp-name": "execute_sql_readonly", "mcp-param-project": "someone-elses-project",
            "authorization": f"Bearer {remote['token']}"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["data"]["reason"] == "request.header_mismatch"


async def test_jobs_are_shared_by_gateway_processes(two_gateways, remote) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A job created through one gateway process is known, and still only its owner's, on
    another (the job table is in the shared database, not in process memory)."""
    first, second = (f"{base}/mcp/bq-remote" for base in two_gateways)
    sql = f"SELECT customer_id, email FROM {DATASET}.customers ORDER BY customer_id LIMIT 3"
    created = await _call(first, remote["token"], "execute_sql_readonly",
                          {"projectId": PROJECT, "query": sql})
    assert not created.is_error, _reason(created)
    job = {"projectId": PROJECT, "jobId": _job_id(created)}
    elsewhere = await _call(second, remote["token"], "get_query_results", job)
    assert not elsewhere.is_error, _reason(elsewhere)
    assert elsewhere.structured_content["rows"] == created.structured_content["rows"]
    stranger = await _call(second, remote["colleague"], "get_query_results", job)
    assert stranger.is_error and "job.not_yours" in _reason(stranger)


async def test_query_response_columns_are_told_apart_by_their_schema(
    gateway, remote, bigquery_client
) -> None:  # type: ignore[no-untyped-def]
    """QueryResponse rows ({"f": [{"v": …}]}) name no column; the schema does. A single renamed
    column must still be masked as what it is (here a name, tokenized, which no content
    detector would catch)."""
    raw_names = {row["full_name"] for row in bigquery_client.query(
        f"SELECT full_name FROM {DATASET}.customers").result()}
    result = await _call(gateway.url("bq-remote"), remote["token"], "execute_sql_readonly", {
        "projectId": PROJECT,
        "query": f"SELECT full_name AS who FROM {DATASET}.customers ORDER BY customer_id LIMIT 5"})
    assert not result.is_error, _reason(result)
    cells = [row["f"][0]["v"] for row in result.structured_content["rows"]]
    assert cells and all(c.startswith("tok_") for c in cells), cells
    assert not raw_names & set(cells)
    assert not any(name in json.dumps(result.model_dump(mode="json")) for name in raw_names)

