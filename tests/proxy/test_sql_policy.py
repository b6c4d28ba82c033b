"""policy.sql_policy: every violation is reported, deny by default, config validation."""

from __future__ import annotations

from typing import Any

import pytest

from policy.sql_analysis import ColumnRef, SqlAnalysis, SqlAnalysisError, analyze_sql
from policy.sql_policy import Reason, SqlRules, check_bytes, check_sql, reason_for_error
from tests.proxy.test_sql_analysis import SCHEMA

BASE_CONFIG: dict[str, Any] = {
    "allowed_tables": ["demo.shop.*"],
    "denied_columns": ["demo.shop.customers.ssn", "*.*.customers.card_*"],
    "max_bytes_scanned": 10_000,
}


def analyze(sql: str) -> SqlAnalysis:
    return analyze_sql(sql, default_project="demo", default_dataset="shop", schema=SCHEMA)


def rules(**overrides: Any) -> SqlRules:
    return SqlRules.from_config({**BASE_CONFIG, **overrides})


def check(sql: str, **overrides: Any) -> tuple[Reason, ...]:
    return check_sql(analyze(sql), rules(**overrides))


def rule_ids(reasons: tuple[Reason, ...]) -> list[str]:
    return [r.rule for r in reasons]


def denied_columns(reasons: tuple[Reason, ...]) -> set[tuple[str | None, str | None]]:
    return {(r.table, r.column) for r in reasons if r.rule == "sql.column_denied"}


# ------------------------------------------------------------------------------------------
# Statement classes
# ------------------------------------------------------------------------------------------


def test_allowed_select_has_no_reasons() -> None:
    assert (
        check("SELECT c.full_name, o.amount FROM customers c JOIN orders o USING (customer_id)")
        == ()
    )


@pytest.mark.parametrize(
    ("sql", "cls"),
    [
        ("DELETE FROM customers WHERE TRUE", "delete"),
        ("UPDATE orders SET amount = 0 WHERE TRUE", "update"),
        ("INSERT INTO shop.orders (order_id) VALUES (1)", "insert"),
        (
            "MERGE shop.orders t USING shop.customers s ON t.customer_id = s.customer_id "
            "WHEN MATCHED THEN DELETE",
            "merge",
        ),
        ("CREATE TABLE shop.copy (x INT64)", "ddl"),
        ("DROP TABLE shop.orders", "ddl"),
        ("TRUNCATE TABLE shop.orders", "truncate"),
        ("CREATE TEMP FUNCTION f(x INT64) AS (x + 1)", "temp_function"),
        ("EXPORT DATA OPTIONS (uri='gs://b/*.csv', format='CSV') AS SELECT 1 AS x", "export_data"),
        ("CALL shop.proc(1)", "call"),
        ("EXECUTE IMMEDIATE 'SELECT 1'", "execute_immediate"),
        ("DECLARE x INT64 DEFAULT 1", "script"),
        ("LOAD DATA INTO shop.t FROM FILES (format='CSV', uris=['gs://b/x.csv'])", "load_data"),
    ],
)
def test_denied_statement_classes(sql: str, cls: str) -> None:
    reasons = check(sql)
    assert reasons[0].rule == "sql.statement_class"
    assert cls in reasons[0].message
    assert "sql.statement_class" in rule_ids(reasons)


def test_begin_end_script_is_denied_as_script_and_multiple_statements() -> None:
    reasons = check("BEGIN SELECT 1; END")
    assert rule_ids(reasons) == ["sql.statement_class", "sql.multiple_statements"]


def test_multi_statement_reports_every_violation() -> None:
    reasons = check("SELECT ssn FROM customers; DELETE FROM shop.secret WHERE TRUE")
    assert rule_ids(reasons) == [
        "sql.statement_class",
        "sql.multiple_statements",
        "sql.column_denied",
    ]
    # shop.secret matches demo.shop.* so it is not a table violation; the class is.
    assert denied_columns(reasons) == {("demo.shop.customers", "ssn")}


