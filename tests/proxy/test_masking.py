"""Masking of MCP tool results: actions, policies, result shapes, fail-closed behaviour."""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import hashlib
import hmac
import json
import re
from typing import Any

import pytest

from policy.masking import (
    MaskAction,
    MaskingPolicy,
    MaskingSummary,
    UnmaskableResult,
    mask_rows,
    mask_tool_result,
    mask_value,
)

KEY = b"test-token-key"
A = MaskAction


def policy(default: MaskAction = A.REDACT, detect: bool = True, **actions: Any) -> MaskingPolicy:
    return MaskingPolicy(
        actions=actions, default_action=default, token_key=KEY, detect_content=detect
    )


def ref_token(cls: str, value: str, key: bytes = KEY) -> str:
    return "tok_" + hmac.new(key, f"{cls}:{value}".encode(), hashlib.sha256).hexdigest()[:16]


def fs(*classes: str) -> frozenset[str]:
    return frozenset(classes)


# --------------------------------------------------------------------------- policy


def test_policy_normalizes_and_defaults() -> None:
    p = MaskingPolicy(actions={" Email ": "PARTIAL", "ssn": A.NULL}, token_key=KEY)
    assert dict(p.actions) == {"email": A.PARTIAL, "ssn": A.NULL}
    assert p.action_for("email") is A.PARTIAL
    assert p.action_for("EMAIL") is A.PARTIAL
    assert p.action_for("phone") is A.REDACT  # default
    assert KEY.decode() not in repr(p)  # the token key never shows in logs
    assert hash(p) == hash(MaskingPolicy(actions={"email": "partial"}, token_key=KEY))
    with pytest.raises(TypeError):
        p.actions["email"] = A.ALLOW  # type: ignore[index]


def test_policy_requires_token_key_for_tokenize() -> None:
    with pytest.raises(ValueError, match="token_key"):
        MaskingPolicy(actions={"email": A.TOKENIZE})
    with pytest.raises(ValueError, match="token_key"):
        MaskingPolicy(actions={}, default_action=A.TOKENIZE)
    MaskingPolicy(actions={"email": A.PARTIAL})  # no tokenize: no key needed


def test_from_config() -> None:
    p = MaskingPolicy.from_config(
        {
            "actions": {"email": "partial", "phone": "tokenize", "custom_id": "allow"},
            "default_action": "null",
            "detect_content": False,
        },
        token_key=KEY,
    )
    assert p.actions == {"email": A.PARTIAL, "phone": A.TOKENIZE, "custom_id": A.ALLOW}
    assert p.default_action is A.NULL
    assert p.detect_content is False
    assert p.token_key == KEY
    assert MaskingPolicy.from_config({}, token_key=b"").default_action is A.REDACT


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"actions": {"email": "hide"}}, r"actions\['email'\]: unknown action 'hide'"),
        ({"actions": {"email": 3}}, r"actions\['email'\]: unknown action 3"),
        ({"actions": {"": "redact"}}, r"class name '' must be a non-empty string"),
        ({"actions": {1: "redact"}}, r"class name 1 must be a non-empty string"),
        ({"actions": ["email"]}, r"'actions' must be a mapping"),
        ({"default_action": "mask"}, r"default_action: unknown action 'mask'"),
        ({"detect_content": "yes"}, r"'detect_content' must be true or false"),
        ({"action": {}}, r"unknown key 'action'"),
        ({"actions": {"email": "tokenize"}}, r"token_key: required"),
        ({"actions": {"Email": "redact", "email": "allow"}}, r"given two actions"),
    ],
)
def test_from_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        MaskingPolicy.from_config(data, token_key=b"")
    assert str(info.value).startswith("masking policy: ")


def test_from_config_rejects_non_mapping() -> None:
    with pytest.raises(ValueError, match="expected a mapping, got list"):
        MaskingPolicy.from_config([], token_key=KEY)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- single values


@pytest.mark.parametrize(
    ("cls", "value", "expected"),
    [
        ("email", "john.smith@example.com", "j***@example.com"),
        ("email", " Jane@Example.org ", "J***@Example.org"),
        ("phone", "+1 (555) 123-4567", "+* (***) ***-4567"),
        ("phone", "555.123.4567", "***.***.4567"),
        ("phone", 15551234567, "*******4567"),
        ("card", "4242 4242 4242 4242", "**** **** **** 4242"),
        ("card", "4111-1111-1111-1111", "****-****-****-1111"),
        ("card", 4111111111111111, "************1111"),
        ("ssn", "123-45-6789", "***-**-6789"),
        ("iban", "DE89 3704 0044 0532 0130 00", "**** **** **** **** **30 00"),
        ("name", "John Smith", "J. S."),
        ("name", "mary-jane o'neil", "M. O."),
        ("name", "Smith, John A.", "S. J. A."),
        ("address", "1 Main St, Springfield, IL 62704", "*** Springfield, IL"),
        ("address", "221B Baker Street\nLondon NW1 6XE\nUK", "*** London, UK"),
        ("dob", "1984-03-12", "1984-**-**"),
        ("dob", "03/12/1984", "1984-**-**"),
        ("dob", "19840312", "1984-**-**"),
        ("dob", dt.date(1984, 3, 12), "1984-**-**"),
        ("dob", dt.datetime(1984, 3, 12, 8, 30), "1984-**-**"),
        ("ip", "10.1.2.3", "10.1.*.*"),
        ("ip", "2001:db8:85a3::8a2e:370:7334", "2001:db8:*:*:*:*:*:*"),
        ("ip", "192.168.7.0/24", "192.168.*.*"),
        ("ip", "fe80::1%eth0", "fe80:0:*:*:*:*:*:*"),
    ],
)
def test_partial_per_class(cls: str, value: Any, expected: str) -> None:
    assert mask_value(value, cls, A.PARTIAL, policy()) == expected


