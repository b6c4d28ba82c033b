"""The adversarial SQL corpus for masking (issue: masking that holds against an adversary).

Generated, not hand-listed: five leak classes (error texts, implicit flows, partial masking of
computed values, encodings, plus the metadata route tested elsewhere) × every classified column
of the demo × every SQL context (projection, expression, join condition, filter, grouping,
ordering, window, set operation, subquery, CTE). Each statement is something the demo
`analyst` role may send (SELECT on the shop tables); every one of them tries to make an answer
depend on a classified value. `legit_statements` is the other side: what an analyst needs and
must keep getting.

Used by tests/proxy/test_masking_adversarial.py and by bench/soak.py (`adversarial_statements`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bigquery_mcp.demo_data import generate


@dataclass(frozen=True)
class ClassifiedColumn:
    table: str
    column: str
    kind: str  # BigQuery type
    pii_class: str


# The demo's classified columns (portal.services.demo.DEMO_COLUMN_CLASSES), with their types.
CLASSIFIED = (
    ClassifiedColumn("customers", "full_name", "STRING", "name"),
    ClassifiedColumn("customers", "email", "STRING", "email"),
    ClassifiedColumn("customers", "phone", "STRING", "phone"),
    ClassifiedColumn("customers", "ssn", "STRING", "ssn"),
    ClassifiedColumn("customers", "card_number", "STRING", "card"),
    ClassifiedColumn("customers", "date_of_birth", "DATE", "dob"),
    ClassifiedColumn("customers", "street_address", "STRING", "address"),
    ClassifiedColumn("customers", "ip_address", "STRING", "ip"),
    ClassifiedColumn("events", "payload", "STRING", "free_text"),
)


@dataclass(frozen=True)
class Case:
    sql: str
    leak: str  # error_text | implicit_flow | partial_computed | encoding
    context: str
    column: str


def _text(col: ClassifiedColumn, ref: str) -> str:
    return ref if col.kind == "STRING" else f"CAST({ref} AS STRING)"


def _sample_value(col: ClassifiedColumn) -> str:
    """A real value of the column (customer 1 of the deterministic test data): a guess that
    is right, for the oracle statements."""
    data = generate(customers=300)
    row = data[col.table][0]
    value = row[col.column]
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


def _expressions(col: ClassifiedColumn, ref: str) -> list[tuple[str, str]]:
    """(leak class, expression over the column) pairs."""
    t = _text(col, ref)
    return [
        # error texts
        ("error_text", f"CAST({t} AS INT64)"),
        ("error_text", f"ERROR({t})"),
        ("error_text", f"PARSE_DATE('%Y', {t})"),
        ("error_text", f"ERROR(CONCAT({t}, ' / ', REPLACE({t}, '-', '/')))"),
        ("error_text", f"CAST({t} AS BOOL)"),
        # partial masking of computed values
        ("partial_computed", f"CONCAT('a@', REPLACE({t}, '@', '_'), '.x')"),
        ("partial_computed", f"CONCAT('000', SUBSTR({t}, 5, 4))"),
        ("partial_computed", f"CONCAT('0000 0000 0000 ', SUBSTR({t}, 1, 4))"),
        ("partial_computed", f"SPLIT({t}, '.')[SAFE_OFFSET(1)]"),
        ("partial_computed", f"LENGTH({t})"),
        # encodings
        ("encoding", f"REVERSE({t})"),
        ("encoding", f"TO_BASE64(CAST({t} AS BYTES))"),
        ("encoding", f"TO_HEX(CAST({t} AS BYTES))"),
        ("encoding", f"TRANSLATE({t}, '0123456789@.', 'abcdefghij#!')"),
        ("encoding", f"ARRAY_TO_STRING(ARRAY(SELECT CAST(cp AS STRING) FROM "
                     f"UNNEST(TO_CODE_POINTS({t})) AS cp), ',')"),
        ("encoding", f"REGEXP_REPLACE({t}, r'(.)', r'\\1 ')"),
        ("encoding", f"UPPER({t})"),
        ("encoding", f"FORMAT('%T', {ref})"),
    ]


def adversarial_cases(dataset: str = "shop") -> list[Case]:
    cases: list[Case] = []
    for col in CLASSIFIED:
        table = f"{dataset}.{col.table}"
        key = "customer_id" if col.table == "customers" else "event_id"
        plain = "country" if col.table == "customers" else "event_type"  # unclassified
        ref = f"t.{col.column}"
        t = _text(col, ref)
        guess = _sample_value(col)
        first = f"SUBSTR({t}, 1, 1)"

        def add(leak: str, context: str, sql: str, column: str = col.column) -> None:
            cases.append(Case(sql, leak, context, column))

        for leak, expr in _expressions(col, ref):
            add(leak, "projection", f"SELECT {key}, {expr} AS x FROM {table} AS t ORDER BY {key} LIMIT 3")
            add(leak, "subquery", f"SELECT x FROM (SELECT {expr} AS x FROM {table} AS t) LIMIT 3")
            add(leak, "cte", f"WITH s AS (SELECT {key}, {expr} AS x FROM {table} AS t) "
                             f"SELECT x FROM s ORDER BY {key} LIMIT 3")
            add(leak, "filter", f"SELECT {key} FROM {table} AS t WHERE {expr} IS NOT NULL "
                                f"AND {key} <= 3")
        # implicit flows: the value decides which rows or values come back
        add("implicit_flow", "join",
            f"SELECT t.{key}, d1 FROM {table} AS t JOIN UNNEST(GENERATE_ARRAY(0, 9)) AS d1 "
            f"ON SAFE_CAST(SUBSTR({t}, 1, 1) AS INT64) = d1 WHERE t.{key} <= 5")
        add("implicit_flow", "join",
            f"SELECT t.{key}, l FROM {table} AS t JOIN UNNEST(SPLIT('abcdefghijklmnopqrstuvwxyz"
            f"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', '')) AS l ON {first} = l WHERE t.{key} <= 5")
        add("implicit_flow", "join",
            f"SELECT a.{key} FROM {table} AS a JOIN {table} AS t ON a.{col.column} = "
            f"t.{col.column} WHERE a.{key} <> t.{key}")
        add("implicit_flow", "join",
            f"SELECT t.{key} FROM {table} AS t JOIN (SELECT '{guess}' AS g) AS q "
            f"ON {t} = q.g")
        add("implicit_flow", "join",
            f"SELECT {key} FROM {table} AS t JOIN (SELECT '{guess}' AS {col.column}) "
            f"USING ({col.column})")
        add("implicit_flow", "join",
            f"SELECT {key} FROM {table} NATURAL JOIN (SELECT '{guess}' AS {col.column})")
        add("implicit_flow", "filter", f"SELECT {key} FROM {table} AS t WHERE {t} = '{guess}'")
        add("implicit_flow", "filter",
            f"SELECT {key} FROM {table} AS t WHERE {t} IN ('{guess}', 'x')")
        add("implicit_flow", "filter",
            f"SELECT COUNT(*) AS n FROM {table} AS t WHERE STARTS_WITH({t}, '1')")
        add("implicit_flow", "filter",
            f"SELECT {key} FROM {table} AS t WHERE {t} LIKE '%a%' AND {key} <= 5")
        add("implicit_flow", "filter",
            f"SELECT {key} FROM {table} AS t WHERE {key} IN (SELECT {key} FROM {table} AS t "
            f"WHERE {t} > 'm') AND {key} <= 5")
        add("implicit_flow", "filter",
            f"SELECT {key} FROM {table} AS t WHERE EXISTS (SELECT 1 FROM {table} AS u "
            f"WHERE u.{col.column} = t.{col.column} AND u.{key} <> t.{key})")
        add("implicit_flow", "filter",
            f"SELECT COUNT(*) AS n FROM {table} AS t HAVING MAX({t}) > 'm'")
        add("implicit_flow", "filter",
            f"SELECT {key} FROM {table} AS t WHERE {key} <= 5 "
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {first}) = 1")
        add("implicit_flow", "filter",
            f"SELECT {key} FROM {table} AS t WHERE '{guess}' IN (SELECT {col.column} FROM {table})")
        add("implicit_flow", "grouping",
            f"SELECT COUNT(*) AS n FROM {table} AS t GROUP BY {first}")
        add("implicit_flow", "grouping",
            f"SELECT {col.column}, COUNT(*) AS n FROM {table} AS t GROUP BY {col.column} LIMIT 3")
        add("implicit_flow", "grouping",
            f"SELECT {col.column}, COUNT(*) AS n FROM {table} AS t GROUP BY 1 LIMIT 3")
        add("implicit_flow", "grouping",
            f"SELECT {col.column}, COUNT(*) AS n FROM {table} AS t GROUP BY ALL LIMIT 3")
        # DISTINCT groups by every output: BigQuery (and the emulator) return the groups in
        # hash order, so which rows a LIMIT keeps, and their order, depend on the raw values.
        add("implicit_flow", "grouping",
            f"SELECT DISTINCT {key}, {col.column} FROM {table} AS t")
        add("implicit_flow", "subquery",
            f"SELECT {key} FROM (SELECT DISTINCT {key}, {col.column} FROM {table}) LIMIT 8")
        add("implicit_flow", "cte",
            f"WITH d AS (SELECT DISTINCT {plain}, {col.column} FROM {table}) SELECT {plain} FROM d")
        add("implicit_flow", "ordering",
            f"SELECT {key} FROM {table} AS t ORDER BY {col.column} LIMIT 5")
        add("implicit_flow", "ordering",
            f"SELECT {col.column} AS v, {key} FROM {table} AS t ORDER BY v LIMIT 5")
        add("implicit_flow", "ordering",
            f"SELECT {key}, {col.column} FROM {table} AS t ORDER BY 2 LIMIT 5")
        add("implicit_flow", "window",
            f"SELECT {key}, ROW_NUMBER() OVER (ORDER BY {col.column}) AS r FROM {table} AS t "
            f"ORDER BY {key} LIMIT 5")
        add("implicit_flow", "window",
            f"SELECT {key}, COUNT(*) OVER (PARTITION BY {first}) AS r FROM {table} AS t "
            f"ORDER BY {key} LIMIT 5")
        add("implicit_flow", "window",
            f"SELECT {key}, LAG({col.column}) OVER (ORDER BY {key}) AS prev FROM {table} AS t "
            f"ORDER BY {key} LIMIT 5")
        add("implicit_flow", "set_operation",
            f"SELECT {col.column} FROM {table} UNION DISTINCT SELECT '{guess}'")
        add("implicit_flow", "set_operation",
            f"SELECT {col.column} FROM {table} INTERSECT DISTINCT SELECT '{guess}'")
        add("implicit_flow", "set_operation",
            f"SELECT '{guess}' EXCEPT DISTINCT SELECT {col.column} FROM {table}")
        add("implicit_flow", "set_operation",
            f"SELECT COUNT(DISTINCT v) AS n FROM (SELECT {col.column} AS v FROM {table} "
            f"UNION ALL SELECT '{guess}')")
        add("implicit_flow", "set_operation",
            f"SELECT COUNT(*) AS n FROM (SELECT DISTINCT v FROM (SELECT {col.column} AS v "
            f"FROM {table} UNION ALL SELECT '{guess}'))")
        add("implicit_flow", "subquery",
            f"SELECT (SELECT COUNT(*) FROM {table} AS t WHERE {t} < 'n') AS n")
        add("implicit_flow", "cte",
            f"WITH g AS (SELECT '{guess}' AS v) SELECT COUNT(*) AS n FROM {table} AS t, g "
            f"WHERE {t} = g.v")
        add("implicit_flow", "expression",
            f"SELECT {key}, IF({t} = '{guess}', 1, 0) AS hit FROM {table} AS t LIMIT 5")
        add("implicit_flow", "expression",
            f"SELECT {key}, IF(STARTS_WITH({t}, '1'), ERROR('one'), 0) AS e FROM {table} AS t "
            f"WHERE {key} = 1")
        add("implicit_flow", "expression",
            f"SELECT TO_JSON_STRING(t) AS j FROM {table} AS t LIMIT 3")
        add("implicit_flow", "expression",
            f"SELECT MAX({col.column}) AS m, MIN({col.column}) AS n FROM {table}")
        add("implicit_flow", "expression",
            f"SELECT ARRAY_AGG({col.column} ORDER BY {key} LIMIT 3) AS a FROM {table}")
        add("implicit_flow", "expression",
            f"SELECT STRING_AGG({t}, '|') AS a FROM {table} AS t WHERE {key} <= 3")
        add("implicit_flow", "expression",
            f"SELECT {key}, v FROM {table} AS t, UNNEST([{t}]) AS v WHERE {key} <= 3")
        add("implicit_flow", "expression",
            f"SELECT COUNTIF({t} = '{guess}') AS n FROM {table} AS t")
        # A select alias named like the column hides it from sqlglot, not from BigQuery:
        # inside an aggregate (HAVING, ORDER BY) and in GROUP BY the name is the table's column.
        add("implicit_flow", "filter",
            f"SELECT {plain} AS {col.column}, COUNT(*) AS n FROM {table} AS t GROUP BY {plain} "
            f"HAVING MAX({col.column}) > 'm' ORDER BY n")
        add("implicit_flow", "filter",
            f"SELECT {plain} AS {col.column}, COUNT(*) AS n FROM {table} AS t GROUP BY 1 "
            f"HAVING MIN({col.column}) < '5' ORDER BY n")
        add("implicit_flow", "ordering",
            f"SELECT {plain} AS {col.column}, COUNT(*) AS n FROM {table} AS t GROUP BY {plain} "
            f"ORDER BY MAX({col.column})")
        add("implicit_flow", "grouping",
            f"SELECT 'a' AS {col.column}, MIN({key}) AS k FROM {table} AS t "
            f"GROUP BY {col.column} ORDER BY k LIMIT 5")
        add("implicit_flow", "window",
            f"SELECT {key}, {plain} AS {col.column}, RANK() OVER w AS r FROM {table} AS t "
            f"WINDOW w AS (ORDER BY {col.column}) ORDER BY {key} LIMIT 5")
        # A range variable wins over a column of the same name in BigQuery: `{plain}` is then
        # the derived table's row (the masked column, raw), not the unclassified column.
        add("encoding", "projection",
            f"SELECT {plain} FROM {table} AS t JOIN (SELECT {key}, {col.column} FROM {table}) "
            f"AS {plain} USING ({key}) ORDER BY t.{key} LIMIT 3")
        add("encoding", "expression",
            f"SELECT TO_JSON_STRING({plain}) AS j FROM {table} AS t, (SELECT {col.column} "
            f"FROM {table}) AS {plain} LIMIT 3")
        # BigQuery lists USING columns first under a bare *, so positions shift: each masked
        # column would be masked as its neighbour (the last one as the unclassified column).
        add("partial_computed", "projection",
            f"SELECT * FROM {table} AS a JOIN {table} AS b USING ({plain}) "
            f"WHERE a.{key} = 1 AND b.{key} = 1")
    return cases


def adversarial_statements(dataset: str = "shop") -> list[str]:
    """The corpus as plain SQL texts (for load tests such as bench/soak.py)."""
    return [case.sql for case in adversarial_cases(dataset)]


def legit_statements(dataset: str = "shop") -> list[str]:
    """What an analyst with the demo role does and must keep being able to do."""
    c, o, e = f"{dataset}.customers", f"{dataset}.orders", f"{dataset}.events"
    return [
        f"SELECT customer_id, full_name, email, phone, ssn, card_number, date_of_birth, "
        f"street_address, ip_address, country FROM {c} ORDER BY customer_id LIMIT 10",
        f"SELECT * FROM {c} WHERE customer_id <= 5 ORDER BY customer_id",
        f"SELECT email AS contact, full_name AS who FROM {c} WHERE country = 'US' "
        f"ORDER BY customer_id LIMIT 5",
        f"WITH recent AS (SELECT customer_id, email FROM {c} WHERE customer_id <= 20) "
        f"SELECT email FROM recent ORDER BY customer_id",
        f"SELECT x.name FROM (SELECT full_name AS name, customer_id FROM {c}) AS x "
        f"ORDER BY x.customer_id LIMIT 5",
        f"SELECT c.customer_id, c.full_name, o.order_id, o.amount FROM {c} AS c "
        f"JOIN {o} AS o ON c.customer_id = o.customer_id WHERE o.status = 'paid' "
        f"ORDER BY o.order_id LIMIT 10",
        f"SELECT c.email, t.total FROM {c} AS c JOIN (SELECT customer_id, SUM(amount) AS total "
        f"FROM {o} GROUP BY customer_id) AS t USING (customer_id) ORDER BY c.customer_id "
        f"LIMIT 5",
        f"SELECT country, COUNT(*) AS n, COUNT(DISTINCT email) AS emails, "
        f"APPROX_COUNT_DISTINCT(ssn) AS ssns FROM {c} GROUP BY country ORDER BY country",
        f"SELECT COUNT(ssn) AS with_ssn, COUNT(DISTINCT full_name) AS names FROM {c}",
        f"SELECT status, COUNT(*) AS n, SUM(amount) AS total FROM {o} GROUP BY status "
        f"ORDER BY status",
        f"SELECT email FROM {c} WHERE email IS NOT NULL AND customer_id <= 3 "
        f"ORDER BY customer_id",
        f"SELECT DISTINCT country FROM {c} ORDER BY country",
        f"SELECT event_type, COUNT(*) AS n FROM {e} GROUP BY event_type ORDER BY event_type",
        f"SELECT payload FROM {e} WHERE event_type IN ('password_reset', 'support_ticket') "
        f"ORDER BY event_id LIMIT 5",
        f"SELECT full_name FROM {c} WHERE customer_id <= 3 UNION ALL "
        f"SELECT full_name FROM {c} WHERE customer_id BETWEEN 4 AND 6",
        f"SELECT customer_id, created_at FROM {c} WHERE created_at > TIMESTAMP '2024-01-01' "
        f"ORDER BY customer_id LIMIT 5",
    ]
