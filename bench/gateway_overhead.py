"""Gateway overhead: the same `execute_sql` call direct vs through Wardgate.

Prints p50/p99 latency direct and through the gateway, the gateway process's CPU per call,
and calls/s at concurrency 1, 8 and 32. Policy, SQL analysis, masking and the durable,
hash-chained audit record are all on (embedded SQLite by default; set DATABASE_URL to a
PostgreSQL URL to measure that instead).

Two upstreams are measured:
  - emulator: our BigQuery MCP server on the BigQuery emulator (realistic, but the emulator's
    own ~20-80 ms per query makes the gateway's share noisy);
  - static:   a tiny upstream that answers instantly with a recorded execute_sql result, so
    what is left is the gateway's own cost.

    python bench/gateway_overhead.py [--calls 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SQL = ("SELECT customer_id, full_name, email, ssn, card_number, country "
       "FROM shop.customers WHERE customer_id <= 5 ORDER BY customer_id")
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}


def body(i: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                       "params": {"name": "execute_sql", "arguments": {"sql": SQL}, "_meta": META}}
                      ).encode()


HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream",
           "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "execute_sql"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_calls(url: str, token: str | None, calls: int, concurrency: int) -> list[float]:
    import httpx

    headers = dict(HEADERS)
    if token:
        headers["authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    counter = iter(range(calls))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                r = await http.post(url, content=body(i), headers=headers)
                latencies.append(time.perf_counter() - t0)
                data = r.json()
                if r.status_code != 200 or data.get("result", {}).get("isError"):
                    raise SystemExit(f"call failed: {r.status_code} {r.text[:300]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(label: str, direct: str, gateway: str, token: str, gateway_pid: int,
                  calls: int) -> None:
    await run_calls(direct, None, 30, 1)  # warm up both paths (schema, analysis caches)
    await run_calls(gateway, token, 30, 1)
    d = await run_calls(direct, None, calls, 1)
    cpu0 = cpu_seconds(gateway_pid)
    g = await run_calls(gateway, token, calls, 1)
    cpu = (cpu_seconds(gateway_pid) - cpu0) / calls * 1000
    print(f"\n[{label}] {calls} sequential calls")
    print(f"  direct   p50 {pct(d, .5):7.2f} ms   p99 {pct(d, .99):7.2f} ms")
    print(f"  gateway  p50 {pct(g, .5):7.2f} ms   p99 {pct(g, .99):7.2f} ms")
    print(f"  overhead p50 {pct(g, .5) - pct(d, .5):7.2f} ms   "
          f"(mean {(statistics.mean(g) - statistics.mean(d)) * 1000:.2f} ms); "
          f"gateway CPU {cpu:.2f} ms/call")
    for concurrency in (1, 8, 32):
        for name, url, tok in (("direct", direct, None), ("gateway", gateway, token)):
            n = max(calls, concurrency * 10)
            t0 = time.perf_counter()
            await run_calls(url, tok, n, concurrency)
            rate = n / (time.perf_counter() - t0)
            print(f"  concurrency {concurrency:>2} {name:<8} {rate:8.1f} calls/s")


def static_upstream(port: int, results: dict[str, dict]) -> subprocess.Popen:
    """Answers each method with a result recorded from the real server."""
    code = f"""
