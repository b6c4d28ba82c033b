"""policy.sql_analysis against real sqlglot: resolution, lineage, classes and fail-closed errors."""

from __future__ import annotations

import pickle

import pytest

from bench.sql_cache import bench_sql_cache
from policy.sql_analysis import (
    ColumnRef,
    SqlAnalysis,
    SqlAnalysisError,
    SqlAnalyzer,
    analyze_sql,
    analyze_sql_cached,
)

CUSTOMERS = "demo.shop.customers"
ORDERS = "demo.shop.orders"
EVENTS_WILDCARD = "demo.shop.events_*"

CUSTOMER_COLUMNS = (
    "customer_id",
    "full_name",
    "email",
    "phone",
    "ssn",
    "card_number",
    "date_of_birth",
    "street_address",
    "ip_address",
    "country",
    "created_at",
)
_CUSTOMER_TYPES = {"customer_id": "INT64", "date_of_birth": "DATE", "created_at": "TIMESTAMP"}
_EVENTS = {"customer_id": "INT64", "event_type": "STRING", "payload": "STRING", "ts": "TIMESTAMP"}

SCHEMA: dict[str, dict[str, str]] = {
    CUSTOMERS: {col: _CUSTOMER_TYPES.get(col, "STRING") for col in CUSTOMER_COLUMNS},
    ORDERS: {
        "order_id": "INT64",
        "customer_id": "INT64",
        "amount": "NUMERIC",
        "status": "STRING",
        "ordered_at": "TIMESTAMP",
    },
    "demo.shop.events_2024": dict(_EVENTS),
    "demo.shop.events_2025": dict(_EVENTS),
}


def analyze(sql: str, **kwargs: object) -> SqlAnalysis:
    kwargs.setdefault("default_project", "demo")
    kwargs.setdefault("default_dataset", "shop")
    kwargs.setdefault("schema", SCHEMA)
    return analyze_sql(sql, **kwargs)  # type: ignore[arg-type]


def refs(*names: str) -> frozenset[ColumnRef]:
    """'customers.ssn' -> ColumnRef('demo.shop.customers', 'ssn')."""
    out = set()
    for name in names:
        table, column = name.rsplit(".", 1)
        out.add(ColumnRef(table if table.count(".") >= 2 else f"demo.shop.{table}", column))
    return frozenset(out)


def all_customer_columns() -> frozenset[ColumnRef]:
    return refs(*(f"customers.{c}" for c in CUSTOMER_COLUMNS))


def error_code(sql: str, **kwargs: object) -> str:
    with pytest.raises(SqlAnalysisError) as info:
        analyze(sql, **kwargs)
    assert info.value.detail
    return info.value.code


# ------------------------------------------------------------------------------------------
# SELECT resolution and lineage
# ------------------------------------------------------------------------------------------


def test_simple_select_with_aliases() -> None:
    a = analyze("SELECT c.full_name AS name, c.email, country AS c2 FROM customers AS c")
    assert a.statement_classes == ("select",)
    assert a.tables == {CUSTOMERS}
    assert [o.name for o in a.outputs] == ["name", "email", "c2"]
    assert all(o.direct for o in a.outputs)
    assert a.outputs[0].sources == refs("customers.full_name")
    assert a.outputs[2].sources == refs("customers.country")
    assert a.columns == refs("customers.full_name", "customers.email", "customers.country")


def test_concat_lineage_is_computed_from_both_columns() -> None:
    a = analyze("SELECT CONCAT(full_name, email) AS x FROM customers")
    (out,) = a.outputs
    assert out.name == "x"
    assert out.direct is False
    assert out.sources == refs("customers.full_name", "customers.email")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT TO_JSON_STRING(c) AS j FROM customers AS c",
        "SELECT TO_JSON_STRING(customers) AS j FROM shop.customers",
        "SELECT c AS j FROM customers c",
        "SELECT ARRAY_AGG(c) AS j FROM customers c",
        "SELECT (SELECT TO_JSON_STRING(c)) AS j FROM customers c",
    ],
)
def test_row_reference_reads_every_column(sql: str) -> None:
    a = analyze(sql)
    (out,) = a.outputs
    assert out.direct is False
    assert out.sources == all_customer_columns()
    assert a.columns == all_customer_columns()