def test_multiple_selects_allowed_when_configured() -> None:
    assert check("SELECT 1; SELECT full_name FROM customers", allow_multiple_statements=True) == ()
    assert rule_ids(check("SELECT 1; SELECT 2")) == ["sql.multiple_statements"]


def test_extra_classes_can_be_allowed() -> None:
    sql = "DELETE FROM customers WHERE TRUE"
    assert check(sql, allowed_statement_classes=["select", "delete"]) == ()


def test_comment_hidden_statement_is_denied() -> None:
    reasons = check("SELECT 1 -- innocent\n; DROP TABLE shop.orders")
    assert rule_ids(reasons) == ["sql.statement_class", "sql.multiple_statements"]


# ------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------


def test_forbidden_table_is_reported_with_its_name() -> None:
    reasons = check(
        "SELECT c.full_name, o.amount FROM customers c JOIN orders o USING (customer_id)",
        allowed_tables=["demo.shop.orders"],
    )
    assert reasons == (
        Reason(
            "sql.table_not_allowed",
            "table demo.shop.customers is not allowed",
            table="demo.shop.customers",
        ),
    )


def test_no_allowed_tables_means_no_table() -> None:
    empty = SqlRules.from_config({})
    assert rule_ids(check_sql(analyze("SELECT full_name FROM customers"), empty)) == [
        "sql.table_not_allowed"
    ]
    assert check_sql(analyze("SELECT 1 AS x"), empty) == ()


@pytest.mark.parametrize(
    ("pattern", "allowed"),
    [
        ("demo.shop.customers", True),
        ("*.shop.customers", True),
        ("demo.*", True),
        ("DEMO.Shop.*", True),  # patterns are lowercased
        ("demo.sh?p.customers", True),
        ("demo.shop.orders", False),
        ("other.shop.*", False),
    ],
)
def test_table_patterns(pattern: str, allowed: bool) -> None:
    reasons = check("SELECT full_name FROM customers", allowed_tables=[pattern])
    assert (reasons == ()) is allowed


@pytest.mark.parametrize(
    ("patterns", "allowed"),
    [
        (["demo.shop.*"], False),
        (["*"], False),
        (["demo.*"], False),
        (["demo.shop.information_schema.*"], True),
        (["demo.shop.information_schema.tables"], True),
        (["*.information_schema.*"], True),
        (["demo.shop.information_schema.columns"], False),
    ],
)
def test_information_schema_needs_an_explicit_pattern(patterns: list[str], allowed: bool) -> None:
    reasons = check(
        "SELECT table_name FROM shop.INFORMATION_SCHEMA.TABLES", allowed_tables=patterns
    )
    assert (reasons == ()) is allowed


def test_region_information_schema() -> None:
    sql = "SELECT job_id, query FROM `region-us`.INFORMATION_SCHEMA.JOBS"
    assert rule_ids(check(sql)) == ["sql.table_not_allowed"]
    assert check(sql, allowed_tables=["demo.region-us.information_schema.jobs"]) == ()


@pytest.mark.parametrize(
    ("pattern", "allowed"),
    [
        ("demo.shop.events_*", True),
        ("demo.shop.*", True),
        ("demo.*", True),
        ("demo.shop.events_2024", False),
        ("demo.shop.events_2*", False),
        ("demo.shop.events_?", False),
        ("demo.shop.events_?*", False),
        ("demo.shop.orders", False),
    ],
)
def test_wildcard_table_needs_a_covering_pattern(pattern: str, allowed: bool) -> None:
    reasons = check("SELECT customer_id FROM `demo.shop.events_*`", allowed_tables=[pattern])
    assert (reasons == ()) is allowed


