"""verify_chain and `manage.py audit_verify` find tampering that went around the triggers."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from audit.chain import HASHED_FIELDS, compute_hash
from audit.maintenance import purge_window
from audit.models import AuditRecord
from audit.services import append_records, chain_key
from audit.verify import verify_chain

from .conftest import make_entry, sql, update_trigger_dropped

pytestmark = pytest.mark.django_db


def chain(n: int) -> list[AuditRecord]:
    return append_records([make_entry(i) for i in range(n)])


def rewrite(statement: str, params: list[object] | None = None) -> None:
    """UPDATE a record as someone able to drop the append-only trigger would."""
    with update_trigger_dropped(sql, connection.vendor):
        sql(statement, params)


def stored(seq: int) -> dict[str, object]:
    return AuditRecord.objects.values(*HASHED_FIELDS, "hash").get(seq=seq)


def test_an_intact_chain_verifies() -> None:
    chain(10)
    result = verify_chain()
    assert (result.ok, result.records_checked, result.first_broken_seq) == (True, 10, None)
    assert verify_chain().ok  # reading is side-effect free


def test_an_empty_log_verifies() -> None:
    result = verify_chain()
    assert (result.ok, result.records_checked, result.head_seq) == (True, 0, 0)


@pytest.mark.parametrize("batch_size", [1, 4, 5000])
def test_an_edited_record_is_named(batch_size: int) -> None:
    chain(10)
    rewrite("UPDATE audit_record SET actor = 'mallory' WHERE seq = 8")
    result = verify_chain(batch_size=batch_size)
    assert not result.ok
    assert result.first_broken_seq == 8
    assert "altered" in (result.problem or "")
    assert result.records_checked == 7


def test_an_edited_record_rehashed_without_the_chain_key_is_named() -> None:
    chain(10)
    forged = {**stored(5), "actor": "mallory"}
    rewrite("UPDATE audit_record SET actor = 'mallory', hash = %s WHERE seq = 5",
            [compute_hash(str(forged["prev_hash"]), forged)])  # the legacy, unkeyed format
    result = verify_chain()
    assert (result.ok, result.first_broken_seq) == (False, 5)
    assert "not keyed" in (result.problem or "")


def test_an_edited_record_rehashed_with_a_stolen_key_breaks_the_next_link() -> None:
    chain(10)
    forged = {**stored(5), "actor": "mallory"}
    forged_hash = compute_hash(str(forged["prev_hash"]), forged, chain_key())
    rewrite("UPDATE audit_record SET actor = 'mallory', hash = %s WHERE seq = 5", [forged_hash])
    result = verify_chain()
    assert (result.ok, result.first_broken_seq) == (False, 6)
    assert "does not link to record 5" in (result.problem or "")


def test_a_record_replaced_with_a_forged_hash_is_named() -> None:
    records = chain(10)
    original = records[3]
    with purge_window("attacker"):
        sql("DELETE FROM audit_record WHERE seq = 4")
    fields = {name: getattr(original, name) for name in HASHED_FIELDS}
    fields.update(actor="mallory", decision="deny")
    AuditRecord.objects.bulk_create([AuditRecord(**fields, hash="f" * 64)])
    result = verify_chain()
    assert (result.ok, result.first_broken_seq) == (False, 4)
    assert "altered" in (result.problem or "")


def test_a_missing_record_is_a_gap() -> None:
    chain(10)
    with purge_window("attacker"):
        sql("DELETE FROM audit_record WHERE seq = 6")
    result = verify_chain(batch_size=3)
    assert (result.ok, result.first_broken_seq) == (False, 6)
    assert result.problem == "record 6 is missing (the next record is 7)"


def test_a_deleted_tail_is_detected_from_the_chain_head() -> None:
    chain(10)
    with purge_window("attacker"):
        sql("DELETE FROM audit_record WHERE seq >= 8")
    result = verify_chain()
    assert (result.ok, result.first_broken_seq, result.records_checked) == (False, 8, 7)
    assert "deleted tail" in (result.problem or "")
    assert "8..10" in (result.problem or "")


def test_a_record_inserted_beyond_the_head_is_detected() -> None:
    records = chain(3)
    fields = {name: getattr(records[-1], name) for name in HASHED_FIELDS}
    fields.update(seq=4, prev_hash=records[-1].hash, actor="mallory")
    AuditRecord.objects.bulk_create(
        [AuditRecord(**fields, hash=compute_hash(records[-1].hash, fields, chain_key()))]
    )
    result = verify_chain()
    assert (result.ok, result.first_broken_seq) == (False, 4)
    assert "beyond the chain head" in (result.problem or "")


def test_a_purged_prefix_verifies_from_its_anchor() -> None:
    records = chain(10)
    with purge_window("retention"):
        sql("DELETE FROM audit_record WHERE seq <= 4")
    assert verify_chain().first_broken_seq == 1
    result = verify_chain(anchor=(4, records[3].hash))
    assert (result.ok, result.records_checked) == (True, 6)
    assert not verify_chain(anchor=(4, records[2].hash)).ok


def test_audit_verify_command_reports_ok_and_broken(capsys: pytest.CaptureFixture[str]) -> None:
    chain(4)
    call_command("audit_verify")
    assert "audit chain OK: 4 records verified" in capsys.readouterr().out
    rewrite("UPDATE audit_record SET sql_text = 'SELECT 99' WHERE seq = 2")
    with pytest.raises(CommandError) as broken:
        call_command("audit_verify", "--batch-size", "2")
    assert broken.value.returncode == 1
    assert "BROKEN at record 2" in str(broken.value)
    assert "altered" in str(broken.value)


def test_no_maintenance_window_is_open_during_a_test() -> None:
    # Runs after transactional tests (test_multiprocess.py), whose teardown opens a window
    # for pytest-django's flush; the shared fixture must have closed it.
    chain(2)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        sql("DELETE FROM audit_record")