@pytest.mark.parametrize(
    ("cls", "value"),
    [
        ("email", "not an email"),
        ("email", "John <john@example.com>"),  # computed value: not a single clean e-mail
        ("phone", "call 555-123-4567"),
        ("phone", "12345"),  # too short to hide anything by keeping 4
        ("card", "4111111111111111 exp 12/30"),
        ("name", "John Smith john@example.com"),
        ("name", "R2D2"),
        ("address", "Springfield"),  # nothing left after dropping the street line
        ("dob", "12/03/84"),  # no four-digit year
        ("ip", "999.1.1.1"),
        ("ip", "010.1.1.1"),
        ("employee_id", "E-12345"),  # no partial form for custom classes
        ("email", {"email": "a@example.com"}),  # nested values are masked whole
        ("email", ["a@example.com"]),
        ("email", True),
    ],
)
def test_partial_falls_back_to_redact(cls: str, value: Any) -> None:
    assert mask_value(value, cls, A.PARTIAL, policy()) == f"[REDACTED:{cls}]"


@pytest.mark.parametrize("value", ["john@example.com", 12345, 1.5, {"a": 1}, [1, 2], True])
def test_redact_null_allow(value: Any) -> None:
    p = policy()
    assert mask_value(value, "email", A.REDACT, p) == "[REDACTED:email]"
    assert mask_value(value, "email", A.NULL, p) is None
    assert mask_value(value, "email", A.ALLOW, p) is value
    assert mask_value(None, "email", A.REDACT, p) is None


def test_tokenize_stable_and_key_dependent() -> None:
    p = policy()
    token = mask_value("john@example.com", "email", A.TOKENIZE, p)
    assert re.fullmatch(r"tok_[0-9a-f]{16}", token)
    assert token == ref_token("email", "john@example.com")  # HMAC-SHA256(key, class:value)
    assert token == mask_value("john@example.com", "email", A.TOKENIZE, p)  # stable
    other_key = MaskingPolicy(actions={}, token_key=b"another key")
    assert mask_value("john@example.com", "email", A.TOKENIZE, other_key) != token
    assert mask_value("john@example.com", "name", A.TOKENIZE, p) != token  # class-scoped
    assert mask_value("john2@example.com", "email", A.TOKENIZE, p) != token


def test_tokenize_canonical_values() -> None:
    p = policy()
    # the same value arriving as a JSON number, a CSV string or a float tokenizes the same
    assert mask_value(12345, "id", A.TOKENIZE, p) == mask_value("12345", "id", A.TOKENIZE, p)
    assert mask_value(12345.0, "id", A.TOKENIZE, p) == mask_value(12345, "id", A.TOKENIZE, p)
    assert mask_value(True, "x", A.TOKENIZE, p) == ref_token("x", "true")
    assert mask_value(dt.date(1984, 3, 12), "dob", A.TOKENIZE, p) == ref_token("dob", "1984-03-12")
    assert mask_value(decimal.Decimal("1.50"), "x", A.TOKENIZE, p) == ref_token("x", "1.50")
    assert mask_value({"b": 1, "a": 2}, "x", A.TOKENIZE, p) == ref_token("x", '{"a":2,"b":1}')


def test_tokenize_long_key_matches_hmac() -> None:
    long_key = b"k" * 100  # longer than the SHA-256 block: hashed first, as HMAC requires
    p = MaskingPolicy(actions={}, token_key=long_key)
    assert mask_value("v", "c", A.TOKENIZE, p) == ref_token("c", "v", long_key)


# --------------------------------------------------------------------------- rows


