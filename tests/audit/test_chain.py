"""The chain format, normalisation round trips and appending (NIST AU-3: content of records)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from audit.chain import GENESIS_HASH, HASHED_FIELDS, canonical_json, compute_hash
from audit.models import AppendOnlyError, AuditChainHead, AuditRecord
from audit.services import AuditEntry, append_records, chain_key
from audit.verify import verify_chain

from .conftest import make_entry


def test_hashed_fields_cover_every_column_but_id_and_hash() -> None:
    columns = {f.name for f in AuditRecord._meta.concrete_fields}
    assert set(HASHED_FIELDS) == columns - {"id", "hash"}
    entry_fields = {f.name for f in dataclasses.fields(AuditEntry)}
    assert entry_fields == set(HASHED_FIELDS) - {"seq", "at", "prev_hash"}


def test_compute_hash_is_canonical() -> None:
    fields = {name: "" for name in HASHED_FIELDS}
    fields.update(
        seq=1,
        at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        prev_hash=GENESIS_HASH,
        arguments={"b": 1, "a": [1, 2]},
        row_count=None,
    )
    text = canonical_json(fields)
    assert '"at":"2026-01-02T03:04:05.000006+00:00"' in text
    assert '"arguments":{"a":[1,2],"b":1}' in text and " " not in text
    reordered = dict(reversed(list(fields.items())))
    reordered["arguments"] = {"a": [1, 2], "b": 1}
    assert compute_hash(GENESIS_HASH, reordered) == compute_hash(GENESIS_HASH, fields)
    assert compute_hash(GENESIS_HASH, {**fields, "hash": "ignored", "id": 9}) == compute_hash(
        GENESIS_HASH, fields
    )
    assert compute_hash(GENESIS_HASH, {**fields, "actor": "x"}) != compute_hash(
        GENESIS_HASH, fields
    )
    assert compute_hash("1" * 64, fields) != compute_hash(GENESIS_HASH, fields)


@pytest.mark.django_db
def test_appended_records_are_linked_and_numbered() -> None:
    first = append_records([make_entry(0)])
    more = append_records([make_entry(i) for i in range(1, 4)])
    records = first + more
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in zip(records, records[1:], strict=False):
        assert after.prev_hash == before.hash
        assert after.at >= before.at
    head = AuditChainHead.objects.get()
    assert (head.seq, head.hash) == (4, records[-1].hash)
    assert append_records([]) == []


@pytest.mark.django_db
def test_a_chain_of_many_records_verifies_in_small_batches() -> None:
    for start in range(0, 1200, 100):
        append_records(
            [
                make_entry(i, response_body="x" * (i % 50), row_count=i, upstream_latency_ms=i / 7)
                for i in range(start, start + 100)
            ]
        )
    result = verify_chain(batch_size=37)
    assert result.ok, result.problem
    assert result.records_checked == 1200
    assert result.head_seq == 1200
    assert result.head_hash == AuditRecord.objects.get(seq=1200).hash
    assert list(AuditRecord.objects.values_list("seq", flat=True)) == list(range(1, 1201))


@pytest.mark.django_db
def test_values_that_databases_change_on_a_round_trip_are_normalised_before_hashing() -> None:
    awkward_arguments = {
        "nul": "a\x00b",
        "surrogate": "\ud800x",
        1: "an int key",
        "big": 10**30,
        "huge_float": 1e20,
        "negative_zero": -0.0,
        "nan": float("nan"),
        "tiny": 5e-324,
        "tuple": (1, 2.5),
        "decimal": Decimal("1.10"),
        "unicode": "ünïcødé ✓ 𝄞",
        "nested": {"z": [1.5, {"y": None, "t": True}]},
    }
    [record] = append_records(
        [
            make_entry(
                arguments=awkward_arguments,
                sql_text="SELECT '\x00'",
                response_body="line\r\nnext\x00",
                user_agent="u" * 2000,
                upstream_latency_ms=12.345678,
                row_count=10**15,
                masking=[{"column": "email", "method": "tokenize"}],
                detail={"ratio": 0.1, "when": datetime(2026, 1, 1, tzinfo=UTC)},
            )
        ]
    )
    stored = AuditRecord.objects.values(*HASHED_FIELDS, "hash").get(seq=record.seq)
    assert stored == {name: getattr(record, name) for name in (*HASHED_FIELDS, "hash")}
    assert compute_hash(stored["prev_hash"], stored, chain_key()) == stored["hash"]
    arguments = stored["arguments"]
    assert arguments["nul"] == "a\ufffdb" and arguments["1"] == "an int key"
    assert arguments["huge_float"] == 10**20 and arguments["nan"] == "nan"
    assert arguments["tuple"] == [1, 2.5] and arguments["decimal"] == "1.10"
    assert stored["user_agent"] == "u" * 512
    assert stored["upstream_latency_ms"] == 12.346
    assert stored["sql_text"] == "SELECT '\ufffd'"
    assert verify_chain().ok


@pytest.mark.django_db
def test_entries_that_cannot_be_recorded_are_refused_before_anything_is_written() -> None:
    circular: dict[str, object] = {}
    circular["self"] = circular
    with pytest.raises(ValueError):
        append_records([make_entry(0), make_entry(1, arguments=circular)])
    with pytest.raises(ValueError, match="event"):
        append_records([AuditEntry(event="")])
    assert not AuditRecord.objects.exists()


@pytest.mark.django_db
def test_the_orm_refuses_to_save_or_delete_a_record() -> None:
    [record] = append_records([make_entry()])
    record.actor = "mallory"
    with pytest.raises(AppendOnlyError, match="append-only"):
        record.save()
    with pytest.raises(AppendOnlyError, match="append-only"):
        record.delete()
    with pytest.raises(AppendOnlyError):
        AuditRecord(seq=99, event="x", at=datetime.now(UTC), prev_hash="", hash="").save()


def test_plain_json_values_normalise_exactly_as_the_round_trip_would() -> None:
    """Entries made only of JSON types skip the dumps/loads pass: the result must be what the
    pass gives (types included: 1e20 becomes an int, -0.0 a 0.0, NaN a string)."""
    import json
    import random

    from audit.chain import _stable, normalise_json

    rng = random.Random(13)
    atoms = ["", "plain", "a\x00b", "\ud800x", "ünï ✓ 𝄞", 0, -7, 10**30, 2**64 + 1, True, False,
             None, 0.1, -0.0, 1e20, 1e-300, 5e-324, float("nan"), float("inf"), 3.0]

    def value(depth: int) -> object:
        pick = rng.random()
        if depth > 4 or pick < 0.5:
            return rng.choice(atoms)
        if pick < 0.75:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {rng.choice(["k", "\x00", "\udfff", "ключ", str(rng.random())]): value(depth + 1)
                for _ in range(rng.randrange(4))}

    def exact(v: object) -> str:
        return json.dumps(v, sort_keys=True, allow_nan=True)

    for _ in range(3000):
        v = value(0)
        assert exact(normalise_json(v)) == exact(_stable(json.loads(json.dumps(v, default=str))))
    deep: list[object] = []
    node = deep
    for _ in range(200):  # deeper than the plain walk goes: the round trip handles it
        node.append([])
        node = node[0]  # type: ignore[assignment]
    assert normalise_json(deep) == deep
