"""Content detectors: positives, validators, and the false positives they must avoid."""

from __future__ import annotations

import dataclasses
import time

import pytest

from policy.detectors import (
    DETECTABLE_CLASSES,
    Finding,
    find_pii,
    find_spans,
    iban_is_valid,
    luhn_is_valid,
)


def found(text: str) -> list[tuple[str, str]]:
    return [(f.cls, text[f.start : f.end]) for f in find_pii(text)]


# --------------------------------------------------------------------------- email


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("john.doe@example.com", "john.doe@example.com"),
        ("contact: John.Doe+tag@mail.example.co.uk, thanks", "John.Doe+tag@mail.example.co.uk"),
        ("mailto:o'brien@example.ie", "o'brien@example.ie"),
        ("<jane_doe-1@sub.example.org>", "jane_doe-1@sub.example.org"),
        ("'quoted@example.com'", "quoted@example.com"),
        ("josé@exemplo.com.br", "josé@exemplo.com.br"),
    ],
)
def test_email_found(text: str, expected: str) -> None:
    assert found(text) == [("email", expected)]


@pytest.mark.parametrize(
    "text",
    ["a@b", "user@localhost", "@example.com", "twitter @handle", "foo@bar.c0m", "x @ y.com"],
)
def test_email_not_found(text: str) -> None:
    assert [c for c, _ in found(text)] == []


# --------------------------------------------------------------------------- cards


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",  # Visa
        "4242 4242 4242 4242",
        "4012-8888-8888-1881",
        "5555555555554444",  # Mastercard
        "2223003122003222",  # Mastercard 2-series
        "378282246310005",  # Amex
        "6011111111111117",  # Discover
        "3530111333300000",  # JCB
        "30569309025904",  # Diners
    ],
)
def test_card_luhn_valid_found(number: str) -> None:
    assert found(f"card {number} on file") == [("card", number)]


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # Luhn fails
        "4242 4242 4242 4241",
        "0000000000000000",  # all one digit
        "4444444444444444",
        "1234567890123456789",  # long id, no issuer prefix
        "1700000000000",  # epoch milliseconds
        "4111111111111111.50",  # part of a decimal
        "ID4111111111111111",  # glued to a word
        "4111 1111-1111 1111",  # mixed separators
    ],
)
def test_card_rejected(text: str) -> None:
    assert [c for c, _ in found(text)] == []


def test_card_next_to_other_numbers() -> None:
    assert found("ref 12 4111 1111 1111 1111") == [("card", "4111 1111 1111 1111")]
    assert found("4111 1111 1111 1111 2024") == [("card", "4111 1111 1111 1111")]


def test_luhn() -> None:
    assert luhn_is_valid("79927398713")
    assert not luhn_is_valid("79927398710")


# --------------------------------------------------------------------------- SSN


@pytest.mark.parametrize("ssn", ["123-45-6789", "078-05-1120", "123 45 6789", "665-12-3456"])
def test_ssn_found(ssn: str) -> None:
    assert found(f"SSN {ssn}.") == [("ssn", ssn)]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",  # area 000
        "666-12-3456",  # area 666
        "900-12-3456",  # area 9xx
        "987-65-4321",
        "123-00-4567",  # group 00
        "123-45-0000",  # serial 0000
        "123456789",  # bare digits: too noisy
        "123-45 6789",  # mixed separators
        "ORD-123-45-6789",  # inside a longer id
    ],
)
def test_ssn_rejected(text: str) -> None:
    assert [c for c, _ in found(text)] == []


# --------------------------------------------------------------------------- phone


@pytest.mark.parametrize(
    "phone",
    [
        "+1 555 123 4567",
        "+15551234567",
        "+44 20 7946 0958",
        "+49 (30) 1234 5678",
        "+1.555.123.4567",
        "(555) 123-4567",
        "(555)123-4567",
        "555-123-4567",
        "555.123.4567",
        "1-800-555-1234",
    ],
)
def test_phone_found(phone: str) -> None:
    assert found(f"call {phone} today") == [("phone", phone)]


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-02",
        "2024-01-02 10:11:12",
        "2024-01-02T10:11:12.123456Z",
        "02/01/2024",
        "1234.56",
        "1,234,567.89",
        "+1234567890.50",  # signed amount
        "+12,345.67",
        "ORD-000123",
        "ORD-555-123-4567",
        "5551234567",  # bare 10 digits: ids, epoch seconds
        "epoch 1700000000",
        "+12345",  # too short for E.164
        "v10.5.123.4567",
    ],
)
def test_phone_false_positives(text: str) -> None:
    assert [c for c, _ in found(text) if c == "phone"] == []