def test_mask_rows_classified_and_detected() -> None:
    rows = [
        {
            "id": 7,
            "email": "john@example.com",
            "phone": "+1 555 123 4567",
            "full_name": "John Smith",
            "ssn": "123-45-6789",
            "notes": "reach me at jane@example.org or 10.2.3.4",
            "amount": 12.5,
            "missing": None,
        }
    ]
    classes = {
        "email": fs("email"),
        "phone": fs("phone"),
        "full_name": fs("name"),
        "ssn": fs("ssn"),
    }
    p = policy(email=A.PARTIAL, phone=A.TOKENIZE, name=A.REDACT, ssn=A.NULL, ip=A.ALLOW)
    summary = MaskingSummary()
    out = mask_rows(rows, classes, p, summary)
    assert out == [
        {
            "id": 7,
            "email": "j***@example.com",
            "phone": ref_token("phone", "+1 555 123 4567"),
            "full_name": "[REDACTED:name]",
            "ssn": None,
            "notes": "reach me at j***@example.org or 10.2.3.4",
            "amount": 12.5,
            "missing": None,
        }
    ]
    assert summary.as_list() == [
        {"column": "email", "class": "email", "action": "partial", "count": 1},
        {"column": "full_name", "class": "name", "action": "redact", "count": 1},
        {"column": "notes", "class": "email", "action": "partial", "count": 1},
        {"column": "phone", "class": "phone", "action": "tokenize", "count": 1},
        {"column": "ssn", "class": "ssn", "action": "null", "count": 1},
    ]
    assert summary.total == 5


# Values each column's fast path must hand back to the one-value rules (or keep): None, other
# types, too few digits, no four digits at the end, spaces, a second "@", text, big numbers.
AWKWARD_CELLS: dict[str, list[Any]] = {
    "id": [1, None, 4111111111111111, 2.5, True, "7", 10**12],
    "email": ["ann@example.com", None, " ann@example.com ", "a@b@c.com", "no-at-sign", 42,
              "Zoë@exämple.de"],
    "phone": ["555-010-1234", "+1 (555) 010-12 34", "12-34", None, 5550101234,
              "(555) 010-1234 x", "+44 20 7946 0958"],
    "card": ["4111 1111 1111 1111", "4111-1111-1111-1111 ", "", None, "ABCD", 4111111111111111,
             "3782 822463 10005"],
    "full_name": ["Ann Lee", None, "", 7, ["nested", "ann@example.com"], "Ann", "O'Brien"],
    "notes": ["mail ann@example.com", None, "card 4111 1111 1111 1111", 3, "plain",
              {"k": "555-010-1234"}, "ip 10.2.3.4"],
}
# Columns whose every value has the class's shape, so the column is taken whole, with values
# the one-value rule still decides: too few digits, no four digits at the end.
SHAPED_CELLS: dict[str, list[Any]] = {
    "id": [1, 2, 3],
    "email": ["ann@example.com", "Zoë@exämple.de", "x.y+z@a.b.c"],
    "phone": ["555-010-1234", "+1 (555) 010-12 34", "12-34", "+44 20 7946 0958", "1234567",
              "(555) 010-1234", "123456"],
    "card": ["4111 1111 1111 1111", "3782 822463 10005", "4111-1111-1111-1111"],
    "fax": ["555-010-1234", "123456"],  # each ends in four digits, one has six in all
    "full_name": ["Ann Lee", "Bo"],
    "notes": ["plain", "mail ann@example.com"],
}
AWKWARD_CLASSES = {"email": fs("email"), "phone": fs("phone"), "fax": fs("phone"), "card": fs("card"),
                   "full_name": fs("name")}


@pytest.mark.parametrize("actions", [
    {"email": A.PARTIAL, "phone": A.PARTIAL, "card": A.PARTIAL, "name": A.TOKENIZE},
    {"email": A.REDACT, "phone": A.NULL, "card": A.TOKENIZE, "name": A.PARTIAL},
    {"email": A.ALLOW, "phone": A.DETECT, "card": A.ALLOW, "name": A.REDACT},
])
@pytest.mark.parametrize("cells_by_column", [AWKWARD_CELLS, SHAPED_CELLS],
                         ids=["awkward", "shaped"])
def test_rows_masked_by_column_as_row_by_row(actions: dict[str, MaskAction],
                                             cells_by_column: dict[str, list[Any]]) -> None:
    """A result's rows are masked a column at a time (the fast path for large results); every
    cell must come out as the one-row-at-a-time masking gives it, with the same counts."""
    rows = [{col: cells[(i + shift) % len(cells)] for shift, (col, cells) in
             enumerate(cells_by_column.items())} for i in range(21)]
    p = policy(**actions)
    by_row = MaskingSummary()
    expected = mask_rows(copy.deepcopy(rows), AWKWARD_CLASSES, p, by_row)
    out, by_column = mask_tool_result(bq_result(rows), AWKWARD_CLASSES, p,
                                      may_hold_sensitive=True)
    assert out["structuredContent"]["rows"] == expected
    assert json.loads(out["content"][0]["text"])["rows"] == expected
    assert by_column.as_list() == by_row.as_list()
    masked = json.dumps(out)
    raws = {"email": "ann@example.com", "name": "Ann Lee", "phone": "010-1234",
            "card": "1111 1111"}
    for cls, raw in [*raws.items(), ("phone", "7946"), ("ip", "10.2.3.4")]:
        assert (raw in masked) is (actions.get(cls) is A.ALLOW), raw


