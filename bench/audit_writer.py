"""Measure the audit writer on the configured database (run against a scratch database).

    DATABASE_URL=sqlite:////tmp/bench.sqlite3 python manage.py migrate
    DATABASE_URL=sqlite:////tmp/bench.sqlite3 python bench/audit_writer.py [--records 3000]

Reports the mean latency of `await writer.write()` one call at a time (concurrency 1) and the
throughput with 32 concurrent callers, where group commit shares each transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _entry(i: int) -> Any:
    from audit.services import AuditEntry

    # Roughly what one execute_sql outcome carries: SQL, redacted arguments, a capped body.
    return AuditEntry(
        event="mcp.outcome",
        request_id=f"bench-{i}",
        actor="engineer",
        auth_method="personal_token",
        source_ip="127.0.0.1",
        user_agent="bench/1.0",
        connection="demo-bigquery",
        mcp_session_id="session-bench",
        jsonrpc_method="tools/call",
        tool="execute_sql",
        arguments={"sql": "SELECT id, email FROM shop.customers WHERE country = 'DE' LIMIT 50"},
        sql_text="SELECT id, email FROM shop.customers WHERE country = 'DE' LIMIT 50",
        sql_fingerprint="f" * 64,
        decision="allow",
        reasons=[{"rule": "grant", "grant": 12}],
        masking=[{"column": "email", "method": "tokenize"}],
        row_count=50,
        result_bytes=4096,
        response_body="x" * 4096,
        response_sha256="a" * 64,
        upstream_latency_ms=42.1234,
        detail={"bench": True},
    )


async def _concurrency_1(count: int) -> dict[str, float]:
    from audit.writer import AuditWriter

    writer = AuditWriter()
    await writer.start()
    await writer.write(_entry(-1))  # connect outside the measurement
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        await writer.write(_entry(i))
        latencies.append((time.perf_counter() - started) * 1000)
    await writer.stop()
    latencies.sort()
    return {
        "mean_ms": statistics.fmean(latencies),
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
    }


async def _concurrency_n(count: int, callers: int) -> dict[str, float]:
    from audit.writer import AuditWriter

    writer = AuditWriter()
    await writer.start()
    await writer.write(_entry(-1))
    batches_before = writer.stats.batches
    todo = iter(range(count))
    latencies: list[float] = []

    async def caller() -> None:
        for i in todo:
            started = time.perf_counter()
            await writer.write(_entry(i))
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - started
    batches = writer.stats.batches - batches_before
    await writer.stop()
    return {
        "records_per_s": count / elapsed,
        "mean_ms": statistics.fmean(latencies),
        "mean_batch": count / batches,
    }


def bench_audit_writer(records: int = 3000, callers: int = 32) -> dict[str, dict[str, float]]:
    from django.db import connection

    from audit.verify import verify_chain

    results = {
        "concurrency_1": asyncio.run(_concurrency_1(min(records, 1000))),
        f"concurrency_{callers}": asyncio.run(_concurrency_n(records, callers)),
    }
    check = verify_chain()
    assert check.ok, check.problem
    results["verify"] = {"records": check.records_checked}
    connection.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--callers", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")
    import django

    django.setup()
    from django.db import connection

    print(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    for name, values in bench_audit_writer(args.records, args.callers).items():
        print(f"{name}: " + ", ".join(f"{k}={v:.2f}" for k, v in values.items()))


if __name__ == "__main__":
    main()