import json, uvicorn
RESULTS = json.loads({json.dumps(json.dumps(results))})
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    raw = b""
    while True:
        m = await receive(); raw += m.get("body", b"")
        if not m.get("more_body"): break
    msg = json.loads(raw)
    result = RESULTS.get(msg.get("method"), {{}})
    out = json.dumps({{"jsonrpc": "2.0", "id": msg.get("id"), "result": result}}).encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]}})
    await send({{"type": "http.response.body", "body": out}})
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""
    return subprocess.Popen([sys.executable, "-c", code])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wardgate-bench-"))
    env = {**os.environ, "WARDGATE_VAR_DIR": str(work), "WARDGATE_LOG_LEVEL": "ERROR",
           "WARDGATE_DEBUG": os.environ.get("WARDGATE_DEBUG", "0"),
           # One bench token drives up to 32 calls at once; the per-identity cap (16 by
           # default) would answer 429 to the rest and measure the refusal, not the call.
           "WARDGATE_GATEWAY_MAX_REQUESTS_PER_IDENTITY": os.environ.get(
               "WARDGATE_GATEWAY_MAX_REQUESTS_PER_IDENTITY", "64")}
    env.setdefault("DATABASE_URL", f"sqlite:///{work / 'bench.sqlite3'}")
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "wardgate.settings"
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from bigquery_mcp.client import make_bigquery_client
    from bigquery_mcp.emulator import BigQueryEmulator, free_port
    from bigquery_mcp.seed import seed_demo_dataset
    from portal.models import Connection
    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.demo import demo_connection_ensure, demo_policy_ensure, demo_users_ensure
    from portal.services.events import SYSTEM
    from portal.services.tokens import token_issue
    from wardgate.demo_stack import wait_http

    call_command("migrate", verbosity=0)
    demo_users_ensure()
    children: list[subprocess.Popen] = []
    with BigQueryEmulator("wardgate-bench", work) as emulator:
        try:
            seed_demo_dataset(make_bigquery_client("wardgate-bench", emulator.endpoint), "shop")
            mcp_port, gw_port, static_port = free_port(), free_port(), free_port()
            children.append(subprocess.Popen(
                [sys.executable, "-m", "bigquery_mcp", "--transport", "http", "--port",
                 str(mcp_port), "--project", "wardgate-bench", "--endpoint", emulator.endpoint],
                cwd=ROOT, env=env))
            mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
            wait_http(mcp_url, 30, children[-1], "MCP server")
            conn = demo_connection_ensure(upstream_url=mcp_url, bigquery_project="wardgate-bench",
                                          bigquery_endpoint=emulator.endpoint, dataset="shop")
            demo_policy_ensure(conn)
            tool_catalog_refresh(connection=conn)
            tool_catalog_accept(connection=conn, by=None, meta=SYSTEM)
            # The static upstream answers with the real result of the same query.
            import httpx

            def recorded(method: str, payload: bytes) -> dict:
                headers = {**HEADERS, "mcp-method": method}
                if method != "tools/call":
                    headers.pop("mcp-name")
                return httpx.post(mcp_url, content=payload, headers=headers,
                                  timeout=30).json()["result"]

            def plain(method: str) -> bytes:
                return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                   "params": {"_meta": META}}).encode()

            results = {"tools/call": recorded("tools/call", body(1))}
            for method in ("server/discover", "tools/list"):
                results[method] = recorded(method, plain(method))
            children.append(static_upstream(static_port, results))
            static_url = f"http://127.0.0.1:{static_port}/mcp"
            wait_http(static_url, 30, children[-1], "static upstream")
            static = Connection.objects.create(
                slug="static", name="static", upstream_url=static_url,
                sql_tools=conn.sql_tools, bigquery_project="wardgate-bench",
                bigquery_endpoint=emulator.endpoint, default_dataset="shop",
                column_classes=conn.column_classes)
            demo_policy_ensure(static)
            tool_catalog_refresh(connection=static)
            tool_catalog_accept(connection=static, by=None, meta=SYSTEM)
            engineer = get_user_model().objects.get(username="engineer")
            _, token = token_issue(user=engineer, connections=[conn, static], by=None, meta=SYSTEM)
            gateway = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "wardgate.asgi:application", "--port",
                 str(gw_port), "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env)
            children.append(gateway)
            wait_http(f"http://127.0.0.1:{gw_port}/healthz", 30, gateway, "gateway")
            db = env["DATABASE_URL"].split(":", 1)[0]
            print(f"Wardgate gateway overhead (audit store: {db}; 1 uvicorn worker; "
                  f"{os.cpu_count()} cores shared by client, gateway and upstream)")
            base = f"http://127.0.0.1:{gw_port}/mcp"
            asyncio.run(measure("static upstream", static_url, f"{base}/static", token,
                                gateway.pid, args.calls))
            asyncio.run(measure("emulator upstream", mcp_url, f"{base}/demo-bigquery", token,
                                gateway.pid, max(100, args.calls // 4)))
            from audit.verify import verify_chain

            result = verify_chain()
            print(f"\naudit chain after the run: ok={result.ok}, {result.records_checked} records")
        finally:
            for child in children:
                child.terminate()
                child.wait(timeout=10)


if __name__ == "__main__":
    main()
