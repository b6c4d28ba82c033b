"""Masking against an adversary, through the real gateway, our MCP server and the emulator.

The analyst role (demo rules) may send any SELECT on the shop tables. The adversarial corpus
(tests/adversarial_corpus.py: 1,000+ statements, leak class × classified column × SQL context)
tries to make an answer depend on a classified value. Two independent checks:

* **No dependence at all** — every statement runs against `shop` and against `shop_twin`, a
  copy whose classified values are all different (every letter and digit shifted) and whose
  other columns are identical. An answer that is not byte-identical across the twins (request
  ids and the dataset name aside) depends on a classified value: a leak or an oracle.
* **No value out** — no raw classified value read straight from the upstream, nor a reversible
  encoding of it (reversed, base64, hex, digits only, digits as letters, spaced out, code
  points, upper case), appears in any answer or in any audit record written for the calls,
  unless the caller wrote it into the statement itself.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable

import ahocorasick
import pytest
from mcp.client import Client

from bigquery_mcp.demo_data import generate
from bigquery_mcp.seed import seed_demo_dataset
from proxy.db import run_db
from tests.adversarial_corpus import CLASSIFIED, adversarial_cases, legit_statements
from tests.conftest import DATASET, PROJECT, TEST_CUSTOMERS
from wardgate.mcp_client import gateway_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TWIN = "twin"  # as long as "shop", so truncated texts line up
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def _shift(value: str) -> str:
    """Every letter and digit moved on by one (a→b, z→a, 9→0); punctuation kept."""
    out = []
    for ch in value:
        if ch.isdigit():
            out.append(str((int(ch) + 1) % 10))
        elif "a" <= ch <= "z":
            out.append(chr((ord(ch) - 97 + 1) % 26 + 97))
        elif "A" <= ch <= "Z":
            out.append(chr((ord(ch) - 65 + 1) % 26 + 65))
        else:
            out.append(ch)
    return "".join(out)


def _twin_dob(value: str) -> str:
    year, month, day = (int(p) for p in value.split("-"))
    return f"{year + 1:04d}-{month % 12 + 1:02d}-{min(day % 28 + 1, 28):02d}"


def twin_rows() -> dict[str, list[dict]]:
    data = generate(customers=TEST_CUSTOMERS)
    for row in data["customers"]:
        for col in CLASSIFIED:
            if col.table == "customers" and row.get(col.column) is not None:
                row[col.column] = (_twin_dob(row[col.column]) if col.kind == "DATE"
                                   else _shift(row[col.column]))
    for row in data["events"]:
        payload = json.loads(row["payload"])
        row["payload"] = json.dumps({k: _shift(str(v)) for k, v in payload.items()},
                                    sort_keys=True)
    return data


@pytest.fixture(scope="session")
def twin_dataset(bigquery_client) -> str:  # type: ignore[no-untyped-def]
    seed_demo_dataset(bigquery_client, TWIN, data=twin_rows())
    return TWIN


@pytest.fixture
def analyst_token(engineer, demo_connection, demo_policy, twin_dataset) -> str:  # type: ignore[no-untyped-def]
    """The engineer's token on the demo connection and on a twin connection whose default
    dataset is the twin, with the same analyst rules (tables renamed) and the same classes."""
    from portal.models import Connection, Grant, Role
    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.demo import DEMO_ANALYST_RULES
    from portal.services.events import SYSTEM
    from portal.services.security import security_revision_bump
    from portal.services.tokens import token_issue

    twin = Connection.objects.get(pk=demo_connection.pk)
    twin.pk = None
    twin.slug, twin.name, twin.default_dataset = "twin-bigquery", "Twin", twin_dataset
    twin.save()
    sql = dict(DEMO_ANALYST_RULES["sql"])
    sql["allowed_tables"] = [t.replace(".shop.", f".{twin_dataset}.")
                             for t in sql["allowed_tables"]]
    role = Role.objects.create(name="analyst-twin", rules={**DEMO_ANALYST_RULES, "sql": sql})
    Grant.objects.create(role=role, connection=twin, group=engineer.groups.get(),
                         reason="twin of the demo connection")
    tool_catalog_refresh(connection=twin)
    tool_catalog_accept(connection=twin, by=None, meta=SYSTEM)
    security_revision_bump()
    _, plaintext = token_issue(user=engineer, connections=[demo_connection, twin], by=None, meta=SYSTEM)
    return plaintext


def _answer(result, dataset: str) -> str:  # type: ignore[no-untyped-def]
    """What the caller sees, as text, with what legitimately differs between runs removed."""
    shown = {"isError": result.is_error,
             "content": [c.model_dump(mode="json", exclude_none=True) for c in result.content],
             "structured": result.structured_content}
    text = json.dumps(shown, sort_keys=True, ensure_ascii=False)
    return REQUEST_ID.sub("<request-id>", text).replace(dataset, "<dataset>")


async def _run_all(url: str, token: str, statements: Iterable[str]) -> list:  # type: ignore[type-arg]
    out = []
    async with gateway_client(url, token) as client:
        for sql in statements:
            out.append(await client.call_tool("execute_sql", {"sql": sql}))
    return out


async def _raw_rows(mcp_server_url: str) -> list[dict]:
    async with Client(mcp_server_url) as direct:
        rows: list[dict] = []
        for table in ("customers", "events"):
            result = await direct.call_tool(
                "execute_sql", {"sql": f"SELECT * FROM {DATASET}.{table}", "max_rows": 10000})
            rows.extend(result.structured_content["rows"])
    return rows


def _encodings(value: str) -> set[str]:
    forms = {value, value[::-1], value.upper(), base64.b64encode(value.encode()).decode(),
             value.encode().hex(), value.encode().hex().upper(), " ".join(value),
             ",".join(str(ord(c)) for c in value),
             value.translate(str.maketrans("0123456789@.", "abcdefghij#!"))}
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 7:
        forms |= {digits, digits[::-1]}
    return {f for f in forms if len(f) >= 6}


def _needles(rows: list[dict]) -> dict[str, str]:
    """Encoded form -> the raw value it encodes, for every classified cell read raw."""
    columns = {c.column for c in CLASSIFIED}
    needles: dict[str, str] = {}
    for row in rows:
        for column in columns & row.keys():
            if row[column] is None:
                continue
            values = {str(row[column])}
            if column == "payload":
                values |= {str(v) for v in json.loads(row[column]).values()}
            for value in values:
                for form in _encodings(value):
                    needles[form] = value
    return needles


def _leaks(texts: list[str], statements: list[str], needles: dict[str, str]) -> list[str]:
    """(statement, needle) pairs where an encoded raw value shows up in what left. A value the
    caller wrote into the statement (a guess) is theirs already and does not count."""
    automaton = ahocorasick.Automaton()
    for needle, value in needles.items():
        automaton.add_word(needle, (needle, value))
    automaton.make_automaton()
    found = []
    for sql, text in zip(statements, texts, strict=True):
        for end, (needle, value) in automaton.iter(text):
            if value not in sql and needle not in sql:
                seen = text[max(0, end - len(needle) - 60):end + 60]
                found.append(f"{value!r} as {needle!r} in the answer to: {sql} (…{seen}…)")
    return found


def _audit_texts(since_seq: int) -> list[tuple[str, str]]:
    from audit.models import AuditRecord

    records = list(AuditRecord.objects.filter(seq__gt=since_seq).order_by("seq"))
    # Random identifiers (request and session ids: 32 hex digits each, quoted in reasons and
    # response bodies) are blanked out first: across thousands of records an 8-digit needle
    # (a date of birth without dashes) turns up inside one by chance every few dozen runs.
    # Only the records' own identifiers are blanked, so a hex encoding of a value still counts.
    identifiers = sorted({i for r in records for i in (r.request_id, r.mcp_session_id) if i},
                         key=len, reverse=True)
    out = []
    for rec in records:
        sql = rec.sql_text or json.dumps(rec.arguments)
        text = json.dumps([rec.reasons, rec.response_body, rec.detail, rec.masking],
                          ensure_ascii=False)
        for identifier in identifiers:
            text = text.replace(identifier, "<id>")
        out.append((sql, text))
    return out


def _last_seq() -> int:
    from audit.models import AuditRecord

    last = AuditRecord.objects.order_by("-seq").first()
    return last.seq if last else 0


async def test_adversarial_corpus_leaks_nothing_and_answers_do_not_depend_on_classified_values(
    gateway, analyst_token, mcp_server_url
) -> None:  # type: ignore[no-untyped-def]
    cases = adversarial_cases(DATASET)
    assert len(cases) >= 300
    # Every leak class x every classified column x every SQL context is in the corpus.
    assert {c.leak for c in cases} == {"error_text", "implicit_flow", "partial_computed",
                                       "encoding"}
    assert {c.column for c in cases} == {c.column for c in CLASSIFIED}
    assert {c.context for c in cases} >= {"projection", "expression", "join", "filter",
                                          "grouping", "ordering", "window", "set_operation",
                                          "subquery", "cte"}
    seq_before = await run_db(_last_seq)
    statements = [c.sql for c in cases]
    real = await _run_all(gateway.url("demo-bigquery"), analyst_token, statements)
    twin_statements = [s.replace(f"{DATASET}.", f"{TWIN}.") for s in statements]
    twin = await _run_all(gateway.url("twin-bigquery"), analyst_token, twin_statements)

    depends = [
        f"{case.leak}/{case.context}/{case.column}: {case.sql}\n  real: {_answer(a, DATASET)[:300]}"
        f"\n  twin: {_answer(b, TWIN)[:300]}"
        for case, a, b in zip(cases, real, twin, strict=True)
        if _answer(a, DATASET) != _answer(b, TWIN)
    ]
    assert not depends, f"{len(depends)} answers depend on classified values:\n" + "\n".join(
        depends[:10])

    needles = _needles(await _raw_rows(mcp_server_url))
    assert len(needles) > 1000  # the raw table was really read
    leaks = _leaks([_answer(r, DATASET) for r in real], statements, needles)
    assert not leaks, "\n".join(leaks[:10])

    audit = await run_db(_audit_texts, seq_before)
    assert len(audit) >= 2 * len(cases)  # a decision record per call at least
    leaks = _leaks([text for _, text in audit], [sql for sql, _ in audit], needles)
    assert not leaks, "audit trail: " + "\n".join(leaks[:10])

    # Nothing slipped through as "allowed": each statement was refused with its reason.
    for case, result in zip(cases, real, strict=True):
        assert result.is_error, case.sql
        text = result.content[0].text
        assert any(rule in text for rule in ("sql.masked_column_use", "sql.unsupported",
                                             "sql.ambiguous_name")), (case.sql, text)


async def test_legitimate_analyst_queries_keep_working_and_tokens_are_stable(
    gateway, analyst_token, mcp_server_url
) -> None:  # type: ignore[no-untyped-def]
    statements = legit_statements(DATASET)
    first = await _run_all(gateway.url("demo-bigquery"), analyst_token, statements)
    again = await _run_all(gateway.url("demo-bigquery"), analyst_token, statements)
    async with Client(mcp_server_url) as direct:
        raw = [await direct.call_tool("execute_sql", {"sql": sql}) for sql in statements]
    # Output names that carry a classified column (the legit corpus renames some).
    masked_columns = {c.column for c in CLASSIFIED} | {"contact", "who", "name"}
    for sql, got, repeat, orig in zip(statements, first, again, raw, strict=True):
        assert not got.is_error, (sql, got.content[0].text)
        rows, raw_rows = got.structured_content["rows"], orig.structured_content["rows"]
        assert len(rows) == len(raw_rows), sql
        # Tokens (and every other cell) are the same on a second call: results can be joined.
        assert repeat.structured_content["rows"] == rows, sql
        for row, raw_row in zip(rows, raw_rows, strict=True):
            for column, value in raw_row.items():
                if column in masked_columns and value is not None and column != "payload":
                    assert row[column] != value, (sql, column)
                elif column not in masked_columns:
                    assert row[column] == value, (sql, column)
    by_sql = dict(zip(statements, first, strict=True))
    names = by_sql[statements[0]].structured_content["rows"]
    assert all(r["full_name"].startswith("tok_") for r in names)
    assert all(r["ssn"] == "[REDACTED:ssn]" for r in names)
    counts = by_sql[statements[7]].structured_content["rows"]
    assert sum(r["n"] for r in counts) == TEST_CUSTOMERS and all(r["emails"] > 0 for r in counts)


async def test_error_texts_never_carry_values(gateway, analyst_token) -> None:  # type: ignore[no-untyped-def]
    """A statement that reads a masked column and fails upstream: its error text is withheld
    (fixed message, error class, request id). One that reads none: the text is detected."""
    from audit.models import AuditRecord

    customer = generate(customers=TEST_CUSTOMERS)["customers"][0]
    async with gateway_client(gateway.url("demo-bigquery"), analyst_token) as client:
        # Reads email (masked, plain projection: allowed) and fails on an unclassified value.
        failed = await client.call_tool("execute_sql", {"sql": (
            f"SELECT email, CAST(country AS INT64) AS c FROM {DATASET}.customers "
            f"WHERE customer_id = 1")})
        # Reads nothing masked; the error quotes the caller's own literal, which holds an email.
        quoted = await client.call_tool("execute_sql", {"sql": (
            f"SELECT CAST('{customer['email']}' AS INT64) AS c FROM {DATASET}.orders LIMIT 1")})
    text = failed.content[0].text
    assert failed.is_error and "withheld" in text and "invalid_value" in text
    assert customer["email"] not in text and customer["country"] not in text
    assert quoted.is_error and customer["email"] not in quoted.content[0].text

    def stored() -> list[str]:
        return [json.dumps([r.reasons, r.response_body, r.detail])
                for r in AuditRecord.objects.filter(tool="execute_sql")]

    for record in await run_db(stored):
        assert customer["email"] not in record


async def test_a_callers_value_is_never_tokenized_like_a_classified_column(
    gateway, analyst_token
) -> None:  # type: ignore[no-untyped-def]
    """Tokens are keyed so a caller cannot compute them: if the gateway tokenized a value the
    caller chose, a token equal to a real row's would confirm a guessed name. A result column
    that cannot be tied to one output (a repeated name the upstream renames) is redacted."""
    guess = generate(customers=TEST_CUSTOMERS)["customers"][0]["full_name"]
    statements = [
        f"SELECT full_name AS e, '{guess}' AS e FROM {DATASET}.customers "
        f"WHERE customer_id <= 3 ORDER BY customer_id",
        f"SELECT full_name, '{guess}' AS full_name FROM {DATASET}.customers "
        f"WHERE customer_id <= 3 ORDER BY customer_id",
        f"SELECT full_name AS f, '{guess}' AS f_1, '{guess}' AS f FROM {DATASET}.customers "
        f"WHERE customer_id <= 3 ORDER BY customer_id",
    ]
    results = await _run_all(gateway.url("demo-bigquery"), analyst_token, statements)
    for sql, result in zip(statements, results, strict=True):
        assert not result.is_error, (sql, result.content[0].text)
        rows = result.structured_content["rows"]
        assert len(rows) == 3, sql
        names = list(rows[0])
        tokens = {row[names[0]] for row in rows}
        assert all(t.startswith("tok_") for t in tokens), (sql, rows)
        for row in rows:
            for name in names[1:]:
                assert row[name] not in tokens and row[name] != guess, (sql, row)


@pytest.fixture
def email_token_url(gateway, engineer, demo_connection, analyst_token) -> str:  # type: ignore[no-untyped-def]
    """A copy of the demo connection whose role tokenizes emails (a class the content
    detectors also find), granted to the engineer; the analyst token is re-issued for it."""
    from portal.models import Connection, Grant, Role
    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.demo import DEMO_ANALYST_RULES
    from portal.services.events import SYSTEM
    from portal.services.security import security_revision_bump

    conn = Connection.objects.get(pk=demo_connection.pk)
    conn.pk = None
    conn.slug, conn.name = "email-tokens", "Email tokens"
    conn.save()
    masking = {**DEMO_ANALYST_RULES["masking"],
               "actions": {**DEMO_ANALYST_RULES["masking"]["actions"], "email": "tokenize"}}
    role = Role.objects.create(name="analyst-email-tokens",
                               rules={**DEMO_ANALYST_RULES, "masking": masking})
    Grant.objects.create(role=role, connection=conn, group=engineer.groups.get(),
                         reason="emails tokenized")
    tool_catalog_refresh(connection=conn)
    tool_catalog_accept(connection=conn, by=None, meta=SYSTEM)
    security_revision_bump()
    return gateway.url("email-tokens")


async def test_a_guess_the_detectors_find_is_not_tokenized_like_the_column(
    gateway, engineer, email_token_url
) -> None:  # type: ignore[no-untyped-def]
    """With emails tokenized, a caller who writes guessed emails as literals (no classified
    column read) must not get them back under the column's token: that would confirm which
    guess is a customer's email. Found spans are redacted, the column keeps its tokens."""
    from portal.models import Connection
    from portal.services.events import SYSTEM
    from portal.services.tokens import token_issue

    conn = await run_db(Connection.objects.get, slug="email-tokens")
    _, token = await run_db(lambda: token_issue(user=engineer, connections=[conn], by=None,
                                                meta=SYSTEM))
    email = generate(customers=TEST_CUSTOMERS)["customers"][0]["email"]
    column, guesses = await _run_all(email_token_url, token, [
        f"SELECT email FROM {DATASET}.customers WHERE customer_id = 1",
        f"SELECT g FROM UNNEST(['nobody@example.com', '{email}']) AS g",
    ])
    assert not column.is_error and not guesses.is_error, guesses.content[0].text
    real_token = column.structured_content["rows"][0]["email"]
    assert real_token.startswith("tok_")
    assert [r["g"] for r in guesses.structured_content["rows"]] == ["[REDACTED:email]"] * 2
    assert real_token not in json.dumps(guesses.model_dump(mode="json"))