@pytest.mark.parametrize(("column", "cls", "hidden"), [
    ("email", "email", "cy@example.com"),
    ("phone", "phone", "555-010-9999"),
])
def test_value_with_a_line_break_is_not_split_into_column_values(
        column: str, cls: str, hidden: str) -> None:
    """The column fast path joins a column's values with line breaks: a value holding one must
    not pass as two clean values (and keep the second whole)."""
    values = {"email": ["ann@example.com", f"bob@example.com\n{hidden}"],
              "phone": ["555-010-1234", f"555-010-1235\n{hidden}"]}[column]
    rows = [{"id": i, column: v} for i, v in enumerate(values * 3)]
    out, _ = mask_tool_result(bq_result(rows), {column: fs(cls)}, policy(**{cls: A.PARTIAL}),
                              may_hold_sensitive=True)
    assert hidden not in json.dumps(out)
    assert [r[column] for r in out["structuredContent"]["rows"]] == [
        r[column] for r in mask_rows(rows, {column: fs(cls)}, policy(**{cls: A.PARTIAL}),
                                     MaskingSummary())]


def test_rows_without_columns_keep_their_count() -> None:
    out, _ = mask_tool_result(bq_result([{}, {}, {}]), CLASSES, POLICY, may_hold_sensitive=False)
    assert out["structuredContent"]["rows"] == [{}, {}, {}]


def test_rows_of_different_shapes_still_masked_row_by_row() -> None:
    rows = [{"id": 1, "email": "ann@example.com"}, {"email": "bob@example.com", "id": 2},
            {"id": 3, "email": "cy@example.com", "notes": "call 555-010-1234"}]
    out, summary = mask_tool_result(bq_result(rows), {"email": fs("email")},
                                    policy(email=A.PARTIAL), may_hold_sensitive=True)
    assert out["structuredContent"]["rows"] == [
        {"id": 1, "email": "a***@example.com"}, {"email": "b***@example.com", "id": 2},
        {"id": 3, "email": "c***@example.com", "notes": "call [REDACTED:phone]"}]
    assert summary.counts[("email", "email", "partial")] == 3


@pytest.mark.parametrize(
    ("actions", "classes", "expected", "counted"),
    [
        # strictest wins: ALLOW < PARTIAL < TOKENIZE < REDACT < NULL
        ({"name": A.ALLOW, "email": A.REDACT}, ("name", "email"), "[REDACTED:email]", "redact"),
        ({"name": A.NULL, "email": A.REDACT}, ("name", "email"), None, "null"),
        (
            {"name": A.TOKENIZE, "email": A.PARTIAL},
            ("name", "email"),
            ref_token("name", "John <john@x.com>"),
            "tokenize",
        ),
        # partial on several classes is not meaningful: redact
        ({"name": A.PARTIAL, "email": A.PARTIAL}, ("name", "email"), "[REDACTED:email]", "redact"),
        ({"name": A.ALLOW, "email": A.PARTIAL}, ("name", "email"), "[REDACTED:email]", "redact"),
        ({"name": A.ALLOW, "email": A.ALLOW}, ("name", "email"), "John <john@x.com>", None),
        # a class missing from the policy gets the default action (REDACT)
        ({"name": A.ALLOW}, ("name", "email"), "[REDACTED:email]", "redact"),
    ],
)
def test_multi_class_strictest(
    actions: dict[str, MaskAction],
    classes: tuple[str, ...],
    expected: Any,
    counted: str | None,
) -> None:
    summary = MaskingSummary()
    p = MaskingPolicy(actions=actions, token_key=KEY, detect_content=False)
    out = mask_rows([{"summary": "John <john@x.com>"}], {"summary": fs(*classes)}, p, summary)
    assert out == [{"summary": expected}]
    assert [e["action"] for e in summary.as_list()] == ([counted] if counted else [])


def test_allowed_column_still_runs_detectors() -> None:
    out = mask_rows(
        [{"comment": "card 4111 1111 1111 1111"}],
        {"comment": fs("free_text")},
        policy(free_text=A.ALLOW, card=A.PARTIAL),
        MaskingSummary(),
    )
    assert out == [{"comment": "card **** **** **** 1111"}]


def test_detect_content_off() -> None:
    rows = [{"notes": "john@example.com", "email": "john@example.com"}]
    out = mask_rows(rows, {"email": fs("email")}, policy(detect=False), MaskingSummary())
    assert out == [{"notes": "john@example.com", "email": "[REDACTED:email]"}]


def test_detected_span_null_becomes_redact() -> None:
    out = mask_rows([{"n": "ssn 123-45-6789 ok"}], {}, policy(ssn=A.NULL), MaskingSummary())
    assert out == [{"n": "ssn [REDACTED:ssn] ok"}]


def test_non_string_values_of_classified_columns() -> None:
    rows = [{"card": 4111111111111111, "dob": dt.date(1990, 5, 17), "score": 42, "ok": True}]
    classes = {"card": fs("card"), "dob": fs("dob"), "score": fs("x"), "ok": fs("x")}
    out = mask_rows(rows, classes, policy(card=A.PARTIAL, dob=A.PARTIAL), MaskingSummary())
    assert out == [
        {
            "card": "************1111",
            "dob": "1990-**-**",
            "score": "[REDACTED:x]",
            "ok": "[REDACTED:x]",
        }
    ]