def test_row_reference_to_derived_table_reads_its_outputs() -> None:
    a = analyze("SELECT TO_JSON_STRING(t) AS j FROM (SELECT full_name, ssn FROM customers) t")
    assert a.outputs[0].sources == refs("customers.full_name", "customers.ssn")


def test_cte_subquery_and_union_all_resolution() -> None:
    a = analyze(
        """
        WITH base AS (SELECT customer_id AS id, email FROM shop.customers)
        SELECT id,
               (SELECT MAX(amount) FROM shop.orders o WHERE o.customer_id = base.id) AS top
        FROM base
        UNION ALL
        SELECT order_id, amount FROM (SELECT * FROM orders)
        """
    )
    assert a.tables == {CUSTOMERS, ORDERS}  # the CTE name is not a table
    assert [o.name for o in a.outputs] == ["id", "top"]
    id_out, top_out = a.outputs
    assert id_out.sources == refs("customers.customer_id", "orders.order_id")
    assert id_out.direct is True  # both branches are bare columns
    assert top_out.sources == refs("orders.amount")
    assert top_out.direct is False
    # The correlated WHERE columns are read too.
    assert refs("orders.customer_id", "customers.customer_id") <= a.columns


def test_star_order_follows_from_clause() -> None:
    # BigQuery puts JOIN ... USING columns first under a bare *, sqlglot keeps them in place:
    # with `USING (country)` every customer column would shift by one and be masked as its
    # neighbour (ip_address as country: raw). Refused; alias.* keeps each table's own order.
    for sql in ("SELECT * FROM customers AS a JOIN customers AS b USING (country)",
                "SELECT * FROM orders JOIN customers USING (customer_id)",
                "SELECT * EXCEPT (ssn) FROM customers AS a JOIN customers AS b USING (country)"):
        with pytest.raises(SqlAnalysisError) as err:
            analyze(sql)
        assert err.value.code == "sql.unsupported"
    a = analyze("SELECT c.*, o.amount FROM customers AS c JOIN orders AS o USING (customer_id)")
    assert [o.name for o in a.outputs] == [*CUSTOMER_COLUMNS, "amount"]
    b = analyze(
        "SELECT x.*, o.amount FROM (SELECT full_name, ssn FROM customers) AS x "
        "JOIN orders o ON TRUE"
    )
    assert [o.name for o in b.outputs] == ["full_name", "ssn", "amount"]
    c = analyze("SELECT (SELECT AS STRUCT full_name, email) AS s FROM customers")
    assert c.outputs[0].sources == refs("customers.full_name", "customers.email")


def test_union_by_name_merges_per_name() -> None:
    a = analyze(
        "SELECT customer_id, email FROM customers "
        "UNION ALL BY NAME SELECT email, customer_id FROM customers"
    )
    by_name = {o.name: o.sources for o in a.outputs}
    assert by_name == {
        "customer_id": refs("customers.customer_id"),
        "email": refs("customers.email"),
    }


def test_join_on_where_group_order_window_columns_are_read() -> None:
    a = analyze(
        """
        SELECT c.country, SUM(o.amount) OVER (PARTITION BY c.country ORDER BY o.ordered_at) AS s
        FROM customers c JOIN orders o ON c.customer_id = o.customer_id
        WHERE o.status = 'paid' AND c.ssn IS NOT NULL
        ORDER BY c.created_at
        """
    )
    assert a.columns == refs(
        "customers.country",
        "customers.customer_id",
        "customers.ssn",
        "customers.created_at",
        "orders.amount",
        "orders.ordered_at",
        "orders.customer_id",
        "orders.status",
    )
    assert a.outputs[1].sources == refs("customers.country", "orders.amount", "orders.ordered_at")


def test_join_using_is_resolved_to_both_tables() -> None:
    a = analyze("SELECT customer_id FROM customers JOIN orders USING (customer_id)")
    assert a.outputs[0].sources == refs("customers.customer_id", "orders.customer_id")