# --------------------------------------------------------------------------- IBAN


@pytest.mark.parametrize(
    "iban",
    [
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "GB29NWBK60161331926819",
        "GB29 NWBK 6016 1331 9268 19",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "ES9121000418450200051332",
        "IT60X0542811101000000123456",
        "BE68539007547034",
        "CH9300762011623852957",
        "NO9386011117947",
        "MT84MALT011000012345MTLCAST001S",
    ],
)
def test_iban_found(iban: str) -> None:
    assert iban_is_valid(iban)
    assert found(f"pay to {iban} EUR") == [("iban", iban)]


@pytest.mark.parametrize(
    "text",
    [
        "DE89370400440532013001",  # checksum
        "DE88370400440532013000",  # check digits
        "DE8937040044053201300",  # too short for DE
        "DE893704004405320130000",  # too long for DE
        "ZZ89370400440532013000",  # unknown country
    ],
)
def test_iban_rejected(text: str) -> None:
    assert not iban_is_valid(text)
    assert [c for c, _ in found(text)] == []


def test_iban_lower_case_text_not_detected() -> None:
    assert iban_is_valid("de89370400440532013000")  # the validator is case-insensitive
    assert find_pii("de89370400440532013000") == []  # the detector wants the printed form


# --------------------------------------------------------------------------- IP


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from 10.0.0.1", "10.0.0.1"),
        ("host 192.168.1.20.", "192.168.1.20"),
        ("255.255.255.255", "255.255.255.255"),
        ("2001:db8::1", "2001:db8::1"),
        (
            "addr 2001:0db8:85a3:0000:0000:8a2e:0370:7334 end",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        ),
        ("::1", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("mapped ::ffff:10.0.0.1", "::ffff:10.0.0.1"),
    ],
)
def test_ip_found(text: str, expected: str) -> None:
    assert found(text) == [("ip", expected)]


@pytest.mark.parametrize(
    "text",
    [
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "v1.2.3.4",
        "010.001.001.001",
        "10:11:12",
        "ab:cd:ef:01:23:45",  # MAC address
        "std::vector",
        "a::b::c",
    ],
)
def test_ip_rejected(text: str) -> None:
    assert [c for c, _ in found(text)] == []


# --------------------------------------------------------------------------- general


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ok",
        "Widget",
        "Category 7",
        "2024-01-02 10:11:12",
        "2024-01-02T10:11:12+00:00",
        "10:11:12.5",
        "1234.56",
        "-0.000123",
        "1.5e10",
        "550e8400-e29b-41d4-a716-446655440000",
        "ORD-000123",
        "INV-2024-000042",
        "SKU 12345-678",
        "Order 12 of 2024, shipped 3 items",
        "Total: 1,234,567.89 USD",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert find_pii(text) == []


def test_findings_ordered_non_overlapping() -> None:
    text = (
        "mail a@example.com or +1 555 123 4567; card 4111111111111111, ssn 123-45-6789, "
        "iban DE89370400440532013000 from 10.1.2.3"
    )
    result = find_pii(text)
    assert [f.cls for f in result] == ["email", "phone", "card", "ssn", "iban", "ip"]
    assert all(a.end <= b.start for a, b in zip(result, result[1:], strict=False))
    assert [(s, e, c) for c, s, e in ((f.cls, f.start, f.end) for f in result)] == find_spans(text)


def test_overlap_prefers_longest() -> None:
    # the digits inside the e-mail are a phone-looking run; the e-mail wins
    assert found("555-123-4567@example.com") == [("email", "555-123-4567@example.com")]


def test_finding_is_frozen_with_slots() -> None:
    f = Finding("email", 0, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.cls = "x"  # type: ignore[misc]
    assert not hasattr(f, "__dict__")
    assert {f.cls for f in find_pii("a@example.com 10.0.0.1")} <= DETECTABLE_CLASSES


def test_no_catastrophic_backtracking() -> None:
    texts = [
        "a" * 100_000 + " @",
        "a." * 50_000 + "@x",
        "1 " * 50_000,
        "1-" * 50_000,
        ":" * 50_000 + "1",
        "A1" * 50_000,
    ]
    start = time.perf_counter()
    for text in texts:
        find_pii(text)
    assert time.perf_counter() - start < 5