# ------------------------------------------------------------------------------------------
# Denied columns
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT ssn FROM customers",
        "SELECT c.ssn AS not_a_secret FROM customers c",
        "SELECT full_name FROM customers WHERE ssn = '123'",  # filtering on it leaks it
        "SELECT COUNT(*) AS n FROM customers GROUP BY ssn",
        "WITH x AS (SELECT ssn AS s FROM customers) SELECT LENGTH(s) AS l FROM x",
        "SELECT UPPER(s) AS u FROM (SELECT ssn AS s FROM customers)",
        "SELECT full_name FROM customers UNION ALL SELECT ssn FROM customers",
        "SELECT (SELECT MAX(ssn) FROM customers) AS m",
        "SELECT part FROM customers c, UNNEST(SPLIT(c.ssn, '-')) AS part",
        # An alias named like the column: BigQuery reads the column inside the aggregate.
        "SELECT country AS ssn, COUNT(*) AS n FROM customers GROUP BY country "
        "HAVING MAX(ssn) > '5'",
    ],
)
def test_denied_column_anywhere(sql: str) -> None:
    assert denied_columns(check(sql)) == {("demo.shop.customers", "ssn")}


def test_denied_columns_via_star_all_reported() -> None:
    reasons = check("SELECT * FROM customers")
    assert denied_columns(reasons) == {
        ("demo.shop.customers", "ssn"),
        ("demo.shop.customers", "card_number"),
    }
    assert all(r.rule == "sql.column_denied" for r in reasons)


def test_star_except_avoids_the_denied_columns() -> None:
    assert check("SELECT * EXCEPT (ssn, card_number) FROM customers") == ()


def test_denied_columns_via_to_json_string() -> None:
    reasons = check("SELECT TO_JSON_STRING(c) AS row_json FROM customers c")
    assert denied_columns(reasons) == {
        ("demo.shop.customers", "ssn"),
        ("demo.shop.customers", "card_number"),
    }


def test_denied_column_and_forbidden_table_together() -> None:
    reasons = check(
        "SELECT c.ssn, o.amount FROM customers c JOIN orders o USING (customer_id)",
        allowed_tables=["demo.shop.customers"],
    )
    assert rule_ids(reasons) == ["sql.table_not_allowed", "sql.column_denied"]


def test_denied_column_on_a_shard_denies_it_through_the_wildcard() -> None:
    sql = "SELECT payload FROM `demo.shop.events_*`"
    assert check(sql) == ()
    reasons = check(sql, denied_columns=["demo.shop.events_2024.payload"])
    assert denied_columns(reasons) == {("demo.shop.events_*", "payload")}
    assert check(sql, denied_columns=["demo.shop.orders.payload"]) == ()
    assert check(sql, denied_columns=["demo.shop.events_2024.ts"]) == ()
    assert denied_columns(check(sql, denied_columns=["*.*.events_*.payload"])) == {
        ("demo.shop.events_*", "payload")
    }


def test_rules_helpers() -> None:
    r = rules()
    assert r.column_denied(ColumnRef("demo.shop.customers", "card_number"))
    assert r.column_denied(ColumnRef("other.crm.customers", "card_cvv"))
    assert not r.column_denied(ColumnRef("demo.shop.customers", "email"))
    assert r.table_allowed("demo.shop.anything")
    assert not r.table_allowed("demo.shop.information_schema.tables")


# ------------------------------------------------------------------------------------------
# Bytes cap and error mapping
# ------------------------------------------------------------------------------------------


def test_bytes_cap() -> None:
    r = rules()
    assert check_bytes(10_000, r) == ()
    (reason,) = check_bytes(10_001, r)
    assert reason.rule == "sql.bytes_cap"
    assert "10001" in reason.message
    assert check_bytes(10**15, SqlRules()) == ()  # no cap configured


@pytest.mark.parametrize("value", [-1, True, "100", 1.5, None])
def test_bytes_cap_rejects_unreadable_estimates(value: Any) -> None:
    assert rule_ids(check_bytes(value, rules())) == ["sql.bytes_cap"]