def test_select_star_expands_from_schema_in_order() -> None:
    a = analyze("SELECT * FROM customers")
    assert tuple(o.name for o in a.outputs) == CUSTOMER_COLUMNS
    assert all(o.direct for o in a.outputs)
    assert a.columns == all_customer_columns()


def test_star_except_and_qualified_star() -> None:
    a = analyze(
        "SELECT c.* EXCEPT (ssn), o.amount FROM customers c JOIN orders o USING (customer_id)"
    )
    names = [o.name for o in a.outputs]
    assert "ssn" not in names
    assert names[-1] == "amount"
    assert ColumnRef(CUSTOMERS, "ssn") not in a.columns


def test_unnest_alias_is_not_a_table_and_has_lineage() -> None:
    a = analyze(
        "SELECT part, pos FROM customers c, UNNEST(SPLIT(c.email, '@')) AS part WITH OFFSET AS pos"
    )
    assert a.tables == {CUSTOMERS}
    part, pos = a.outputs
    assert part.sources == refs("customers.email")
    assert part.direct is False
    assert pos.sources == frozenset()


def test_correlated_unnest_in_exists_is_read() -> None:
    a = analyze(
        "SELECT full_name FROM customers c "
        "WHERE EXISTS (SELECT 1 FROM UNNEST([c.ssn]) s WHERE s = 'x')"
    )
    assert a.outputs[0].sources == refs("customers.full_name")
    assert ColumnRef(CUSTOMERS, "ssn") in a.columns


def test_wildcard_table_resolves_against_matching_tables() -> None:
    a = analyze(
        "SELECT customer_id, event_type, _TABLE_SUFFIX AS sfx "
        "FROM `demo.shop.events_*` WHERE _TABLE_SUFFIX > '2024'"
    )
    assert a.tables == {EVENTS_WILDCARD}
    assert a.outputs[0].sources == {ColumnRef(EVENTS_WILDCARD, "customer_id")}
    assert a.outputs[2].sources == {ColumnRef(EVENTS_WILDCARD, "_table_suffix")}
    star = analyze("SELECT * FROM demo.shop.events_*")
    assert [o.name for o in star.outputs] == ["customer_id", "event_type", "payload", "ts"]


def test_wildcard_table_matching_nothing_is_an_error() -> None:
    assert error_code("SELECT * FROM `demo.shop.nothing_*`") == "sql.unknown_table"


def test_information_schema_normalisation() -> None:
    a = analyze("SELECT table_name FROM shop.INFORMATION_SCHEMA.TABLES")
    assert a.tables == {"demo.shop.information_schema.tables"}
    assert a.columns == {ColumnRef("demo.shop.information_schema.tables", "table_name")}
    b = analyze("SELECT job_id FROM `region-us`.INFORMATION_SCHEMA.JOBS")
    assert b.tables == {"demo.region-us.information_schema.jobs"}
    c = analyze("SELECT job_id FROM `other-proj.region-eu.INFORMATION_SCHEMA.JOBS_BY_PROJECT`")
    assert c.tables == {"other-proj.region-eu.information_schema.jobs_by_project"}
    d = analyze("SELECT schema_name FROM INFORMATION_SCHEMA.SCHEMATA")  # default dataset
    assert d.tables == {"demo.shop.information_schema.schemata"}


def test_information_schema_star_needs_a_schema_entry() -> None:
    sql = "SELECT * FROM shop.INFORMATION_SCHEMA.TABLES"
    assert error_code(sql) == "sql.unresolved_star"
    schema = {**SCHEMA, "information_schema.tables": {"table_name": "STRING", "ddl": "STRING"}}
    a = analyze(sql, schema=schema)
    assert [o.name for o in a.outputs] == ["table_name", "ddl"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT full_name FROM `demo.shop.customers`",
        "SELECT full_name FROM `demo`.`shop`.`customers`",
        "SELECT full_name FROM `demo.shop`.customers",
        "SELECT full_name FROM demo.shop.customers",
        "SELECT full_name FROM shop.customers",
        "SELECT full_name FROM customers",
        "SELECT FULL_NAME FROM Shop.CUSTOMERS",
        "select Full_Name from `DEMO.SHOP.CUSTOMERS`",
    ],
)
def test_table_name_forms_and_case_normalise(sql: str) -> None:
    a = analyze(sql)
    assert a.tables == {CUSTOMERS}
    assert a.columns == refs("customers.full_name")
    assert a.outputs[0].name == "full_name"


