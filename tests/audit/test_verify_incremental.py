"""Faster verification without weaker guarantees: the raw-row hash path gives the same bytes as
`canonical_json`; incremental verification (from the signed verified-through marker) still
catches an edit after the marker, a recomputed edit before it, and a tampered marker; ranges
verified in separate processes judge the chain as one pass does."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit import verify as verify_module
from audit.chain import HASHED_FIELDS, canonical_json
from audit.chain_scan import SELECT_COLUMNS, CanonicalRows, select_sql
from audit.checkpoints import checkpoint_create, checkpoint_export
from audit.control_models import AuditVerifiedThrough
from audit.models import AuditRecord
from audit.services import append_records
from audit.verify import verify_chain, verify_log

from .conftest import CHILD, ExternalDatabase, make_entry, sql, update_trigger_dropped
from .controls_helpers import chain, rewrite_from, triggers_dropped

pytestmark = pytest.mark.django_db


def raw_rows() -> list[tuple[Any, ...]]:
    connection.ensure_connection()
    cursor = connection.connection.cursor()
    try:
        placeholder = "?" if connection.vendor == "sqlite" else "%s"
        cursor.execute(select_sql("audit_record", placeholder,
                                  at_as_text=connection.vendor == "sqlite"), (0, 10**12, 10**6))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def test_raw_rows_canonicalise_to_exactly_the_bytes_the_chain_hashed() -> None:
    append_records([
        make_entry(1, actor="Zoë \u2603 \x00 \ud800", arguments={"é": [1.5, -0.0, 1e-05, 1e+16,
                                                                         1e20, None, True]},
                   detail={"nested": {"b": 1, "a": "\u00ff\n\t\"\\"}, "big": 2**70}),
        make_entry(2, arguments=[], reasons=[], masking=[{"column": "email", "class": "pii"}],
                   detail={}, row_count=0, result_bytes=12345678901, upstream_latency_ms=3.25),
        make_entry(3, upstream_latency_ms=float("nan"), response_body="x" * 5000,
                   arguments={"when": datetime(2026, 3, 1, tzinfo=UTC)}),
    ])
    rows = raw_rows()
    assert len(rows) == 3
    canonical = CanonicalRows()
    for row in rows:
        stored = AuditRecord.objects.values(*HASHED_FIELDS).get(seq=row[SELECT_COLUMNS.index("seq")])
        assert canonical.body(row) == canonical_json(stored).encode("ascii")
    assert verify_chain().ok


def test_a_timestamp_without_microseconds_is_canonical_too() -> None:
    chain(2)
    # Stored without microseconds on SQLite ('2026-03-01 12:00:00'), which the fast path maps.
    rewrite_from(1, key="stolen", at=datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC))
    rows = raw_rows()
    stored = AuditRecord.objects.values(*HASHED_FIELDS).get(seq=1)
    assert CanonicalRows().body(rows[0]) == canonical_json(stored).encode("ascii")
    assert verify_chain().ok


def verified(**kwargs: Any) -> Any:
    return verify_log(incremental=True, **kwargs)


def checkpointed(n: int, start: int = 0) -> None:
    chain(n, start=start)
    checkpoint_create()
    checkpoint_export()


def test_incremental_verification_starts_at_the_signed_marker() -> None:
    checkpointed(6)
    first = verified()
    assert first.ok and first.mode == "full" and first.chain.records_checked == 6
    assert "no verified-through marker" in first.mode_reason
    assert first.marker_written is not None and first.marker_written.seq == 6
    chain(4, start=6)
    second = verified()
    assert second.ok, (second.chain.problem, second.problems)
    assert second.mode == "incremental" and second.verified_through.seq == 6
    assert second.chain.records_checked == 4 and second.chain.head_seq == 10
    assert second.marker_written is None  # no newer exported checkpoint to vouch for
    full = verify_log(incremental=False)
    assert full.ok and full.mode == "full" and full.chain.records_checked == 10


def test_an_edit_after_the_marker_is_named_in_incremental_mode() -> None:
    checkpointed(6)
    assert verified().ok
    chain(4, start=6)
    with triggers_dropped("audit_record_no_update"):
        sql("UPDATE audit_record SET decision = 'deny' WHERE seq = 8")
    result = verified()
    assert result.mode == "incremental" and not result.ok
    assert result.chain.first_broken_seq == 8 and "record 8 was altered" in result.chain.problem


def test_an_edit_after_the_marker_recomputed_without_the_key_is_named() -> None:
    checkpointed(6)
    assert verified().ok
    chain(4, start=6)
    rewrite_from(9, key=None, actor="mallory")
    result = verified()
    assert result.mode == "incremental" and not result.ok
    assert result.chain.first_broken_seq == 9


def test_a_recomputed_edit_before_the_marker_falls_back_to_full_and_names_the_record() -> None:
    checkpointed(6)
    chain(2, start=6)
    assert verified().ok  # marker at 6
    rewrite_from(3, key=None, decision="deny")  # every later hash recomputed, head moved
    result = verified()
    assert not result.ok and result.mode == "full"
    assert "record 6 no longer has the hash" in result.mode_reason
    assert result.chain.first_broken_seq == 3
    assert any("records 1..6 were edited or rewritten" in p for p in result.problems)


def test_a_recomputed_edit_before_the_marker_with_the_stolen_key_is_caught_by_the_checkpoint(
) -> None:
    checkpointed(6)
    assert verified().ok
    rewrite_from(2, actor="mallory")  # with the chain key: the chain alone verifies
    result = verified()
    assert not result.ok and result.mode == "full"
    assert any("records 1..6 were edited or rewritten" in p for p in result.problems)


@pytest.mark.parametrize("change", [
    "seq = 9", "hash = (CASE WHEN substr(hash, 1, 1) = 'a' THEN 'b' ELSE 'a' END) || substr(hash, 2)", "keyed_since = NULL",
    "signature = (SELECT signature FROM audit_checkpoint WHERE seq = 6)",
])
def test_a_tampered_marker_fails_the_verification_and_the_chain_is_verified_in_full(
    change: str,
) -> None:
    checkpointed(6)
    assert verified().ok
    checkpointed(4, start=6)  # checkpoint #10: a moved marker would name a real checkpoint
    sql(f"UPDATE audit_verified_through SET {change}")
    result = verified(record_marker=False)
    assert not result.ok and result.mode == "full"
    assert any("verified-through marker at record" in p and "forged or altered" in p
               for p in result.problems)
    assert result.chain.ok and result.chain.records_checked == 10
    with pytest.raises(CommandError, match="forged or altered"):
        call_command("audit_verify")


def test_a_marker_under_another_key_is_not_trusted(settings: Any) -> None:
    """Keys kept to verify old checkpoints may be public (the demo's): a marker signed with one
    of them, as anyone could, does not let verification skip anything."""
    from audit.signing import demo_signing_key, key_id, load_private_key, public_pem
    from audit.verified import marker_message

    checkpointed(6)
    assert verified().ok
    old = load_private_key(demo_signing_key("some public demo secret"))
    settings.WARDGATE_CHECKPOINT_VERIFY_KEYS = [public_pem(old.public_key())]
    row = AuditVerifiedThrough.objects.get()
    from audit.signing import sign

    row.key_id = key_id(old.public_key())
    row.signature = sign(old, marker_message(row.seq, row.hash, row.keyed_since, row.verified_at))
    row.save()
    chain(2, start=6)
    result = verified(record_marker=False)
    assert result.ok and result.mode == "full" and result.chain.records_checked == 8
    assert "not signed by the current checkpoint signing key" in result.mode_reason


def test_a_deleted_marker_only_costs_a_full_verification() -> None:
    checkpointed(6)
    assert verified().ok
    AuditVerifiedThrough.objects.all().delete()
    result = verified()
    assert result.ok and result.mode == "full" and result.chain.records_checked == 6


def test_a_checkpoint_missing_from_the_export_is_not_trusted() -> None:
    chain(6)
    checkpoint_create()
    first = verified()  # nothing exported yet: no marker
    assert first.ok and first.marker_written is None
    checkpoint_export()
    assert verified().marker_written is not None
    for path in Path(_export_dir()).glob("checkpoint-*.json"):
        path.unlink()  # (the directory is not on WORM storage in the tests)
    result = verified()
    assert result.mode == "full"
    assert "does not match a copy in the write-once export" in result.mode_reason


def _export_dir() -> str:
    from audit.config import audit_config

    return audit_config().checkpoint_export


def test_truncation_after_the_marker_is_still_caught() -> None:
    checkpointed(6)
    checkpointed(4, start=6)
    assert verified().ok  # marker at 10
    from .controls_helpers import truncate_and_rewind

    truncate_and_rewind(8)
    result = verified()
    assert not result.ok
    assert any("truncated" in p for p in result.problems)


# -- ranges in several processes ----------------------------------------------------------------


class InlineExecutor:
    """The process pool, run here: the in-memory test database is this connection's."""

    def __init__(self, max_workers: int, mp_context: Any) -> None:
        self.jobs: list[Any] = []

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def submit(self, fn: Any, job: Any) -> Any:
        result = verify_module._scan_here(*job[1:], connection)

        class Done:
            def result(self) -> Any:
                return result

        return Done()


@pytest.fixture
def inline_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_module, "_shareable", lambda using: True)
    monkeypatch.setattr(verify_module, "ProcessPoolExecutor", InlineExecutor)


