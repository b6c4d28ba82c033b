"""SQL analysis at first sight: parse, resolve, lineage, masked-use check and column plan.

What the authorize stage does for a statement it has not seen before (a new literal defeats
the cache), for typical analyst statements over the demo schema with the demo analyst role
and column classes. The budget is 3 ms per statement; a cached statement costs a dict lookup.

    python bench/sql_analysis.py [--iterations 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")

STATEMENTS = {
    "2-table join": (
        "SELECT c.full_name AS name, o.amount, c.email FROM shop.customers AS c "
        "JOIN shop.orders AS o ON c.customer_id = o.customer_id "
        "WHERE o.status = 'paid' AND o.amount > {n} ORDER BY o.amount DESC LIMIT 100"
    ),
    "projection + filter": (
        "SELECT customer_id, email, ssn, card_number FROM shop.customers "
        "WHERE country = 'US' AND customer_id > {n} ORDER BY customer_id LIMIT 10"
    ),
    "aggregate + CTE": (
        "WITH t AS (SELECT customer_id, SUM(amount) AS total FROM shop.orders "
        "WHERE amount > {n} GROUP BY customer_id) SELECT c.country, COUNT(DISTINCT c.email) "
        "AS people, SUM(t.total) AS total FROM shop.customers AS c JOIN t USING (customer_id) "
        "GROUP BY c.country ORDER BY total DESC"
    ),
    "refused (computes on ssn)": (
        "SELECT customer_id FROM shop.customers WHERE SUBSTR(ssn, 1, 1) = '{n}'"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()

    import django

    django.setup()
    from bigquery_mcp.demo_data import TABLES
    from policy.classify import ColumnClassifier
    from policy.roles import compile_role_rules
    from policy.sql_analysis import SqlAnalysisError, SqlAnalyzer, analyze_sql
    from policy.sql_policy import check_masked_uses, check_sql
    from portal.services.demo import DEMO_ANALYST_RULES, DEMO_COLUMN_CLASSES
    from proxy.authorize import column_plan

    schema = {f"demo.shop.{t.name}": {f.name: f.field_type for f in t.schema} for t in TABLES}
    role = compile_role_rules("analyst", DEMO_ANALYST_RULES, token_key=b"bench-key")
    classifier = ColumnClassifier.from_config(DEMO_COLUMN_CLASSES)

    def classes_of(ref):  # type: ignore[no-untyped-def]
        return classifier.classes_of(ref.table, ref.column, {})

    def authorize(sql: str) -> bool:
        try:
            analysis = analyze_sql(sql, default_project="demo", default_dataset="shop",
                                   schema=schema)
        except SqlAnalysisError:
            return False
        if check_sql(analysis, role.sql) or check_masked_uses(analysis, classes_of, role.masking):
            return False
        column_plan(analysis, classifier, {})
        return True

    authorize(STATEMENTS["2-table join"].format(n=0))  # imports, first-use caches
    print(f"{'statement':28} {'allowed':>7} {'p50 ms':>8} {'p99 ms':>8}   (budget 3 ms)")
    counter = 0
    for label, template in STATEMENTS.items():
        times = []
        allowed = False
        for _ in range(args.iterations):
            counter += 1  # a new literal every time: nothing is cached
            start = time.perf_counter()
            allowed = authorize(template.format(n=counter))
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"{label:28} {str(allowed):>7} {statistics.median(times):8.3f} {p99:8.3f}")

    analyzer = SqlAnalyzer(16)
    sql = STATEMENTS["2-table join"].format(n=1)
    analyzer.analyze(sql, default_project="demo", schema=schema, schema_version=1)
    start = time.perf_counter()
    for _ in range(args.iterations * 10):
        analyzer.analyze(sql, default_project="demo", schema=schema, schema_version=1)
    cached = (time.perf_counter() - start) / (args.iterations * 10) * 1e6
    print(f"cached statement: {cached:.2f} us")


if __name__ == "__main__":
    main()