def test_dots_inside_backticks_are_path_separators() -> None:
    # Like BigQuery, `shop`.`a.b` is the path shop.a.b (project shop, dataset a, table b).
    a = analyze("SELECT x FROM `shop`.`a.b`", schema=None)
    assert a.tables == {"shop.a.b"}
    assert error_code("SELECT x FROM `shop`.`a.b`") == "sql.unknown_table"


def test_bare_table_without_default_dataset_is_an_error() -> None:
    code = error_code("SELECT full_name FROM customers", default_dataset=None)
    assert code == "sql.unqualified_table"


def test_for_system_time_as_of() -> None:
    a = analyze(
        "SELECT full_name FROM customers FOR SYSTEM_TIME AS OF "
        "TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR)"
    )
    assert a.tables == {CUSTOMERS}
    assert a.outputs[0].sources == refs("customers.full_name")


def test_nested_cte_does_not_hide_a_real_table() -> None:
    a = analyze(
        "SELECT orders.amount, sub.x FROM orders, "
        "(WITH orders AS (SELECT 1 AS x) SELECT * FROM orders) AS sub"
    )
    assert a.tables == {ORDERS}
    assert a.outputs[0].sources == refs("orders.amount")
    assert a.outputs[1].sources == frozenset()


def test_cte_named_like_a_table_is_not_a_table() -> None:
    a = analyze("WITH customers AS (SELECT 1 AS x) SELECT x FROM customers")
    assert a.tables == frozenset()


def test_alias_references_and_pipe_syntax() -> None:
    a = analyze("SELECT full_name AS n FROM customers ORDER BY n")
    assert a.columns == refs("customers.full_name")
    b = analyze("FROM customers |> WHERE country = 'x' |> SELECT full_name, email")
    assert b.columns == refs("customers.country", "customers.full_name", "customers.email")
    assert [o.name for o in b.outputs] == ["full_name", "email"]


def test_schemaless_analysis_resolves_single_source_columns() -> None:
    a = analyze("SELECT a, t.b FROM shop.t", schema=None)
    assert a.columns == {ColumnRef("demo.shop.t", "a"), ColumnRef("demo.shop.t", "b")}


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT * FROM shop.t", "sql.unresolved_star"),
        ("SELECT a FROM shop.t x JOIN shop.u y ON x.id = y.id", "sql.unresolved_column"),
        # Without a schema "x" could be the whole row: refuse to guess.
        ("SELECT TO_JSON_STRING(x) FROM shop.t x", "sql.ambiguous_name"),
    ],
)
def test_schemaless_ambiguity_fails_closed(sql: str, code: str) -> None:
    assert error_code(sql, schema=None) == code


@pytest.mark.parametrize("sql", [
    # In BigQuery a range variable wins over a column of the same name: `status` below is the
    # whole customers row (every PII column, unmasked), sqlglot reads it as orders.status.
    "SELECT status FROM orders AS o JOIN customers AS status ON o.customer_id = status.customer_id",
    "SELECT country FROM customers AS country",
    "SELECT amount FROM orders, customers AS amount",
    "SELECT TO_JSON_STRING(status) AS j FROM orders AS o JOIN customers AS status ON TRUE",
    "SELECT customer_id FROM orders AS o, (SELECT ssn FROM customers) AS customer_id",
    "SELECT o.order_id FROM orders AS o, customers AS status WHERE status = 'paid'",
    # Correlated: the outer range variable, not the outer column.
    "SELECT (SELECT country FROM orders LIMIT 1) AS x FROM customers AS country",
])
def test_a_name_that_is_a_column_and_a_range_variable_is_refused(sql: str) -> None:
    assert error_code(sql) == "sql.ambiguous_name"