def test_nested_values() -> None:
    rows = [
        {
            "customer": {"name": "John Smith", "email": "john@example.com"},  # STRUCT, classified
            "payload": '{"email": "john@example.com", "n": 1}',  # TO_JSON_STRING, classified
            "history": [{"note": "mail amy@example.com"}, "call 555-123-4567"],  # unclassified
            "raw": '{"contact": "amy@example.com"}',  # unclassified JSON string
        }
    ]
    classes = {"customer": fs("name", "email"), "payload": fs("email")}
    summary = MaskingSummary()
    out = mask_rows(rows, classes, policy(email=A.PARTIAL, phone=A.REDACT), summary)
    assert out == [
        {
            "customer": "[REDACTED:name]",  # name (default REDACT) beats email (PARTIAL)
            "payload": "[REDACTED:email]",  # a JSON string is not a clean e-mail: redacted
            "history": [{"note": "mail a***@example.com"}, "call [REDACTED:phone]"],
            "raw": '{"contact": "a***@example.com"}',
        }
    ]
    # nested findings are counted under the innermost field name
    assert summary.counts[("note", "email", "partial")] == 1
    assert summary.counts[("history", "phone", "redact")] == 1


def test_large_int_checked_for_cards() -> None:
    out = mask_rows([{"n": 4111111111111111, "m": 1234567}], {}, policy(), MaskingSummary())
    assert out == [{"n": "[REDACTED:card]", "m": 1234567}]


def test_column_names_case_insensitive() -> None:
    out = mask_rows(
        [{"EMAIL": "john@example.com"}], {"email": fs("Email")}, policy(), MaskingSummary()
    )
    assert out == [{"EMAIL": "[REDACTED:email]"}]


def test_column_name_holding_pii_is_masked() -> None:
    # e.g. a PIVOT on e-mail addresses: the names of the output columns are data
    summary = MaskingSummary()
    out = mask_rows([{"john@example.com": 3, "amy@example.com": 4}], {}, policy(), summary)
    assert out == [{"[REDACTED:email]": 3, "[REDACTED:email]#2": 4}]
    assert "john" not in json.dumps(summary.as_list())


def test_summary_never_holds_raw_values() -> None:
    values = {
        "email": "secret.person@example.com",
        "phone": "+1 555 987 6543",
        "full_name": "Secret Person",
        "notes": "ssn 123-45-6789 card 4111111111111111 iban DE89370400440532013000",
    }
    classes = {"email": fs("email"), "phone": fs("phone"), "full_name": fs("name")}
    for action in A:
        summary = MaskingSummary()
        p = MaskingPolicy(actions={}, default_action=action, token_key=KEY)
        mask_rows([dict(values)] * 3, classes, p, summary)
        dumped = json.dumps(summary.as_list()) + repr(summary)
        for raw in [*values.values(), "123-45-6789", "4111111111111111", "Secret", "987"]:
            assert raw not in dumped
        if action is not A.ALLOW:
            assert summary.total >= 9


def test_summary_as_list_sorted() -> None:
    s = MaskingSummary()
    s.counts[("b", "email", "redact")] += 2
    s.counts[("a", "phone", "partial")] += 1
    s.counts[("a", "email", "redact")] += 1
    assert [(e["column"], e["class"]) for e in s.as_list()] == [
        ("a", "email"),
        ("a", "phone"),
        ("b", "email"),
    ]
    assert s.total == 4


# --------------------------------------------------------------------------- tool results

CLASSES = {"email": fs("email"), "full_name": fs("name"), "phone": fs("phone")}
POLICY = policy(email=A.PARTIAL, name=A.REDACT, phone=A.TOKENIZE)


def bq_result(rows: list[dict[str, Any]], *, indent: int | None = None) -> dict[str, Any]:
    """The shape our BigQuery MCP server returns for execute_sql."""
    payload = {
        "columns": [{"name": k, "type": "STRING"} for k in (rows[0] if rows else CLASSES)],
        "rows": rows,
        "row_count": len(rows),
        "total_rows": len(rows),
        "truncated": False,
        "total_bytes_processed": 0,
    }
    text = json.dumps(payload, indent=indent, separators=None if indent else (",", ":"))
    return {"content": [{"type": "text", "text": text}], "structuredContent": payload}


ROWS = [
    {"id": 1, "email": "john@example.com", "full_name": "John Smith", "phone": "555-123-4567",
     "notes": "ip 10.20.30.40"},
    {"id": 2, "email": "amy@example.org", "full_name": "Amy Lee", "phone": None,
     "notes": "prefers +44 20 7946 0958"},
]  # fmt: skip
MASKED_ROWS = [
    {"id": 1, "email": "j***@example.com", "full_name": "[REDACTED:name]",
     "phone": ref_token("phone", "555-123-4567"), "notes": "ip [REDACTED:ip]"},
    {"id": 2, "email": "a***@example.org", "full_name": "[REDACTED:name]", "phone": None,
     "notes": "prefers [REDACTED:phone]"},  # a found span is never tokenized
]  # fmt: skip