def test_reason_for_error_and_as_dict() -> None:
    with pytest.raises(SqlAnalysisError) as info:
        analyze("SELECT FROM WHERE")
    reason = reason_for_error(info.value)
    assert reason.rule == "sql.parse_error"
    assert reason.message == info.value.detail
    assert reason.as_dict() == {
        "rule": "sql.parse_error",
        "message": info.value.detail,
        "table": None,
        "column": None,
    }
    assert reason_for_error(SqlAnalysisError("sql.unknown_table", "x")).rule == "sql.unknown_table"


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------


def test_defaults_deny_by_default() -> None:
    r = SqlRules.from_config({})
    assert r == SqlRules()
    assert r.allowed_statement_classes == frozenset({"select"})
    assert r.allow_multiple_statements is False
    assert r.allowed_tables == ()
    assert r.max_bytes_scanned is None


def test_from_config_normalises() -> None:
    r = SqlRules.from_config(
        {
            "allowed_statement_classes": ["SELECT", "delete"],
            "allow_multiple_statements": True,
            "allowed_tables": ["Demo.Shop.*"],
            "denied_columns": ("demo.shop.customers.SSN",),
            "max_bytes_scanned": 0,
        }
    )
    assert r.allowed_statement_classes == frozenset({"select", "delete"})
    assert r.allowed_tables == ("demo.shop.*",)
    assert r.denied_columns == ("demo.shop.customers.ssn",)
    assert r.max_bytes_scanned == 0
    assert hash(r) == hash(
        SqlRules.from_config(
            {
                "allowed_statement_classes": ["select", "delete"],
                "allow_multiple_statements": True,
                "allowed_tables": ["demo.shop.*"],
                "denied_columns": ["demo.shop.customers.ssn"],
                "max_bytes_scanned": 0,
            }
        )
    )


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ("select", "sql rules"),
        ({"allowed_tabels": ["demo.*"]}, "allowed_tabels"),
        ({"allowed_statement_classes": "select"}, "allowed_statement_classes"),
        ({"allowed_statement_classes": ["select", "drop"]}, "allowed_statement_classes"),
        ({"allowed_statement_classes": [1]}, "allowed_statement_classes"),
        ({"allow_multiple_statements": "yes"}, "allow_multiple_statements"),
        ({"allowed_tables": "demo.shop.*"}, "allowed_tables"),
        ({"allowed_tables": [""]}, "allowed_tables"),
        ({"allowed_tables": [42]}, "allowed_tables"),
        ({"allowed_tables": ["demo.shop.[ab]*"]}, "allowed_tables"),
        ({"allowed_tables": ["demo shop"]}, "allowed_tables"),
        ({"denied_columns": ["ssn"]}, "denied_columns"),
        ({"denied_columns": {"a.b": 1}}, "denied_columns"),
        ({"max_bytes_scanned": -1}, "max_bytes_scanned"),
        ({"max_bytes_scanned": True}, "max_bytes_scanned"),
        ({"max_bytes_scanned": "10GB"}, "max_bytes_scanned"),
        ({"max_bytes_scanned": 1.5}, "max_bytes_scanned"),
    ],
)
def test_from_config_errors_name_the_key(data: Any, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        SqlRules.from_config(data)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ValueError, match="allowed_statement_classes"):
        SqlRules(allowed_statement_classes=frozenset({"selects"}))
    with pytest.raises(ValueError, match="allowed_tables"):
        SqlRules(allowed_tables=("a b",))


# ------------------------------------------------------------------------------------------
# Masked columns: selected as they are or counted, never computed on
# ------------------------------------------------------------------------------------------

MASKING_CLASSES = {"demo.shop.customers.email": "email", "demo.shop.customers.full_name": "name"}


def masked_use_rules(sql: str, **masking: Any) -> list[str]:
    from policy.masking import MaskingPolicy
    from policy.sql_policy import check_masked_uses

    policy = MaskingPolicy.from_config(
        {"actions": {"email": "partial", "name": "redact"}, **masking}, token_key=b"k")

    def classes_of(ref: ColumnRef) -> frozenset[str]:
        cls = MASKING_CLASSES.get(f"{ref.table}.{ref.column}")
        return frozenset({cls}) if cls else frozenset()

    return [f"{r.rule}:{r.column}" for r in check_masked_uses(analyze(sql), classes_of, policy)]