def test_qualified_columns_next_to_a_same_named_alias_stay_allowed() -> None:
    a = analyze("SELECT o.status, status.email FROM orders AS o JOIN customers AS status "
                "ON o.customer_id = status.customer_id")
    assert [o.sources for o in a.outputs] == [refs("orders.status"), refs("customers.email")]
    b = analyze("SELECT TO_JSON_STRING(c) AS j FROM customers AS c")  # a row, unambiguous
    assert b.outputs[0].sources == all_customer_columns()


# ------------------------------------------------------------------------------------------
# Fail-closed errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT FROM WHERE", "sql.parse_error"),
        ("SELECT (1", "sql.parse_error"),
        ("SELECT full_name FROM nosuch", "sql.unknown_table"),
        ("SELECT nope FROM customers", "sql.unresolved_column"),
        ("SELECT c.nope FROM customers c", "sql.unresolved_column"),
        ("SELECT t.full_name FROM customers", "sql.unresolved_column"),
        ("SELECT customer_id FROM customers JOIN orders ON TRUE", "sql.unresolved_column"),
        ("SELECT * FROM EXTERNAL_QUERY('conn', 'SELECT 1')", "sql.table_function"),
        ("SELECT * FROM ML.PREDICT(MODEL shop.m, TABLE shop.customers)", "sql.table_function"),
        ("SELECT * FROM shop.my_tvf(1)", "sql.table_function"),
        ("SELECT demo.shop.my_udf(email) FROM customers", "sql.function_not_allowed"),
        ("SELECT `demo.shop.my_udf`(email) FROM customers", "sql.function_not_allowed"),
        ("SELECT AI.GENERATE('x') AS k", "sql.function_not_allowed"),
        (
            "SELECT * FROM customers PIVOT(COUNT(customer_id) FOR country IN ('us'))",
            "sql.unsupported",
        ),
        ("SELECT a FROM p.d.t.x", "sql.invalid_table_name"),
        # Result-column order must match BigQuery's (masking is positional): refuse shapes
        # where sqlglot's star expansion is known to differ.
        (
            "SELECT * FROM (SELECT * FROM customers) AS x JOIN orders USING (customer_id)",
            "sql.unsupported",
        ),
        ("SELECT * FROM customers c, UNNEST(SPLIT(c.email)) AS part", "sql.unsupported"),
        ("SELECT s.* FROM UNNEST([STRUCT(1 AS a, 'x' AS b)]) AS s", "sql.unsupported"),
        ("SELECT AS STRUCT full_name, email FROM customers", "sql.unsupported"),
        ("SELECT 1 AS x UNION ALL SELECT AS VALUE 2", "sql.unsupported"),
        ("SELECT * FROM `demo.shop.ev*ents`", "sql.invalid_table_name"),
    ],
)
def test_errors(sql: str, code: str) -> None:
    assert error_code(sql) == code


@pytest.mark.parametrize("sql", ["", "   \n\t", ";", "-- only a comment", "/* nothing */ ;;"])
def test_empty(sql: str) -> None:
    assert error_code(sql) == "sql.empty"


def test_builtin_namespaced_functions_are_allowed() -> None:
    a = analyze(
        "SELECT SAFE.PARSE_DATE('%Y', email) AS d, NET.HOST(email) AS h, "
        "HLL_COUNT.EXTRACT(customer_id) AS n FROM customers"
    )
    assert a.columns == refs("customers.email", "customers.customer_id")


def test_error_carries_code_and_detail_and_pickles() -> None:
    err = SqlAnalysisError("sql.parse_error", "bad")
    assert str(err) == "sql.parse_error: bad"
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.code, clone.detail) == ("sql.parse_error", "bad")


