"""/metrics and the JSON logs: the figures move with the calls, and say nothing about who called
or what they asked."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace

import httpx
import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from bigquery_mcp.emulator import free_port
from proxy.app import GatewayApp
from proxy.config import GatewayConfig, MetricsAccess
from tests.conftest import ROOT, database_url_for_children, wait_http
from tests.proxy.mcp_http import call_sql, decision_rules
from wardgate.logs import JsonFormatter

pytestmark = pytest.mark.django_db(transaction=True)

SLUG = "demo-bigquery"
PLAIN_SQL = "SELECT customer_id, country FROM shop.customers WHERE customer_id <= 3"
MASKED_SQL = ("SELECT customer_id, email, ssn FROM shop.customers WHERE customer_id <= 4 "
              "ORDER BY customer_id")
DENIED_SQL = "DELETE FROM shop.customers WHERE customer_id = 1"

Figures = Counter[tuple[str, frozenset[tuple[str, str]]]]


def parse(text: str) -> Figures:
    figures: Figures = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            figures[(sample.name, frozenset(sample.labels.items()))] += sample.value
    return figures


async def scrape(http: httpx.AsyncClient, base: str) -> tuple[str, Figures]:
    response = await http.get(f"{base}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text, parse(response.text)


async def scrape_after(http: httpx.AsyncClient, base: str, before: Figures,
                       calls_made: int) -> tuple[str, Figures]:
    """A scrape once the gateway has counted `calls_made` more calls: it counts a call just
    after its answer has left, so a client that scrapes at once may be ahead of it."""
    deadline = time.monotonic() + 10
    while True:
        text, figures = await scrape(http, base)
        if delta(figures, before, "wardgate_gateway_calls_total") >= calls_made \
                or time.monotonic() > deadline:
            return text, figures
        await asyncio.sleep(0.05)


def delta(after: Figures, before: Figures, name: str, **labels: str) -> float:
    """How much `name` grew, summed over the series that carry `labels`."""
    wanted = set(labels.items())
    return sum(value - before.get(key, 0.0) for key, value in after.items()
               if key[0] == name and wanted <= key[1])


def calls(after: Figures, before: Figures, decision: str) -> float:
    return delta(after, before, "wardgate_gateway_calls_total", connection=SLUG,
                 method="tools/call", tool="execute_sql", decision=decision)


async def test_metrics_move_with_calls_and_name_no_one(gateway, engineer_token) -> None:  # type: ignore[no-untyped-def]
    url = gateway.url(SLUG)
    async with httpx.AsyncClient(timeout=60) as http:
        text0, s0 = await scrape(http, gateway.base_url)
        status, answer = await call_sql(http, url, engineer_token, PLAIN_SQL)
        assert status == 200 and not answer["result"].get("isError"), answer
        _, s1 = await scrape_after(http, gateway.base_url, s0, 1)
        status, answer = await call_sql(http, url, engineer_token, MASKED_SQL)
        assert status == 200 and not answer["result"].get("isError"), answer
        _, s2 = await scrape_after(http, gateway.base_url, s1, 1)
        status, answer = await call_sql(http, url, engineer_token, DENIED_SQL)
        assert status == 200 and answer["result"].get("isError"), answer
        rules = decision_rules(answer)
        text3, s3 = await scrape_after(http, gateway.base_url, s2, 1)

    # The allowed call: one allow, nothing masked.
    assert calls(s1, s0, "allow") == 1 and calls(s1, s0, "deny") == 0
    assert delta(s1, s0, "wardgate_gateway_masked_cells_total") == 0
    # The masked call: one allow, 4 rows x (email, ssn) masked, by class.
    assert calls(s2, s1, "allow") == 1
    assert delta(s2, s1, "wardgate_gateway_masked_cells_total", connection=SLUG,
                 **{"class": "email"}) == 4
    assert delta(s2, s1, "wardgate_gateway_masked_cells_total", connection=SLUG,
                 **{"class": "ssn"}) == 4
    # The denied call: one deny, each rule it named counted once, nothing forwarded.
    assert calls(s3, s2, "deny") == 1 and calls(s3, s2, "allow") == 0
    assert rules and "sql.statement_class" in rules
    for rule in rules:
        assert delta(s3, s2, "wardgate_gateway_denials_total", connection=SLUG, rule=rule) \
            == rules.count(rule)
    assert delta(s3, s2, "wardgate_gateway_stage_seconds_count", stage="forward") == 0
    # Every stage the three calls went through was timed, each once per call.
    for stage in ("authenticate", "connection", "token_scope", "grant", "session", "admission",
                  "live", "upstream", "parse", "authorize", "record_decision",
                  "record_outcome"):
        assert delta(s3, s0, "wardgate_gateway_stage_seconds_count", stage=stage) == 3, stage
    for stage in ("forward", "mask"):
        assert delta(s3, s0, "wardgate_gateway_stage_seconds_count", stage=stage) == 2, stage
    assert delta(s3, s0, "wardgate_gateway_stage_seconds_sum", stage="forward") > 0
    assert delta(s3, s0, "wardgate_gateway_call_seconds_count") >= 3
    assert delta(s3, s0, "wardgate_audit_commit_seconds_count") >= 1
    # Labels name connections, tools, rules and classes: never who, never what they asked.
    for text in (text0, text3):
        # ("DELETE" alone is the HTTP method a session's end is counted under.)
        for secret in ("engineer", "SELECT", "DELETE FROM", "customers", "shop.",
                       engineer_token):
            assert secret not in text


async def test_a_tool_outside_the_catalogue_is_counted_as_other(gateway, engineer_token) -> None:  # type: ignore[no-untyped-def]
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "made_up_tool_x1", "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                  "io.modelcontextprotocol/clientCapabilities": {}}}}
    headers = {"authorization": f"Bearer {engineer_token}", "content-type": "application/json",
               "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call",
               "mcp-name": "made_up_tool_x1"}
    async with httpx.AsyncClient(timeout=60) as http:
        _, before = await scrape(http, gateway.base_url)
        response = await http.post(gateway.url(SLUG), json=body, headers=headers)
        assert response.status_code == 200 and response.json()["result"]["isError"]
        text, after = await scrape_after(http, gateway.base_url, before, 1)
    assert "made_up_tool_x1" not in text
    assert delta(after, before, "wardgate_gateway_calls_total", connection=SLUG,
                 method="tools/call", tool="other", decision="deny") == 1


@pytest.mark.single_process_gateway("breaks a pipeline stage of this gateway")
async def test_json_logs_carry_the_request_id_of_the_call(gateway, engineer_token) -> None:  # type: ignore[no-untyped-def]
    """An internal error inside a call: its log line is JSON and names the call's request id,
    the same one the client was told."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("wardgate.gateway")
    logger.addHandler(handler)
    pipeline = gateway.gateway.pipeline

    async def broken(*_: object) -> bool:
        raise RuntimeError("catalogue exploded")

    original = pipeline.catalog.callable
    pipeline.catalog.callable = broken
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            status, answer = await call_sql(http, gateway.url(SLUG), engineer_token, PLAIN_SQL)
    finally:
        pipeline.catalog.callable = original
        logger.removeHandler(handler)
    assert status == 500
    told = answer["error"]["data"]["request_id"]
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    failing = [line for line in lines if line["message"] == "gateway error; failing closed"]
    assert failing, lines
    line = failing[0]
    assert line["request_id"] == told
    assert line["level"] == "ERROR" and line["logger"] == "wardgate.gateway"
    assert "catalogue exploded" in line["exception"] and line["time"].endswith("+00:00")