@pytest.mark.parametrize("sql", [
    "SELECT email, full_name AS who FROM customers WHERE customer_id > 3 ORDER BY customer_id",
    "SELECT COUNT(email), COUNT(DISTINCT full_name), APPROX_COUNT_DISTINCT(email) FROM customers",
    "SELECT x.e FROM (SELECT email AS e FROM customers) AS x",
    "SELECT email FROM customers UNION ALL SELECT email FROM customers",
    "SELECT email FROM customers WHERE email IS NOT NULL",
    "SELECT DISTINCT country FROM customers",
])
def test_plain_projections_and_counts_of_masked_columns_pass(sql: str) -> None:
    assert masked_use_rules(sql) == []


@pytest.mark.parametrize("sql", [
    "SELECT UPPER(email) FROM customers",
    "SELECT customer_id FROM customers WHERE email LIKE 'a%'",
    "SELECT customer_id FROM customers ORDER BY full_name",
    "SELECT email, COUNT(*) FROM customers GROUP BY 1",
    "SELECT c.customer_id FROM customers AS c JOIN customers AS d ON c.email = d.email",
    "SELECT e FROM (SELECT email AS e FROM customers UNION ALL SELECT 'x@y.z')",
    "SELECT email FROM customers EXCEPT DISTINCT SELECT 'x@y.z'",
    "SELECT customer_id, RANK() OVER (PARTITION BY full_name ORDER BY customer_id) AS r FROM customers",
    "SELECT customer_id FROM customers WHERE email = 'a@b.c'",
    # DISTINCT groups by every output: the rows kept and their (hash) order depend on values.
    "SELECT DISTINCT email FROM customers",
    "SELECT customer_id FROM (SELECT DISTINCT customer_id, full_name FROM customers) LIMIT 8",
    "WITH d AS (SELECT DISTINCT country, email FROM customers) SELECT country FROM d",
])
def test_every_computation_over_a_masked_column_is_refused(sql: str) -> None:
    found = masked_use_rules(sql)
    assert found and all(r.startswith("sql.masked_column_use:") for r in found)


@pytest.mark.parametrize("sql", [
    # sqlglot reads these names as the select alias; BigQuery reads some of them (inside an
    # aggregate, in GROUP BY) as the table's column: both count as used.
    "SELECT country AS email, COUNT(*) AS n FROM customers GROUP BY country "
    "HAVING MAX(email) > 'm'",
    "SELECT country AS email, COUNT(*) AS n FROM customers GROUP BY 1 HAVING MIN(email) < 'm'",
    "SELECT 'a' AS full_name, MIN(customer_id) AS k FROM customers GROUP BY full_name",
    "SELECT country AS email, customer_id FROM customers ORDER BY LENGTH(email)",
    "SELECT customer_id, country AS email FROM customers QUALIFY email > 'm'",
    "SELECT customer_id, country AS email, RANK() OVER w AS r FROM customers "
    "WINDOW w AS (ORDER BY email)",
])
def test_an_alias_that_hides_a_masked_column_counts_as_a_use_of_it(sql: str) -> None:
    found = masked_use_rules(sql)
    assert found and all(r.startswith("sql.masked_column_use:") for r in found), found


def test_an_alias_that_hides_an_unclassified_column_stays_allowed() -> None:
    assert masked_use_rules("SELECT UPPER(country) AS country, COUNT(*) AS n FROM customers "
                            "GROUP BY country HAVING MAX(country) > 'A' ORDER BY country") == []
    assert masked_use_rules("SELECT email AS email FROM customers ORDER BY customer_id") == []