# ------------------------------------------------------------------------------------------
# Statement classes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "classes"),
    [
        ("DELETE FROM customers WHERE TRUE", ("delete",)),
        ("UPDATE orders SET amount = 0 WHERE TRUE", ("update",)),
        ("INSERT INTO shop.orders (order_id) SELECT customer_id FROM customers", ("insert",)),
        (
            "MERGE shop.orders t USING shop.customers s ON t.customer_id = s.customer_id "
            "WHEN MATCHED THEN DELETE",
            ("merge",),
        ),
        ("CREATE TABLE shop.copy AS SELECT * FROM customers", ("ddl",)),
        ("CREATE OR REPLACE VIEW shop.v AS SELECT 1 AS x", ("ddl",)),
        ("DROP TABLE shop.orders", ("ddl",)),
        ("ALTER TABLE shop.orders ADD COLUMN note STRING", ("ddl",)),
        ("TRUNCATE TABLE shop.orders", ("truncate",)),
        ("CREATE TEMP FUNCTION f(x INT64) AS (x + 1)", ("temp_function",)),
        (
            "CREATE TEMPORARY FUNCTION f(x INT64) RETURNS INT64 LANGUAGE js AS 'return x'",
            ("temp_function",),
        ),
        ("CREATE FUNCTION shop.f(x INT64) AS (x)", ("ddl",)),
        (
            "EXPORT DATA OPTIONS (uri='gs://b/*.csv', format='CSV') AS SELECT * FROM customers",
            ("export_data",),
        ),
        ("CALL shop.proc(1)", ("call",)),
        ("EXECUTE IMMEDIATE 'DELETE FROM shop.customers WHERE TRUE'", ("execute_immediate",)),
        ("DECLARE x INT64 DEFAULT 1", ("script",)),
        ("SET x = 2", ("script",)),
        ("BEGIN SELECT 1; END", ("script", "script")),
        ("BEGIN TRANSACTION", ("script",)),
        ("IF TRUE THEN SELECT 1; END IF", ("script", "script")),
        ("LOOP SELECT 1; END LOOP", ("script", "script")),
        ("LOAD DATA INTO shop.t FROM FILES (format='CSV', uris=['gs://b/x.csv'])", ("load_data",)),
        ("GRANT `roles/bigquery.dataViewer` ON TABLE shop.t TO 'user:a@b.c'", ("other",)),
        ("SELECT full_name INTO shop.x FROM customers", ("other",)),
    ],
)
def test_statement_classes(sql: str, classes: tuple[str, ...]) -> None:
    # Non-SELECT statements never raise for being non-SELECT: the policy denies them by class.
    a = analyze(sql)
    assert a.statement_classes == classes


def test_non_select_tables_are_collected_best_effort() -> None:
    assert analyze("DELETE FROM customers WHERE TRUE").tables == {CUSTOMERS}
    merge = analyze(
        "MERGE shop.orders t USING shop.customers s ON t.customer_id = s.customer_id "
        "WHEN MATCHED THEN DELETE"
    )
    assert merge.tables == {CUSTOMERS, ORDERS}
    export = analyze("EXPORT DATA OPTIONS (uri='gs://b/*', format='CSV') AS SELECT * FROM orders")
    assert export.tables == {ORDERS}


def test_temp_function_body_tables_are_reported() -> None:
    a = analyze("CREATE TEMP FUNCTION f() AS ((SELECT MAX(ssn) FROM customers)); SELECT f() AS x")
    assert a.statement_classes == ("temp_function", "select")
    assert CUSTOMERS in a.tables


def test_multi_statement_yields_every_class() -> None:
    a = analyze("SELECT 1; DELETE FROM customers WHERE TRUE")
    assert a.statement_classes == ("select", "delete")
    assert a.tables == {CUSTOMERS}
    assert a.outputs == ()  # the last statement is not a query