def test_structured_and_text_masked_consistently() -> None:
    result = bq_result(ROWS)
    original = copy.deepcopy(result)
    out, summary = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    assert result == original  # input untouched
    assert out["structuredContent"]["rows"] == MASKED_ROWS
    assert out["structuredContent"]["columns"] == original["structuredContent"]["columns"]
    text = out["content"][0]["text"]
    assert json.loads(text) == out["structuredContent"]
    assert '","' in text and '": ' not in text  # compact layout kept
    for raw in ("john@", "John Smith", "555-123-4567", "10.20.30.40", "7946"):
        assert raw not in text
        assert raw not in json.dumps(out["structuredContent"])
    # structured content and its text rendering hold the same cells: counted once
    assert summary.counts[("email", "email", "partial")] == 2
    assert summary.counts[("full_name", "name", "redact")] == 2
    assert summary.counts[("phone", "phone", "tokenize")] == 1
    assert summary.counts[("notes", "phone", "redact")] == 1  # a found span: not tokenized
    assert summary.counts[("notes", "ip", "redact")] == 1
    assert summary.total == 7


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_compact_text_one_cell_apart_from_structured_is_masked_on_its_own(
        ensure_ascii: bool) -> None:
    """A text written exactly like the structured content is masked as it (not parsed again);
    one cell apart, it is read and masked on its own: its own value never leaves."""
    rows = [{**ROWS[0], "full_name": "Zoë Smith"}, ROWS[1]]
    result = bq_result(rows)
    written = json.dumps(result["structuredContent"], separators=(",", ":"),
                         ensure_ascii=ensure_ascii)
    result["content"][0]["text"] = written
    out, _ = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    assert json.loads(out["content"][0]["text"]) == out["structuredContent"]
    other = written.replace("555-123-4567", "555-765-4321")
    result["content"][0]["text"] = other
    out, _ = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    text = json.loads(out["content"][0]["text"])
    assert text["rows"][0]["phone"] == ref_token("phone", "555-765-4321")
    assert out["structuredContent"]["rows"][0]["phone"] == ref_token("phone", "555-123-4567")
    assert "555-765-4321" not in out["content"][0]["text"]


def test_text_differing_from_structured_is_masked_on_its_own() -> None:
    result = bq_result(ROWS, indent=2)
    result["content"][0]["text"] = json.dumps({"rows": ROWS[:1]}, indent=2)
    out, _ = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    text = out["content"][0]["text"]
    assert json.loads(text) == {"rows": MASKED_ROWS[:1]}
    assert text.startswith('{\n  "rows"')  # indented layout kept


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (ROWS, MASKED_ROWS),  # a list of row objects
        ({"rows": ROWS}, {"rows": MASKED_ROWS}),
        ({"result": ROWS}, {"result": MASKED_ROWS}),  # rows under another wrapper
        (ROWS[0], MASKED_ROWS[0]),  # a single object
    ],
)
def test_text_only_json_variants(payload: Any, expected: Any) -> None:
    out, _ = mask_tool_result(
        {"content": [{"type": "text", "text": json.dumps(payload)}]},
        CLASSES,
        POLICY,
        may_hold_sensitive=True,
    )
    assert json.loads(out["content"][0]["text"]) == expected


def test_unchanged_text_is_returned_verbatim() -> None:
    text = '{ "rows" : [ {"id": 1, "city": "Paris"} ] }'
    out, summary = mask_tool_result(
        {"content": [{"type": "text", "text": text}]}, CLASSES, POLICY, may_hold_sensitive=True
    )
    assert out["content"][0]["text"] is text
    assert summary.total == 0


def test_csv_text() -> None:
    text = (
        "id,email,full_name,notes\r\n"
        '1,john@example.com,John Smith,"call 555-123-4567, evenings"\r\n'
        "2,amy@example.org,Amy Lee,\r\n"
    )
    out, summary = mask_tool_result(
        {"content": [{"type": "text", "text": text}]}, CLASSES, POLICY, may_hold_sensitive=True
    )
    assert out["content"][0]["text"] == (
        "id,email,full_name,notes\r\n"
        '1,j***@example.com,[REDACTED:name],"call [REDACTED:phone], evenings"\r\n'
        "2,a***@example.org,[REDACTED:name],\r\n"
    )
    assert summary.counts[("email", "email", "partial")] == 2
    assert summary.counts[("notes", "phone", "redact")] == 1


def test_tsv_and_single_known_column() -> None:
    tsv = "full_name\tcity\nJohn Smith\tParis"
    single = "email\njohn@example.com\namy@example.org\n"
    out, _ = mask_tool_result(
        {"content": [{"type": "text", "text": tsv}, {"type": "text", "text": single}]},
        CLASSES,
        POLICY,
        may_hold_sensitive=True,
    )
    assert out["content"][0]["text"] == "full_name\tcity\n[REDACTED:name]\tParis"
    assert out["content"][1]["text"] == "email\nj***@example.com\na***@example.org\n"