def test_equality_lookups_are_an_explicit_opt_in_per_class() -> None:
    lookup = "SELECT customer_id FROM customers WHERE email = 'a@b.c' OR email IN ('d@e.f', @p)"
    assert masked_use_rules(lookup)
    assert masked_use_rules(lookup, equality_lookups=["email"]) == []
    # The opt-in covers equality with a literal only: anything else stays refused.
    assert masked_use_rules("SELECT customer_id FROM customers WHERE email LIKE 'a%'",
                            equality_lookups=["email"])
    assert masked_use_rules("SELECT customer_id FROM customers WHERE full_name = 'x'",
                            equality_lookups=["email"])


def test_an_allowed_class_may_be_computed_on() -> None:
    assert masked_use_rules("SELECT UPPER(email) FROM customers WHERE email LIKE 'a%'",
                            actions={"email": "allow", "name": "redact"}) == []


def test_non_select_statements_may_not_touch_tables_with_masked_columns() -> None:
    from policy.masking import MaskingPolicy
    from policy.sql_policy import check_masked_tables

    policy = MaskingPolicy.from_config({"actions": {"email": "partial"}}, token_key=b"k")

    def classes_of(ref: ColumnRef) -> frozenset[str]:
        return frozenset({"email"}) if ref.column == "email" else frozenset()

    copy = analyze("INSERT INTO shop.orders (order_id) SELECT LENGTH(email) FROM customers")
    assert [r.rule for r in check_masked_tables(copy, SCHEMA, classes_of, policy)] == [
        "sql.masked_table_statement"]
    assert check_masked_tables(analyze("SELECT UPPER(email) FROM customers"), SCHEMA,
                               classes_of, policy) == ()
    assert check_masked_tables(analyze("DELETE FROM shop.orders WHERE TRUE"), SCHEMA,
                               classes_of, policy) == ()


def test_result_columns_out_of_the_expected_order_are_masked_with_every_class() -> None:
    """The result is matched to the analysed outputs by position. Where BigQuery's column at a
    position is not the one the analysis expects there (a `*` it expands in another order, a
    table recreated since the schema was read), that column gets every class the statement
    read, never its neighbour's: the raw ip_address must not leave as "country"."""
    from policy.classify import ColumnClassifier
    from policy.masking import MaskingPolicy
    from portal.services.demo import DEMO_ANALYST_RULES, DEMO_COLUMN_CLASSES
    from proxy.authorize import column_plan
    from proxy.mask import mask_call_result

    plan = column_plan(analyze("SELECT * FROM customers WHERE customer_id = 1"),
                       ColumnClassifier.from_config(DEMO_COLUMN_CLASSES), {})
    raw = {"customer_id": 1, "full_name": "Ada Lovelace", "email": "ada@example.com",
           "phone": "+1-555-010-3884", "ssn": "248-48-5228", "card_number": "4111111111110286",
           "date_of_birth": "1997-03-04", "street_address": "1 Main St",
           "ip_address": "203.0.113.77", "country": "IN", "created_at": "2024-02-04T07:20:40"}
    order = ["country", *(c for c in raw if c != "country")]  # USING (country) puts it first
    result = {"content": [], "structuredContent": {
        "columns": [{"name": c, "type": "STRING"} for c in order],
        "rows": [{c: raw[c] for c in order}]}}
    policy = MaskingPolicy.from_config(DEMO_ANALYST_RULES["masking"], token_key=b"k")
    masked, _ = mask_call_result(result, plan, policy)
    row = masked["structuredContent"]["rows"][0]
    # Matched by position alone, ssn would get the card's partial mask (its last four digits
    # out) and ip_address none at all (only the content detectors stood in the way).
    for column in ("full_name", "email", "phone", "ssn", "card_number", "date_of_birth",
                   "street_address", "ip_address", "country", "customer_id"):
        assert str(row[column]).startswith("[REDACTED:"), (column, row[column])
    # Positions that still line up keep their own masking.
    assert row["created_at"] == raw["created_at"]


