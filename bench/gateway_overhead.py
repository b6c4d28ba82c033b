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

Then the issue-13 target rows, each next to direct in the same run (static upstream, so the
gateway's own cost is what remains): fixed cost for a 10-row result, cost per cell for
100 rows x 4 and 1,000 rows x 6 PII columns (and the masking rate it implies), calls/s at 32
concurrent sessions through `manage.py serve --workers 2` against direct, and the RSS of each
gateway worker at the end (flatness over 100,000 calls is the soak's figure: bench/soak.py).

    python bench/gateway_overhead.py [--calls 400]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SQL = ("SELECT customer_id, full_name, email, ssn, card_number, country "
       "FROM shop.customers WHERE customer_id <= 5 ORDER BY customer_id")
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}


# The target rows' statements: (rows, PII columns) -> SQL over the demo customers.
SIZED_SQL = {
    (10, 6): "SELECT customer_id, full_name, email, ssn, card_number, phone, street_address "
             "FROM shop.customers WHERE customer_id <= 10 ORDER BY customer_id",
    (100, 4): "SELECT customer_id, full_name, email, ssn, card_number "
              "FROM shop.customers WHERE customer_id <= 100 ORDER BY customer_id",
    (1000, 6): "SELECT customer_id, full_name, email, ssn, card_number, phone, street_address "
               "FROM shop.customers WHERE customer_id <= 1000 ORDER BY customer_id",
}


def body(i: int, sql: str = SQL) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                       "params": {"name": "execute_sql", "arguments": {"sql": sql}, "_meta": META}}
                      ).encode()


HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream",
           "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "execute_sql"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_calls(url: str, token: str | None, calls: int, concurrency: int,
                    sql: str = SQL) -> list[float]:
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
                r = await http.post(url, content=body(i, sql), headers=headers)
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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


async def sized_cost(direct: str, gateway: str, token: str, gateway_pid: int, calls: int,
                     sql: str) -> tuple[float, float, float]:
    """(direct p50 ms, overhead p50 ms, gateway CPU ms per call) for one statement."""
    await run_calls(direct, None, 10, 1, sql)
    await run_calls(gateway, token, 10, 1, sql)
    d = await run_calls(direct, None, calls, 1, sql)
    cpu0 = cpu_seconds(gateway_pid)
    g = await run_calls(gateway, token, calls, 1, sql)
    cpu = (cpu_seconds(gateway_pid) - cpu0) / calls * 1000
    return pct(d, .5), pct(g, .5) - pct(d, .5), cpu


async def rate(url: str, token: str | None, calls: int, concurrency: int, sql: str) -> float:
    t0 = time.perf_counter()
    await run_calls(url, token, calls, concurrency, sql)
    return calls / (time.perf_counter() - t0)


def print_targets(rows: list[tuple[str, str, str, str, bool]]) -> None:
    print("\n[issue-13 targets] measured next to direct in this run")
    print(f"  {'target':<46} {'direct':>14} {'gateway':>22}  met")
    for target, direct, measured, _, met in rows:
        print(f"  {target:<46} {direct:>14} {measured:>22}  {'yes' if met else 'NO'}")


