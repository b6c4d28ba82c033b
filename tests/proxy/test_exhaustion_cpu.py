"""CPU exhaustion with one valid token: hostile SQL cannot stall the gateway or the portal.

A statement of nested subqueries used to be parsed on the event loop the portal shares: 280
levels blocked everything for seconds and stayed allowed. Now statements over a bound are
refused before parsing, the rest are analysed in worker processes under a time budget, and
the refusals are recorded. The portal's login page keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from tests.proxy.mcp_http import call_sql, decision_rules, nested_subqueries

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time of these processes themselves (not of their children: the SQL workers)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def _portal_pages(base: str, during: asyncio.Task) -> int:
    """Login pages served while `during` runs."""
    served = 0
    async with httpx.AsyncClient() as http:
        while not during.done():
            response = await http.get(f"{base}/accounts/login/", timeout=30)
            assert response.status_code == 200
            served += 1
            await asyncio.sleep(0.05)
    return served


async def _records_with(rule: str) -> int:
    from audit.models import AuditRecord
    from proxy.db import run_db

    def count() -> int:
        return sum(rule in str(r.reasons) for r in AuditRecord.objects.filter(event="mcp.decision"))

    return await run_db(count)


async def test_hostile_sql_is_refused_and_never_stalls_the_portal(
        gateway_process, engineer_token, demo_policy) -> None:  # type: ignore[no-untyped-def]
    # A high depth bound, so 120 levels reach the parser and only the time budget stops them.
    gw = gateway_process(WARDGATE_SQL_MAX_DEPTH="400", WARDGATE_SQL_ANALYSIS_BUDGET_MS="300")
    url = gw.url("demo-bigquery")
    async with httpx.AsyncClient() as http:
        status, answer = await call_sql(http, url, engineer_token,
                                        "SELECT customer_id FROM shop.customers LIMIT 1")
        assert status == 200 and not answer["result"].get("isError"), answer

        async def attack() -> list[list[str]]:
            # Several at once, each with a different literal so no cache helps.
            calls = [call_sql(http, url, engineer_token, nested_subqueries(120) + f" AND {i} = {i}")
                     for i in range(4)]
            calls.append(call_sql(http, url, engineer_token, nested_subqueries(500)))
            return [decision_rules(a) for _, a in await asyncio.gather(*calls)]

        serving = gw.serving_pids()
        cpu_before = _cpu_seconds(serving)
        attack_task = asyncio.ensure_future(attack())
        pages = await _portal_pages(gw.base_url, attack_task)
        rules = await attack_task
        # CPU the gateway + portal process spent meanwhile: serving the login pages and
        # refusing five statements. The seconds of parsing happened elsewhere (on the old code
        # they were all spent here, on the event loop the portal shares). CPU time, unlike wall
        # time, does not depend on how busy the machine is.
        spent = _cpu_seconds(serving) - cpu_before
    assert rules[:4] == [["sql.too_complex"]] * 4, rules
    assert rules[4] == ["sql.too_deep"], rules
    assert pages >= 1
    assert spent < 1.0 + 0.05 * pages, f"the gateway process burnt {spent:.2f}s of CPU"
    assert await _records_with("sql.too_complex") >= 4
    assert await _records_with("sql.too_deep") >= 1


async def test_sql_bounds_are_refused_before_parsing_with_clear_reasons(
        gateway_process, engineer_token, demo_policy) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_process(WARDGATE_SQL_MAX_CHARS="20000", WARDGATE_SQL_MAX_TOKENS="1000")
    url = gw.url("demo-bigquery")
    wide = "SELECT " + ", ".join(["customer_id"] * 600) + " FROM shop.customers"
    long = "SELECT customer_id FROM shop.customers WHERE email = '" + "x" * 25000 + "'"
    async with httpx.AsyncClient() as http:
        results = [await call_sql(http, url, engineer_token, sql)
                   for sql in (nested_subqueries(40), wide, long)]
    assert [decision_rules(a) for _, a in results] == [
        ["sql.too_deep"], ["sql.too_many_tokens"], ["sql.too_long"]], results
    assert all(status == 200 and a["result"]["isError"] for status, a in results)
    for rule in ("sql.too_deep", "sql.too_many_tokens", "sql.too_long"):
        assert await _records_with(rule) == 1
