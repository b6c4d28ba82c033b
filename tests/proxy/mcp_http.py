"""Plain HTTP MCP calls (stateless 2026-07-28 revision) for tests that hammer the gateway."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}
_IDS = itertools.count(1)


def call_headers(token: str, method: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream",
            "content-type": "application/json", "mcp-protocol-version": "2026-07-28",
            "mcp-method": method}


def sql_call(sql: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": next(_IDS), "method": "tools/call",
            "params": {"name": "execute_sql", "arguments": {"sql": sql}, "_meta": META}}


async def call_sql(http: httpx.AsyncClient, url: str, token: str, sql: str,
                   timeout: float = 60) -> tuple[int, dict[str, Any]]:
    """POST one execute_sql call; the HTTP status and the JSON-RPC answer (or {})."""
    response = await http.post(url, json=sql_call(sql), timeout=timeout,
                               headers={**call_headers(token, "tools/call"),
                                        "mcp-name": "execute_sql"})
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {}


def decision_rules(answer: dict[str, Any]) -> list[str]:
    """The rules a denial named (tool result `_meta` or JSON-RPC error data)."""
    data = ((answer.get("result") or {}).get("_meta") or {}).get("io.wardgate/decision") \
        or (answer.get("error") or {}).get("data") or {}
    rules = [r.get("rule", "") for r in data.get("reasons") or []]
    return rules + ([data["reason"]] if data.get("reason") else [])


def nested_subqueries(depth: int) -> str:
    sql = "SELECT customer_id FROM shop.customers"
    for i in range(depth):
        sql = f"SELECT customer_id FROM ({sql}) AS t{i} WHERE customer_id > {i}"
    return sql