def static_upstream(port: int, results: dict[str, dict], work: Path) -> subprocess.Popen:
    """Answers each method (and each recorded statement) with a result recorded from the real
    server."""
    recorded = work / "static-results.json"
    recorded.write_text(json.dumps(results))
    code = f"""
import json, uvicorn
RESULTS = json.loads(open({str(recorded)!r}).read())
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    raw = b""
    while True:
        m = await receive(); raw += m.get("body", b"")
        if not m.get("more_body"): break
    msg = json.loads(raw) if raw else {{}}
    result = RESULTS.get(msg.get("method"), {{}})
    if msg.get("method") == "tools/call":
        sql = ((msg.get("params") or {{}}).get("arguments") or {{}}).get("sql", "")
        result = RESULTS.get("sql:" + sql, result)
    out = json.dumps({{"jsonrpc": "2.0", "id": msg.get("id"), "result": result}}).encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]}})
    await send({{"type": "http.response.body", "body": out}})
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""
    return subprocess.Popen([sys.executable, "-c", code])


async def measure_targets(direct: str, base: str, token: str, gateway_pid: int, calls: int,
                          env: dict[str, str], work: Path,
                          children: list[subprocess.Popen]) -> list[tuple[str, str, str, str, bool]]:
    """The issue-13 target rows: (target, direct, gateway, unit, met)."""
    from bigquery_mcp.emulator import free_port
    from wardgate.demo_stack import wait_http

    gateway = f"{base}/static"
    cost = {size: await sized_cost(direct, gateway, token, gateway_pid,
                                   max(20, calls // (4 if size[0] >= 1000 else 1)), sql)
            for size, sql in SIZED_SQL.items()}
    d10, o10, c10 = cost[(10, 6)]
    d100, o100, _ = cost[(100, 4)]
    d1000, o1000, c1000 = cost[(1000, 6)]
    cells = 1000 * 6 - 10 * 6
    cells_per_s = cells / max(1e-9, (c1000 - c10) / 1000)
    rows = [
        ("fixed cost, 10 rows: overhead p50 <= 1 ms", f"{d10:.2f} ms", f"+{o10:.2f} ms",
         "ms", o10 <= 1.0),
        ("fixed cost, 10 rows: gateway CPU <= 1 ms/call", "-", f"{c10:.2f} ms", "ms",
         c10 <= 1.0),
        ("masking >= 1,000,000 cells/s (gateway CPU)", "-", f"{cells_per_s:,.0f} cells/s",
         "cells/s", cells_per_s >= 1_000_000),
        ("100 rows x 4 PII: overhead p50 <= +2.5 ms", f"{d100:.2f} ms", f"+{o100:.2f} ms",
         "ms", o100 <= 2.5),
        ("1,000 rows x 6 PII: overhead p50 <= +8 ms", f"{d1000:.2f} ms", f"+{o1000:.2f} ms",
         "ms", o1000 <= 8.0),
    ]
    # Two workers behind one port (`manage.py serve --workers 2 --only gateway`), 32 sessions.
    port = free_port()
    served = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--workers", "2", "--only", "gateway",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env={**env, "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics")},
        stdout=subprocess.DEVNULL)
    children.append(served)
    wait_http(f"http://127.0.0.1:{port}/healthz", 60, served, "serve --workers 2")
    two = f"http://127.0.0.1:{port}/mcp/static"
    sql = SIZED_SQL[(10, 6)]
    await run_calls(two, token, 64, 32, sql)  # both workers warm
    n = max(calls, 320)
    direct_rate = await rate(direct, None, n, 32, sql)
    gateway_rate = await rate(two, token, n, 32, sql)
    rows.append(("2 workers, 32 sessions: >= 80 % of direct calls/s",
                 f"{direct_rate:.0f}/s", f"{gateway_rate:.0f}/s "
                 f"({gateway_rate / direct_rate * 100:.0f} %)", "calls/s",
                 gateway_rate >= 0.8 * direct_rate))
    workers = [pid for pid in children_of(served.pid)  # not multiprocessing's resource tracker
               if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    rss = [rss_mb(pid) for pid in workers if rss_mb(pid) > 0]
    biggest = max(rss, default=0.0)
    rows.append(("gateway worker RSS <= 150 MiB (end of this run)", "-",
                 " + ".join(f"{mb:.0f}" for mb in rss) + " MiB", "MiB",
                 bool(rss) and biggest <= 150))
    served.terminate()
    served.wait(timeout=30)
    return rows


class BenchStack:
    """The bench's running parts: BigQuery emulator, our MCP server on it, the static upstream,
    both connections (demo-bigquery, static) with the demo policy, and an engineer's token."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work = work
        self.env = env
        self.children: list[subprocess.Popen] = []
        self.token = ""
        self.mcp_url = ""
        self.static_url = ""

    @staticmethod
    def free_port() -> int:
        from bigquery_mcp.emulator import free_port

        return free_port()

    def spawn(self, argv: list[str], cwd: str | Path = ROOT) -> subprocess.Popen:
        child = subprocess.Popen(argv, cwd=cwd, env=self.env)
        self.children.append(child)
        return child

    def wait_http(self, url: str, child: subprocess.Popen, what: str, timeout: float = 30) -> None:
        from wardgate.demo_stack import wait_http

        wait_http(url, timeout, child, what)


