"""The demo data is deterministic and looks like real PII (valid checksums and formats)."""

from __future__ import annotations

import hashlib
import json
import re

from bigquery_mcp.demo_data import generate
from tests.conftest import DATASET, TEST_CUSTOMERS


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    assert _digest(generate(customers=200, seed=7)) == _digest(generate(customers=200, seed=7))
    assert _digest(generate(customers=200, seed=7)) != _digest(generate(customers=200, seed=8))


def test_rows_look_like_real_pii() -> None:
    data = generate(customers=500)
    customers = data["customers"]
    assert len(customers) == 500 and len(data["orders"]) > 500 and len(data["events"]) > 500
    for c in customers:
        assert luhn_ok(c["card_number"]), c["card_number"]
        area, group, serial = (int(p) for p in c["ssn"].split("-"))
        assert 0 < area < 900 and area != 666 and group > 0 and serial > 0
        assert re.fullmatch(r"[a-z.'-]+\d+@[a-z.]+", c["email"]), c["email"]
    # Some event payloads leak PII in free text, for the content detectors to find.
    assert any("@" in e["payload"] for e in data["events"])


def test_seeded_emulator_holds_the_generated_rows(bigquery_client) -> None:  # type: ignore[no-untyped-def]
    expected = generate(customers=TEST_CUSTOMERS)
    rows = list(bigquery_client.query(
        f"SELECT customer_id, email, ssn FROM {DATASET}.customers ORDER BY customer_id").result())
    assert [(r.customer_id, r.email, r.ssn) for r in rows] == [
        (c["customer_id"], c["email"], c["ssn"]) for c in expected["customers"]]
    count = list(bigquery_client.query(f"SELECT COUNT(*) AS n FROM {DATASET}.orders").result())
    assert count[0].n == len(expected["orders"])