def test_markdown_table_text() -> None:
    text = (
        "Found 2 rows:\n"
        "| id | email            | full_name  |\n"
        "|----|------------------|------------|\n"
        "| 1  | john@example.com | John Smith |\n"
        "| 2  | amy@example.org  | Amy Lee    |\n"
        "Contact support@example.com for help."
    )
    out, _ = mask_tool_result(
        {"content": [{"type": "text", "text": text}]}, CLASSES, POLICY, may_hold_sensitive=True
    )
    assert out["content"][0]["text"] == (
        "Found 2 rows:\n"
        "| id | email            | full_name  |\n"
        "|----|------------------|------------|\n"
        "| 1  | j***@example.com | [REDACTED:name] |\n"
        "| 2  | a***@example.org | [REDACTED:name] |\n"
        "Contact s***@example.com for help."
    )


def test_psql_table_text() -> None:
    text = " id |   full_name\n----+------------\n  1 | John Smith\n(1 row)"
    out, _ = mask_tool_result(
        {"content": [{"type": "text", "text": text}]}, CLASSES, POLICY, may_hold_sensitive=True
    )
    assert out["content"][0]["text"] == (
        " id |   full_name\n----+------------\n  1 | [REDACTED:name]\n(1 row)"
    )


def test_structured_with_csv_text_counts_once() -> None:
    payload = {"rows": [{"email": "john@example.com"}, {"email": "amy@example.org"}]}
    result = {
        "structuredContent": payload,
        "content": [{"type": "text", "text": "email\njohn@example.com\namy@example.org"}],
    }
    out, summary = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    assert out["content"][0]["text"] == "email\nj***@example.com\na***@example.org"
    assert out["structuredContent"] == {
        "rows": [{"email": "j***@example.com"}, {"email": "a***@example.org"}]
    }
    assert summary.as_list() == [
        {"column": "email", "class": "email", "action": "partial", "count": 2}
    ]


def test_detect_content_off_in_results() -> None:
    p = policy(detect=False, email=A.PARTIAL)
    text = "contact john@example.com"
    out, summary = mask_tool_result(
        {"content": [{"type": "text", "text": text}]}, CLASSES, p, may_hold_sensitive=False
    )
    assert out["content"][0]["text"] == text
    assert summary.total == 0


def test_python_repr_text() -> None:
    text = str(ROWS)  # some servers return str(list_of_dicts)
    out, _ = mask_tool_result(
        {"content": [{"type": "text", "text": text}]}, CLASSES, POLICY, may_hold_sensitive=True
    )
    assert out["content"][0]["text"] == repr(MASKED_ROWS)


def test_plain_text() -> None:
    text = "Customer john@example.com (SSN 123-45-6789) paid with 4111 1111 1111 1111."
    out, summary = mask_tool_result(
        {"content": [{"type": "text", "text": text}]}, {}, POLICY, may_hold_sensitive=True
    )
    assert out["content"][0]["text"] == (
        "Customer j***@example.com (SSN [REDACTED:ssn]) paid with [REDACTED:card]."
    )
    assert summary.counts[("(text)", "email", "partial")] == 1


def test_plain_text_naming_sensitive_columns_is_withheld() -> None:
    # rows we cannot parse, naming a sensitive column: names would leak, so fail closed
    text = "email: john@example.com\nfull_name: John Smith"
    result = {"content": [{"type": "text", "text": text}]}
    with pytest.raises(UnmaskableResult, match="full_name") as info:
        mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    assert "John" not in str(info.value)
    # not sensitive: detectors only
    out, _ = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=False)
    assert out["content"][0]["text"] == "email: j***@example.com\nfull_name: John Smith"
    # a plain message that names no sensitive column passes
    ok = {"content": [{"type": "text", "text": "Query returned 0 rows."}]}
    assert mask_tool_result(ok, CLASSES, POLICY, may_hold_sensitive=True)[0] == ok


def test_zero_rows_with_declared_columns_passes() -> None:
    result = bq_result([])
    out, summary = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    assert out == result
    assert summary.total == 0


def test_declared_column_missing_from_rows_is_withheld() -> None:
    result = bq_result([{"id": 1}])
    result["structuredContent"]["columns"] = [{"name": "id"}, {"name": "email"}]
    result["content"] = []
    with pytest.raises(UnmaskableResult, match="email"):
        mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)


def test_positional_rows() -> None:
    payload = {
        "columns": ["id", "email", "full_name"],
        "rows": [[1, "john@example.com", "John Smith"], [2, None, "Amy Lee"]],
    }
    out, _ = mask_tool_result(
        {"structuredContent": payload}, CLASSES, POLICY, may_hold_sensitive=True
    )
    assert out["structuredContent"]["rows"] == [
        [1, "j***@example.com", "[REDACTED:name]"],
        [2, None, "[REDACTED:name]"],
    ]
    # a header row instead of declared columns
    matrix = [["id", "full_name"], [1, "John Smith"]]
    out, _ = mask_tool_result(
        {"structuredContent": {"rows": matrix}}, CLASSES, POLICY, may_hold_sensitive=True
    )
    assert out["structuredContent"]["rows"] == [["id", "full_name"], [1, "[REDACTED:name]"]]