def test_log_format_setting_selects_the_json_formatter() -> None:
    code = ("import django, logging; django.setup(); "
            "print(type(logging.getLogger().handlers[0].formatter).__name__)")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wardgate.settings"}
    names = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True, env={**env, **extra}).stdout.strip()
             for extra in ({"WARDGATE_LOG_FORMAT": "json"}, {"WARDGATE_LOG_FORMAT": "text"})]
    assert names == ["JsonFormatter", "Formatter"]


class _Sent:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def __call__(self, message: dict) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return self.messages[0]["status"]


async def _scrape_app(app: GatewayApp, authorization: str | None) -> int:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    sent = _Sent()

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    await app({"type": "http", "method": "GET", "path": "/metrics", "headers": headers},
              receive, sent)
    return sent.status


@pytest.mark.django_db(transaction=False)
async def test_who_may_scrape() -> None:
    base = GatewayConfig(token_key=b"k" * 32)
    token = "a-long-scrape-token-1234"
    guarded = GatewayApp(replace(base, metrics=MetricsAccess(token=token)), store=None)  # type: ignore[arg-type]
    assert await _scrape_app(guarded, None) == 401
    assert await _scrape_app(guarded, "Bearer nope") == 401
    assert await _scrape_app(guarded, f"Bearer {token}") == 200
    open_app = GatewayApp(base, store=None)  # type: ignore[arg-type]
    assert await _scrape_app(open_app, None) == 200
    off = GatewayApp(replace(base, metrics=MetricsAccess(enabled=False)), store=None)  # type: ignore[arg-type]
    assert await _scrape_app(off, None) == 404


# ------------------------------------------------------------------ several worker processes


@pytest.fixture
def two_gateways_sharing_metrics(transactional_db, tmp_path):  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        pytest.skip("several gateway processes need a shared database server (PostgreSQL)")
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {**os.environ, "DATABASE_URL": database_url_for_children(),
           "WARDGATE_VAR_DIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    procs, bases = [], []
    for _ in range(2):
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "wardgate.asgi:application", "--port", str(port),
             "--log-level", "warning"], cwd=ROOT, env=env))
        bases.append(f"http://127.0.0.1:{port}")
    try:
        for base, proc in zip(bases, procs, strict=True):
            wait_http(f"{base}/healthz", proc, timeout=120)
        yield bases, metrics_dir
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)


async def test_metrics_of_several_processes_add_up(two_gateways_sharing_metrics, engineer_token) -> None:  # type: ignore[no-untyped-def]
    bases, metrics_dir = two_gateways_sharing_metrics
    async with httpx.AsyncClient(timeout=60) as http:
        _, before = await scrape(http, bases[0])
        for base, n in zip(bases, (2, 3), strict=True):
            for _ in range(n):
                status, answer = await call_sql(http, f"{base}/mcp/{SLUG}", engineer_token,
                                                MASKED_SQL)
                assert status == 200 and not answer["result"].get("isError"), answer
        # Each worker folds its histograms in once a second; counters are there at once.
        deadline = time.monotonic() + 10
        while True:
            scraped = [(await scrape(http, base))[1] for base in bases]
            timed = [delta(s, before, "wardgate_gateway_stage_seconds_count", stage="mask")
                     for s in scraped]
            if timed == [5, 5] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    for after in scraped:  # either worker answers for both
        assert calls(after, before, "allow") == 5
        assert delta(after, before, "wardgate_gateway_masked_cells_total",
                     **{"class": "email"}) == 20
    assert timed == [5, 5]
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2