# ------------------------------------------------------------------------------------------
# Comment tricks and odd characters
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "classes"),
    [
        ("SELECT 1 /* ; DELETE FROM customers WHERE TRUE */", ("select",)),
        ("SELECT 1 -- ; DELETE FROM customers\n", ("select",)),
        ("SELECT 1 # ; DELETE FROM customers\n", ("select",)),
        ("SELECT 1 -- harmless\n; DELETE FROM customers WHERE TRUE", ("select", "delete")),
        ("SELECT 1 # harmless\n; DROP TABLE shop.orders", ("select", "ddl")),
        ("SELECT 1 /* a */; /* b */ DELETE FROM customers WHERE TRUE", ("select", "delete")),
        # No ';': DELETE is not reserved in BigQuery, so it is an implicit alias of 1.
        ("SELECT 1 -- x\r\nDELETE FROM customers WHERE TRUE", ("select",)),
        ("SELECT 1 -- x\r\n; DELETE FROM customers WHERE TRUE", ("select", "delete")),
        ("SELECT 1 -- x\r; DELETE FROM customers WHERE TRUE", ("select", "delete")),
        ("SELECT 1 /* unterminated ; DELETE FROM customers WHERE TRUE", None),
        ("SELECT '; DELETE FROM customers; --' AS s", ("select",)),
        ("SELECT 'a\\'; DELETE FROM customers; --' AS s", ("select",)),
        ('SELECT """x;""" AS s; DELETE FROM customers WHERE TRUE', ("select", "delete")),
    ],
)
def test_comment_tricks(sql: str, classes: tuple[str, ...] | None) -> None:
    if classes is None:
        assert error_code(sql) == "sql.parse_error"
    else:
        assert analyze(sql).statement_classes == classes


@pytest.mark.parametrize(
    "sql",
    [
        # BigQuery reads `x\`, 'y` as ONE identifier (\` escapes the backtick), so it would run
        # the DELETE; sqlglot ends the identifier at the backslash and sees a string instead.
        "SELECT 1 AS `x\\`, 'y` ; DELETE FROM customers WHERE TRUE; -- '",
        "SELECT 1 AS `x\\`, 'y`, ssn, ' AS z FROM customers",
    ],
)
def test_lexer_disagreements_are_rejected(sql: str) -> None:
    assert error_code(sql) in {"sql.ambiguous_syntax", "sql.parse_error"}


def test_quoted_literals_that_both_lexers_agree_on() -> None:
    a = analyze(
        "SELECT r'a\\d+' AS re, b'bytes' AS b, '''multi\nline ' quote''' AS t, "
        '"""dq "x" """ AS d, \'it\\\'s\' AS e, "x\\"y" AS f, '
        "'/* not a comment */' AS g, \"-- nor this\" AS h, '#' AS i, `full_name` "
        "FROM `demo`.shop.`customers`"
    )
    assert a.statement_classes == ("select",)
    assert [o.name for o in a.outputs][-1] == "full_name"


def test_opaque_commands_keep_their_class() -> None:
    # sqlglot cannot parse CALL; its text is opaque but the statement is still classified.
    a = analyze("SELECT 1; CALL shop.proc(';'); SELECT 2")
    assert a.statement_classes == ("select", "call", "select")


def test_nested_comment_terminator_is_not_trusted() -> None:
    # BigQuery does not nest block comments; neither do we, so the tail is a syntax error.
    assert error_code("SELECT 1 /* /* */ ; DELETE FROM customers */") == "sql.parse_error"


def test_comments_are_stripped_from_normalized_sql() -> None:
    a = analyze("SELECT /* secret */ full_name -- trailing\nFROM customers # hash\n")
    assert "secret" not in a.normalized_sql
    assert "trailing" not in a.normalized_sql
    assert "hash" not in a.normalized_sql
    assert a.normalized_sql == "SELECT full_name FROM customers"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1\x00; DELETE FROM customers",
        "SELECT\x0b1",
        "SELECT 1 -- c\u2028DELETE FROM customers WHERE TRUE",  # line separator ends comments?
        "SELECT\u200b1",  # zero-width space
        "SELECT 1 \u202e",  # bidi override
        "SELECT\u00a01",  # no-break space
        "SELECT 1 \ufeff",  # BOM not at the start
    ],
)
def test_invalid_characters_are_rejected(sql: str) -> None:
    assert error_code(sql) == "sql.invalid_character"


def test_nul_is_rejected_with_a_clear_message() -> None:
    with pytest.raises(SqlAnalysisError, match="NUL"):
        analyze("SELECT 1\x00")


def test_leading_bom_is_stripped() -> None:
    plain = analyze("SELECT full_name FROM customers")
    bom = analyze("\ufeffSELECT full_name FROM customers")
    assert bom == plain


def test_full_width_semicolon_is_not_a_separator() -> None:
    assert error_code("SELECT 1\uff1b DELETE FROM customers WHERE TRUE") == "sql.parse_error"