def test_bigquery_rest_rows() -> None:
    payload = {
        "schema": {"fields": [{"name": "full_name"}, {"name": "n"}]},
        "rows": [{"f": [{"v": "John Smith"}, {"v": "1"}]}],
    }
    out, _ = mask_tool_result(
        {"structuredContent": payload}, CLASSES, POLICY, may_hold_sensitive=True
    )
    assert out["structuredContent"]["rows"] == [{"f": [{"v": "[REDACTED:name]"}, {"v": "1"}]}]


def test_rows_without_column_names_are_withheld() -> None:
    result = {"structuredContent": {"rows": [["John Smith", "x"]]}}
    with pytest.raises(UnmaskableResult, match="without column names"):
        mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    out, _ = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=False)
    assert out == result


def test_dict_of_scalars_and_list_structured() -> None:
    out, _ = mask_tool_result(
        {"structuredContent": {"email": "john@example.com", "count": 3}},
        CLASSES,
        POLICY,
        may_hold_sensitive=True,
    )
    assert out["structuredContent"] == {"email": "j***@example.com", "count": 3}
    out, _ = mask_tool_result(
        {"structuredContent": [{"full_name": "John Smith"}]},
        CLASSES,
        POLICY,
        may_hold_sensitive=True,
    )
    assert out["structuredContent"] == [{"full_name": "[REDACTED:name]"}]


def test_is_error_text_masked_by_detectors() -> None:
    result = {
        "content": [
            {"type": "text", "text": "BigQuery error: bad value 'john@example.com' in email"}
        ],
        "isError": True,
    }
    out, summary = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    assert out == {
        "content": [
            {"type": "text", "text": "BigQuery error: bad value 'j***@example.com' in email"}
        ],
        "isError": True,
    }
    assert summary.total == 1


def test_binary_blocks_withheld_when_sensitive() -> None:
    for block in (
        {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
        {"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"},
        {"type": "resource", "resource": {"uri": "file:///x.bin", "blob": "AAEC"}},
    ):
        result = {"content": [{"type": "text", "text": "see attachment"}, block]}
        with pytest.raises(UnmaskableResult, match=r"content\[1\]"):
            mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
        out, _ = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=False)
        assert out == result


def test_resource_text_and_link() -> None:
    result = {
        "content": [
            {
                "type": "resource",
                "resource": {
                    "uri": "bq://export/1.csv",
                    "mimeType": "text/csv",
                    "text": "email,n\njohn@example.com,1\n",
                },
            },
            {
                "type": "resource_link",
                "uri": "bq://export/2",
                "name": "export",
                "description": "rows for amy@example.org",
            },
        ]
    }
    out, _ = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    assert out["content"][0]["resource"] == {
        "uri": "bq://export/1.csv",
        "mimeType": "text/csv",
        "text": "email,n\nj***@example.com,1\n",
    }
    assert out["content"][1]["description"] == "rows for a***@example.org"
    assert out["content"][1]["uri"] == "bq://export/2"


@pytest.mark.parametrize(
    "result",
    [
        {"content": [{"type": "hologram", "data": "john@example.com"}]},
        {"content": [{"type": "text", "text": 42}]},
        {"content": ["john@example.com"]},
        {"content": {"type": "text", "text": "john@example.com"}},
    ],
)
def test_unknown_shapes(result: dict[str, Any]) -> None:
    with pytest.raises(UnmaskableResult):
        mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    out, _ = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=False)
    assert "john@example.com" not in json.dumps(out)  # detectors still ran where possible


def test_non_object_result() -> None:
    with pytest.raises(UnmaskableResult):
        mask_tool_result(["x"], CLASSES, POLICY, may_hold_sensitive=False)  # type: ignore[arg-type]


def test_meta_and_extra_keys() -> None:
    result = {
        "content": [],
        "_meta": {"requested_by": "john@example.com"},
        "extra": [{"full_name": "John Smith"}],
    }
    out, _ = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    assert out == {
        "content": [],
        "_meta": {"requested_by": "j***@example.com"},
        "extra": [{"full_name": "[REDACTED:name]"}],
    }


def test_input_never_mutated() -> None:
    result = bq_result([dict(r, nested={"email": "x@example.com"}) for r in ROWS])
    result["content"].append({"type": "text", "text": "id,email\n1,john@example.com"})
    result["_meta"] = {"k": ["amy@example.org"]}
    before = copy.deepcopy(result)
    out, _ = mask_tool_result(result, CLASSES, POLICY, may_hold_sensitive=True)
    assert result == before
    assert out != before
    assert out["structuredContent"]["rows"] is not result["structuredContent"]["rows"]


def test_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.masking import bench_masking

    figures = bench_masking(repeat=1)
    assert figures and all(v > 0 for v in figures.values())
    assert "mask_tool_result" in capsys.readouterr().out
