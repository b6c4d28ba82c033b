"""The database itself refuses to change audit records (NIST AU-9)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from audit.maintenance import WINDOW_TABLE, purge_window
from audit.models import AuditChainHead, AuditRecord
from audit.services import append_records

from .conftest import make_entry, sql

pytestmark = pytest.mark.django_db


def refused(statement: str, match: str = "append-only") -> None:
    # The savepoint keeps the test's transaction usable after the error on PostgreSQL.
    with pytest.raises(IntegrityError, match=match), transaction.atomic():
        sql(statement)


def window_rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {WINDOW_TABLE}")
        return cursor.fetchone()[0]


def test_raw_update_and_delete_are_refused_by_the_database() -> None:
    append_records([make_entry(i) for i in range(3)])
    refused("UPDATE audit_record SET actor = 'mallory' WHERE seq = 2")
    refused("UPDATE audit_record SET hash = prev_hash")
    refused("DELETE FROM audit_record WHERE seq = 3")
    refused("DELETE FROM audit_record")
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        AuditRecord.objects.filter(seq=1).update(actor="mallory")
    assert list(AuditRecord.objects.values_list("actor", flat=True)) == ["engineer"] * 3


def test_truncate_is_refused_on_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    append_records([make_entry()])
    refused("TRUNCATE audit_record")
    refused("TRUNCATE audit_chain_head")
    assert AuditRecord.objects.count() == 1


def test_the_chain_head_only_moves_forward() -> None:
    append_records([make_entry(i) for i in range(3)])
    refused("UPDATE audit_chain_head SET seq = 1")
    refused("UPDATE audit_chain_head SET hash = 'x'")
    refused("DELETE FROM audit_chain_head")
    assert AuditChainHead.objects.get().seq == 3


def test_a_purge_window_allows_delete_but_never_update() -> None:
    append_records([make_entry(i) for i in range(5)])
    with purge_window("retention test"):
        sql("DELETE FROM audit_record WHERE seq <= 2")
        refused("UPDATE audit_record SET actor = 'mallory' WHERE seq = 4")
    assert list(AuditRecord.objects.values_list("seq", flat=True)) == [3, 4, 5]
    assert window_rows() == 0
    refused("DELETE FROM audit_record WHERE seq = 3")


def test_a_failed_purge_closes_its_window() -> None:
    append_records([make_entry()])
    with pytest.raises(RuntimeError), purge_window():
        assert window_rows() == 1
        raise RuntimeError("purge failed")
    assert window_rows() == 0
    refused("DELETE FROM audit_record")