def test_non_ascii_inside_string_literals_is_fine() -> None:
    a = analyze("SELECT full_name FROM customers WHERE country = 'Österreich 日本'")
    assert a.tables == {CUSTOMERS}


# ------------------------------------------------------------------------------------------
# Fingerprint and normalisation
# ------------------------------------------------------------------------------------------


def test_fingerprint_ignores_literals_comments_and_whitespace() -> None:
    a = analyze("SELECT full_name FROM customers WHERE country = 'us' AND customer_id > 10 LIMIT 5")
    b = analyze(
        "select full_name   from customers /* c */ where country = 'de'\n"
        "  and customer_id > 99 limit 500"
    )
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 64
    assert a.normalized_sql != b.normalized_sql


def test_fingerprint_differs_for_different_shapes() -> None:
    a = analyze("SELECT full_name FROM customers WHERE country = 'us'")
    b = analyze("SELECT email FROM customers WHERE country = 'us'")
    c = analyze("SELECT full_name FROM customers WHERE country = @country")
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3


def test_multi_statement_normalized_sql() -> None:
    a = analyze("SELECT 1 ;\n\n DELETE FROM customers WHERE true")
    assert a.normalized_sql == "SELECT 1; DELETE FROM customers WHERE TRUE"


# ------------------------------------------------------------------------------------------
# Caching
# ------------------------------------------------------------------------------------------


def test_cached_analysis_returns_the_same_object() -> None:
    sql = "SELECT full_name FROM customers WHERE customer_id = 42424242"
    kwargs = {"default_project": "demo", "default_dataset": "shop", "schema": SCHEMA}
    first = analyze_sql_cached(sql, schema_version=7, **kwargs)  # type: ignore[arg-type]
    again = analyze_sql_cached(sql, schema_version=7, **kwargs)  # type: ignore[arg-type]
    assert again is first
    other = analyze_sql_cached(sql, schema_version=8, **kwargs)  # type: ignore[arg-type]
    assert other is not first and other == first


def test_analyzer_caches_errors_and_is_bounded() -> None:
    analyzer = SqlAnalyzer(maxsize=2)
    for _ in range(2):
        with pytest.raises(SqlAnalysisError) as info:
            analyzer.analyze("SELECT FROM", default_project="demo", schema=SCHEMA)
        assert info.value.code == "sql.parse_error"
    assert analyzer.misses == 1 and analyzer.hits == 1
    for i in range(5):
        analyzer.analyze(f"SELECT {i}", default_project="demo")
    assert len(analyzer) == 2
    analyzer.clear()
    assert len(analyzer) == 0


def test_analyzer_bounds_the_characters_it_holds() -> None:
    analyzer = SqlAnalyzer(maxsize=100, max_chars=200)
    long_sql = "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(40))  # > 200 chars
    analyzer.analyze(long_sql, default_project="demo")
    assert len(analyzer) == 0  # too big to keep
    for i in range(10):
        analyzer.analyze(f"SELECT {i} AS some_longer_alias_name", default_project="demo")
    assert 0 < len(analyzer) < 10


def test_schema_version_change_sees_the_new_schema() -> None:
    analyzer = SqlAnalyzer()
    sql = "SELECT note FROM shop.extra"
    with pytest.raises(SqlAnalysisError):
        analyzer.analyze(sql, default_project="demo", schema=SCHEMA, schema_version=1)
    grown = {**SCHEMA, "demo.shop.extra": {"note": "STRING"}}
    a = analyzer.analyze(sql, default_project="demo", schema=grown, schema_version=2)
    assert a.columns == {ColumnRef("demo.shop.extra", "note")}


def test_bench_helper_runs() -> None:
    figures = bench_sql_cache(iterations=3)
    assert set(figures) == {"first_analysis_us", "cached_lookup_us"}
    assert figures["first_analysis_us"] > figures["cached_lookup_us"] > 0


def test_default_project_is_required() -> None:
    with pytest.raises(SqlAnalysisError) as info:
        analyze_sql("SELECT 1", default_project="")
    assert info.value.code == "sql.config"