def test_ranges_combine_like_one_pass(inline_ranges: None) -> None:
    chain(30)
    whole = verify_chain(workers=1)
    split = verify_chain(workers=3, min_range=5)
    assert split.processes == 3 and whole.processes == 1
    assert split == dataclasses.replace(whole, processes=3)
    assert split.ok and split.records_checked == 30


def test_an_edit_in_a_later_range_is_named(inline_ranges: None) -> None:
    chain(30)
    with triggers_dropped("audit_record_no_update"):
        sql("UPDATE audit_record SET actor = 'mallory' WHERE seq = 25")
    split = verify_chain(workers=3, min_range=5)
    assert split == dataclasses.replace(verify_chain(workers=1), processes=3)
    assert split.first_broken_seq == 25 and split.records_checked == 24


def test_a_legacy_record_in_a_later_range_after_keyed_ones_is_a_rewrite(
    inline_ranges: None,
) -> None:
    chain(30)
    rewrite_from(22, key=None, actor="mallory")  # 22.. recomputed in the unkeyed v1 format
    split = verify_chain(workers=3, min_range=5)
    assert not split.ok and split.first_broken_seq == 22
    assert "not keyed with the chain key" in split.problem
    assert split == dataclasses.replace(verify_chain(workers=1), processes=3)


