"""SQL analysis of one statement first seen against a cached lookup of the same statement.

    python bench/sql_cache.py [--iterations 300]

A typical 2-table join with 3 output columns, without Django (bench/sql_analysis.py measures
the authorize stage's statements with the demo role and column classes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from policy.sql_analysis import SqlAnalyzer, analyze_sql  # noqa: E402

SCHEMA: Final[dict[str, dict[str, str]]] = {
    "demo.shop.customers": {
        "customer_id": "INT64",
        "full_name": "STRING",
        "email": "STRING",
        "ssn": "STRING",
        "country": "STRING",
    },
    "demo.shop.orders": {
        "order_id": "INT64",
        "customer_id": "INT64",
        "amount": "NUMERIC",
        "status": "STRING",
    },
}


def bench_sql_cache(iterations: int = 300) -> dict[str, float]:
    """Time a typical 2-table join with 3 output columns; returns microseconds.

    Each figure is the best mean over 5 batches, so a busy machine skews it less.
    """
    base = (
        "SELECT c.full_name AS name, o.amount, CONCAT(c.email, '/', c.country) AS contact "
        "FROM shop.customers AS c JOIN shop.orders AS o ON c.customer_id = o.customer_id "
        "WHERE o.status = 'paid' AND o.amount > {n} ORDER BY o.amount DESC LIMIT 100"
    )
    analyze_sql(base.format(n=0), default_project="demo", schema=SCHEMA)  # warm imports
    batch = max(1, iterations // 5)
    counter = 0
    uncached = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(batch):
            counter += 1  # distinct literal: a new text every time, nothing cached
            analyze_sql(base.format(n=counter), default_project="demo", schema=SCHEMA)
        uncached = min(uncached, (time.perf_counter() - start) / batch * 1e6)

    analyzer = SqlAnalyzer(16)
    sql = base.format(n=1)
    analyzer.analyze(sql, default_project="demo", schema=SCHEMA, schema_version=1)
    cached = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(batch * 10):
            analyzer.analyze(sql, default_project="demo", schema=SCHEMA, schema_version=1)
        cached = min(cached, (time.perf_counter() - start) / (batch * 10) * 1e6)
    return {"first_analysis_us": uncached, "cached_lookup_us": cached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    figures = bench_sql_cache(parser.parse_args().iterations)
    print(f"first analysis: {figures['first_analysis_us'] / 1000:.3f} ms")
    print(f"cached lookup:  {figures['cached_lookup_us']:.2f} us")


if __name__ == "__main__":
    main()