async def test_metadata_tools_answer_only_for_queryable_tables(
    gateway, analyst_token, bigquery_client
) -> None:  # type: ignore[no-untyped-def]
    from google.cloud import bigquery

    salaries = f"{PROJECT}.{DATASET}.staff_salaries"
    bigquery_client.create_table(bigquery.Table(
        salaries, schema=[bigquery.SchemaField("salary", "NUMERIC")]), exists_ok=True)
    private = f"{PROJECT}.payroll_private"  # a dataset holding no table the role may query
    bigquery_client.create_dataset(private, exists_ok=True)
    try:
        async with gateway_client(gateway.url("demo-bigquery"), analyst_token) as client:
            allowed = await client.call_tool("get_table_schema",
                                             {"table": f"{DATASET}.customers"})
            refused = await client.call_tool("get_table_schema",
                                             {"table": f"{DATASET}.staff_salaries"})
            listing = await client.call_tool("list_tables", {"dataset": DATASET})
            datasets = await client.call_tool("list_datasets", {})
    finally:  # the emulator is shared by the whole session
        bigquery_client.delete_table(salaries, not_found_ok=True)
        bigquery_client.delete_dataset(private, delete_contents=True, not_found_ok=True)
    assert datasets.structured_content["datasets"] == [DATASET]
    assert "payroll_private" not in json.dumps(datasets.model_dump(mode="json"))
    assert not allowed.is_error
    assert refused.is_error and "metadata.table_not_allowed" in refused.content[0].text
    assert "salary" not in json.dumps(refused.model_dump(mode="json"))
    tables = listing.structured_content["tables"]
    assert "customers" in tables and "staff_salaries" not in tables
    assert "staff_salaries" not in listing.content[0].text