def test_a_boundary_record_changed_between_reads_is_caught(
    inline_ranges: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain(30)
    real = verify_module._record_hashes

    def stale(seqs: list[int], using: str) -> dict[int, str]:
        return {seq: "0" * 64 for seq in real(seqs, using)}  # as if read before a rewrite

    monkeypatch.setattr(verify_module, "_record_hashes", stale)
    split = verify_chain(workers=3, min_range=5)
    assert not split.ok and split.first_broken_seq == 10
    assert "changed while it was being verified" in split.problem


@pytest.mark.django_db(transaction=True)
def test_audit_verify_splits_ranges_over_processes(external_db: ExternalDatabase) -> None:
    done = external_db.run(str(CHILD), "alpha", "240", "sync")
    assert done.returncode == 0, done.stderr[-3000:]
    args = ("manage.py", "audit_verify", "--full", "--workers", "3", "--min-range", "50")
    done = external_db.run(*args)
    assert done.returncode == 0, done.stderr
    assert "audit chain OK: 240 records verified" in done.stdout
    assert "recomputed by 3 processes" in done.stdout
    with update_trigger_dropped(external_db.execute, external_db.vendor):
        external_db.execute("UPDATE audit_record SET actor = 'mallory' WHERE seq = 170")
    done = external_db.run(*args)
    assert done.returncode == 1
    assert "audit chain BROKEN at record 170" in done.stderr
    assert "169 records verified before it" in done.stderr