def bench_env(work: Path) -> dict[str, str]:
    env = {**os.environ, "WARDGATE_VAR_DIR": str(work), "WARDGATE_LOG_LEVEL": "ERROR",
           "WARDGATE_DEBUG": os.environ.get("WARDGATE_DEBUG", "0"),
           # One bench token drives up to 32 calls at once; the per-identity cap (16 by
           # default) would answer 429 to the rest and measure the refusal, not the call.
           "WARDGATE_GATEWAY_MAX_REQUESTS_PER_IDENTITY": os.environ.get(
               "WARDGATE_GATEWAY_MAX_REQUESTS_PER_IDENTITY", "64")}
    env.setdefault("DATABASE_URL", f"sqlite:///{work / 'bench.sqlite3'}")
    return env


@contextlib.contextmanager
def bench_stack(work: Path) -> Iterator[BenchStack]:
    """Set up Django on a fresh database in `work`, start the upstreams and yield them; every
    child process (also those started through `spawn`) is stopped on the way out."""
    env = bench_env(work)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "wardgate.settings"
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from bigquery_mcp.client import make_bigquery_client
    from bigquery_mcp.emulator import BigQueryEmulator
    from bigquery_mcp.seed import seed_demo_dataset
    from portal.models import Connection
    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.demo import demo_connection_ensure, demo_policy_ensure, demo_users_ensure
    from portal.services.events import SYSTEM
    from portal.services.tokens import token_issue

    call_command("migrate", verbosity=0)
    demo_users_ensure()
    stack = BenchStack(work, env)
    with BigQueryEmulator("wardgate-bench", work) as emulator:
        try:
            seed_demo_dataset(make_bigquery_client("wardgate-bench", emulator.endpoint), "shop")
            mcp_port, static_port = stack.free_port(), stack.free_port()
            mcp = stack.spawn(
                [sys.executable, "-m", "bigquery_mcp", "--transport", "http", "--port",
                 str(mcp_port), "--project", "wardgate-bench", "--endpoint", emulator.endpoint])
            stack.mcp_url = mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
            stack.wait_http(mcp_url, mcp, "MCP server")
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
            for sql in SIZED_SQL.values():
                results["sql:" + sql] = recorded("tools/call", body(1, sql))
            for method in ("server/discover", "tools/list"):
                results[method] = recorded(method, plain(method))
            static = static_upstream(static_port, results, work)
            stack.children.append(static)
            stack.static_url = static_url = f"http://127.0.0.1:{static_port}/mcp"
            stack.wait_http(static_url, static, "static upstream")
            static_conn = Connection.objects.create(
                slug="static", name="static", upstream_url=static_url,
                sql_tools=conn.sql_tools, bigquery_project="wardgate-bench",
                bigquery_endpoint=emulator.endpoint, default_dataset="shop",
                column_classes=conn.column_classes)
            demo_policy_ensure(static_conn)
            tool_catalog_refresh(connection=static_conn)
            tool_catalog_accept(connection=static_conn, by=None, meta=SYSTEM)
            engineer = get_user_model().objects.get(username="engineer")
            _, stack.token = token_issue(user=engineer, connections=[conn, static_conn], by=None,
                                         meta=SYSTEM)
            yield stack
        finally:
            for child in stack.children:
                child.terminate()
                child.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wardgate-bench-"))
    with bench_stack(work) as stack:
        gw_port = stack.free_port()
        gateway = stack.spawn(
            [sys.executable, "-m", "uvicorn", "wardgate.asgi:application", "--port",
             str(gw_port), "--log-level", "warning", "--no-access-log"])
        stack.wait_http(f"http://127.0.0.1:{gw_port}/healthz", gateway, "gateway")
        db = stack.env["DATABASE_URL"].split(":", 1)[0]
        print(f"Wardgate gateway overhead (audit store: {db}; 1 uvicorn worker; "
              f"{os.cpu_count()} cores shared by client, gateway and upstream)")
        base = f"http://127.0.0.1:{gw_port}/mcp"
        asyncio.run(measure("static upstream", stack.static_url, f"{base}/static", stack.token,
                            gateway.pid, args.calls))
        asyncio.run(measure("emulator upstream", stack.mcp_url, f"{base}/demo-bigquery",
                            stack.token, gateway.pid, max(100, args.calls // 4)))
        targets = asyncio.run(measure_targets(stack.static_url, base, stack.token, gateway.pid,
                                              args.calls, stack.env, stack.work, stack.children))
        print_targets(targets)
        from audit.verify import verify_chain

        result = verify_chain()
        print(f"\naudit chain after the run: ok={result.ok}, {result.records_checked} records")


if __name__ == "__main__":
    main()