def test_tables_of_other_projects_need_a_pattern_that_names_the_project() -> None:
    # A look-alike table in the caller's own project must not match "*.shop.customers": its
    # tokens for guessed names would be a dictionary attack on the real tokens.
    schema = {**SCHEMA, "evil.shop.customers": SCHEMA["demo.shop.customers"]}
    look_alike = analyze_sql("SELECT full_name FROM evil.shop.customers",
                             default_project="demo", default_dataset="shop", schema=schema)
    any_project = rules(allowed_tables=["*.shop.customers"])
    assert check_sql(look_alike, any_project) == ()  # without a home project: any project
    assert rule_ids(check_sql(look_alike, any_project, "demo")) == ["sql.table_not_allowed"]
    assert check_sql(analyze("SELECT full_name FROM customers"), any_project, "demo") == ()
    named = rules(allowed_tables=["*.shop.customers", "evil.shop.customers"])
    assert check_sql(look_alike, named, "demo") == ()


def test_a_callers_value_under_a_repeated_name_is_redacted_never_tokenized() -> None:
    """A result column that cannot be tied to one output gets every class read. Tokenizing it
    would tokenize whatever it holds — here the caller's guess — and a token equal to a real
    row's token confirms the guess (a dictionary attack on `tokenize`). It is redacted."""
    from policy.classify import ColumnClassifier
    from policy.masking import MaskingPolicy
    from portal.services.demo import DEMO_ANALYST_RULES, DEMO_COLUMN_CLASSES
    from proxy.authorize import column_plan
    from proxy.mask import mask_call_result

    guess = "Ada Lovelace"
    plan = column_plan(analyze(f"SELECT full_name AS e, '{guess}' AS e FROM customers"),
                       ColumnClassifier.from_config(DEMO_COLUMN_CLASSES), {})
    policy = MaskingPolicy.from_config(DEMO_ANALYST_RULES["masking"], token_key=b"k")
    # The emulator renames the second column; BigQuery's QueryResponse may repeat the name.
    renamed = {"content": [], "structuredContent": {
        "columns": [{"name": "e", "type": "STRING"}, {"name": "e_1", "type": "STRING"}],
        "rows": [{"e": guess, "e_1": guess}]}}
    repeated = {"content": [], "structuredContent": {
        "schema": {"fields": [{"name": "e", "type": "STRING"}, {"name": "e", "type": "STRING"}]},
        "rows": [{"f": [{"v": guess}, {"v": guess}]}]}}
    row = mask_call_result(renamed, plan, policy)[0]["structuredContent"]["rows"][0]
    assert row["e"].startswith("tok_") and row["e_1"] == "[REDACTED:name]"
    cells = mask_call_result(repeated, plan, policy)[0]["structuredContent"]["rows"][0]["f"]
    assert [c["v"] for c in cells] == ["[REDACTED:name]", "[REDACTED:name]"]


@pytest.mark.parametrize(("dataset", "visible"), [
    ("p.shop", True),          # *.shop.customers, in the connection's project
    ("other.shop", False),     # the same name in a project the caller may control
    ("p.hr", False),           # no pattern reaches a table of it
    ("p.sales_eu", True),      # p.sales_*.orders
    ("p.x", True),             # p.x.*
    ("p.xy", False),
    ("P.SHOP", True),          # names are case-insensitive
])
def test_a_dataset_is_visible_only_if_some_table_of_it_is_allowed(dataset: str,
                                                                  visible: bool) -> None:
    rules = SqlRules.from_config({"allowed_tables": ["*.shop.customers", "p.sales_*.orders",
                                                     "p.x.*"]})
    assert rules.dataset_visible(dataset, "p") is visible


def test_no_allowed_table_means_no_dataset() -> None:
    assert not SqlRules.from_config({"allowed_tables": []}).dataset_visible("p.shop", "p")
    assert SqlRules.from_config({"allowed_tables": ["*"]}).dataset_visible("p.shop", "p")
