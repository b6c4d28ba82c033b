"""Synthetic but realistic PII for the demo dataset, generated deterministically.

The same seed always yields the same rows (a seeded `random.Random`, no clock, no network),
so tests and screenshots are repeatable.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from google.cloud import bigquery

FIRST_NAMES = [
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Priya", "Wei", "Fatima", "Mateo", "Aisha", "Lukas", "Yuki", "Olga",
    "Kwame", "Sofia", "Ahmed", "Ingrid", "Diego", "Mei", "Omar", "Chloe",
]
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Patel", "Chen", "Nguyen", "Kowalski", "Müller",
    "Okafor", "Sato", "Ivanova", "Haddad", "O'Brien", "Rossi", "Schmidt", "Dubois",
]
STREETS = [
    "Maple", "Oak", "Pine", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park", "Main",
    "Sunset", "Ridge", "River", "Church", "Mill", "Highland",
]
STREET_KINDS = ["St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Way"]
CITIES = [
    ("Springfield", "IL", "62704"), ("Portland", "OR", "97205"), ("Austin", "TX", "78701"),
    ("Madison", "WI", "53703"), ("Denver", "CO", "80202"), ("Raleigh", "NC", "27601"),
    ("Boise", "ID", "83702"), ("Albany", "NY", "12207"), ("Tucson", "AZ", "85701"),
]
COUNTRIES = ["US"] * 7 + ["CA", "GB", "DE", "FR", "IN", "JP", "BR", "AU", "MX"]
EMAIL_DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com"]
CARD_PREFIXES = ["4", "51", "52", "53", "54", "55", "37", "6011"]
ORDER_STATUSES = ["pending", "paid", "shipped", "delivered", "refunded", "cancelled"]
EVENT_TYPES = ["login", "logout", "page_view", "add_to_cart", "checkout", "password_reset",
               "support_ticket"]
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class DemoTable:
    name: str
    description: str
    schema: list[bigquery.SchemaField]


def _field(name: str, kind: str, description: str, mode: str = "NULLABLE") -> bigquery.SchemaField:
    return bigquery.SchemaField(name, kind, mode=mode, description=description)


TABLES: list[DemoTable] = [
    DemoTable(
        "customers",
        "Customers of the demo shop (synthetic PII)",
        [
            _field("customer_id", "INT64", "Surrogate key", "REQUIRED"),
            _field("full_name", "STRING", "PII: person name"),
            _field("email", "STRING", "PII: email address"),
            _field("phone", "STRING", "PII: phone number"),
            _field("ssn", "STRING", "PII: US social security number"),
            _field("card_number", "STRING", "PII: payment card number (PAN)"),
            _field("date_of_birth", "DATE", "PII: date of birth"),
            _field("street_address", "STRING", "PII: postal address"),
            _field("ip_address", "STRING", "PII: last seen IP address"),
            _field("country", "STRING", "ISO 3166-1 alpha-2 country code"),
            _field("created_at", "TIMESTAMP", "When the account was created"),
        ],
    ),
    DemoTable(
        "orders",
        "Orders placed by customers",
        [
            _field("order_id", "INT64", "Surrogate key", "REQUIRED"),
            _field("customer_id", "INT64", "customers.customer_id"),
            _field("amount", "NUMERIC", "Order total in USD"),
            _field("status", "STRING", "Order status"),
            _field("ordered_at", "TIMESTAMP", "When the order was placed"),
        ],
    ),
    DemoTable(
        "events",
        "Customer activity events; payload is free-form JSON and may contain PII",
        [
            _field("event_id", "INT64", "Surrogate key", "REQUIRED"),
            _field("customer_id", "INT64", "customers.customer_id"),
            _field("event_type", "STRING", "Kind of event"),
            _field("payload", "STRING", "Free-form JSON; may contain PII"),
            _field("ts", "TIMESTAMP", "Event time"),
        ],
    ),
]


def luhn_complete(partial: str) -> str:
    """Append the Luhn check digit to `partial`."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return partial + str((10 - total % 10) % 10)


def _card(rng: random.Random) -> str:
    prefix = rng.choice(CARD_PREFIXES)
    length = 15 if prefix == "37" else 16
    digits = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    number = luhn_complete(digits)
    if length == 15:
        return f"{number[:4]} {number[4:10]} {number[10:]}"
    return " ".join(number[i : i + 4] for i in range(0, 16, 4))


def _ssn(rng: random.Random) -> str:
    # Valid-looking SSNs: area 001-665 or 667-899, group 01-99, serial 0001-9999.
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


def _phone(rng: random.Random) -> str:
    area, exchange, line = rng.randrange(201, 990), rng.randrange(200, 1000), rng.randrange(10000)
    return rng.choice([f"({area}) {exchange}-{line:04d}", f"+1-{area}-{exchange}-{line:04d}",
                       f"{area}-{exchange}-{line:04d}"])


def _ts(rng: random.Random, days: int) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=rng.randrange(days * 86400))


def _customer(rng: random.Random, customer_id: int) -> dict:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = f"{first}.{last}".lower().replace("'", "").replace("ü", "ue")
    city, state, zip_code = rng.choice(CITIES)
    dob = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(365 * 65))
    return {
        "customer_id": customer_id,
        "full_name": f"{first} {last}",
        "email": f"{local}{rng.randrange(100)}@{rng.choice(EMAIL_DOMAINS)}",
        "phone": _phone(rng),
        "ssn": _ssn(rng),
        "card_number": _card(rng),
        "date_of_birth": dob.isoformat(),
        "street_address": f"{rng.randrange(1, 9999)} {rng.choice(STREETS)} "
        f"{rng.choice(STREET_KINDS)}, {city}, {state} {zip_code}",
        "ip_address": f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}."
        f"{rng.randrange(1, 255)}",
        "country": rng.choice(COUNTRIES),
        "created_at": _ts(rng, 365).isoformat(),
    }


def generate(customers: int = 2000, seed: int = 20241) -> dict[str, list[dict]]:
    """All demo rows by table name; same arguments, same rows."""
    rng = random.Random(seed)
    people = [_customer(rng, i) for i in range(1, customers + 1)]
    orders: list[dict] = []
    events: list[dict] = []
    for person in people:
        for _ in range(rng.randrange(0, 6)):
            orders.append({
                "order_id": len(orders) + 1,
                "customer_id": person["customer_id"],
                "amount": f"{rng.randrange(100, 500000) / 100:.2f}",
                "status": rng.choice(ORDER_STATUSES),
                "ordered_at": _ts(rng, 700).isoformat(),
            })
        for _ in range(rng.randrange(0, 5)):
            kind = rng.choice(EVENT_TYPES)
            payload: dict = {"session": f"s{rng.randrange(10**8):08d}"}
            if kind in ("password_reset", "support_ticket"):
                # Free text that leaks PII, as real event payloads do: content detectors
                # have to find it, since no column classification covers it.
                payload["note"] = f"contact {person['email']} or {person['phone']}"
            if kind == "checkout":
                payload["card_last_used"] = person["card_number"]
            events.append({
                "event_id": len(events) + 1,
                "customer_id": person["customer_id"],
                "event_type": kind,
                "payload": json.dumps(payload, sort_keys=True),
                "ts": _ts(rng, 700).isoformat(),
            })
    return {"customers": people, "orders": orders, "events": events}


def batched(rows: list[dict], size: int) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
