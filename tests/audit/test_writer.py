"""The group-commit writer: futures resolve on commit, batches form under concurrency, and a
failure reaches every waiter. The writer's thread has its own connection, so these tests need
committed data (transactional_db) and drive the event loop with asyncio.run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from django.db import IntegrityError, connection

from audit.models import AuditRecord
from audit.verify import verify_chain
from audit.writer import AuditWriteError, AuditWriter, AuditWriterClosed, write_sync

from .conftest import make_entry, sql

pytestmark = pytest.mark.django_db(transaction=True)


def test_write_resolves_with_the_committed_record() -> None:
    async def scenario() -> tuple[list[AuditRecord], AuditWriter]:
        writer = AuditWriter()
        await writer.start()
        records = [await writer.write(make_entry(i)) for i in range(5)]  # concurrency 1
        await writer.stop()
        return records, writer

    records, writer = asyncio.run(scenario())
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert [r.request_id for r in records] == [f"req-{i}" for i in range(5)]
    assert AuditRecord.objects.get(seq=3).hash == records[2].hash
    assert (writer.stats.batches, writer.stats.records, writer.stats.largest_batch) == (5, 5, 1)
    assert verify_chain().ok


def test_concurrent_writes_share_commits() -> None:
    async def scenario() -> tuple[list[AuditRecord], AuditWriter]:
        writer = AuditWriter()
        await writer.start()
        records = await asyncio.gather(*(writer.write(make_entry(i)) for i in range(200)))
        await writer.stop()
        return list(records), writer

    records, writer = asyncio.run(scenario())
    # Queued in call order, appended in queue order.
    assert [r.seq for r in records] == list(range(1, 201))
    assert writer.stats.records == 200
    assert writer.stats.batches < 20
    assert writer.stats.largest_batch >= 50
    assert verify_chain().records_checked == 200


def test_batches_are_capped() -> None:
    async def scenario() -> AuditWriter:
        writer = AuditWriter(max_batch=16)
        await writer.start()
        await asyncio.gather(*(writer.write(make_entry(i)) for i in range(100)))
        await writer.stop()
        return writer

    writer = asyncio.run(scenario())
    assert writer.stats.largest_batch == 16
    assert writer.stats.batches >= 7
    assert AuditRecord.objects.count() == 100


@pytest.fixture
def refuse_inserts() -> Iterator[Callable[[], None]]:
    """Make every INSERT into audit_record fail in the database (a real failure, no mocks);
    yields the function that lifts it again (also called at teardown)."""
    if connection.vendor == "postgresql":
        sql("""CREATE FUNCTION test_refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'test: the disk is full'; END $$""")
        sql("""CREATE TRIGGER test_refuse_insert BEFORE INSERT ON audit_record
               FOR EACH STATEMENT EXECUTE FUNCTION test_refuse_insert()""")
        drop = [
            "DROP TRIGGER IF EXISTS test_refuse_insert ON audit_record",
            "DROP FUNCTION IF EXISTS test_refuse_insert()",
        ]
    else:
        sql("""CREATE TRIGGER test_refuse_insert BEFORE INSERT ON audit_record
               BEGIN SELECT RAISE(ABORT, 'test: the disk is full'); END""")
        drop = ["DROP TRIGGER IF EXISTS test_refuse_insert"]

    def lift() -> None:
        for statement in drop:
            sql(statement)

    try:
        yield lift
    finally:
        lift()


def test_a_failed_batch_fails_every_waiter_and_the_writer_recovers(
    refuse_inserts: Callable[[], None],
) -> None:
    def lift_from_another_thread() -> None:
        try:
            refuse_inserts()
        finally:
            connection.close()  # this thread's connection

    async def scenario() -> None:
        writer = AuditWriter(max_batch=8)
        await writer.start()
        outcomes = await asyncio.gather(
            *(writer.write(make_entry(i)) for i in range(30)), return_exceptions=True
        )
        assert len(outcomes) == 30
        assert all(isinstance(o, AuditWriteError) for o in outcomes)
        assert all("the disk is full" in str(o) for o in outcomes)
        assert writer.stats.failed_batches >= 4 and writer.stats.records == 0
        await asyncio.to_thread(lift_from_another_thread)
        record = await writer.write(make_entry(99))
        assert record.seq == 1  # nothing was half-written: no gap
        await writer.stop()

    asyncio.run(scenario())
    result = verify_chain()
    assert (result.ok, result.records_checked) == (True, 1)


def test_an_unrecordable_entry_fails_alone() -> None:
    circular: dict[str, object] = {}
    circular["loop"] = circular

    async def scenario() -> list[BaseException | AuditRecord]:
        writer = AuditWriter()
        await writer.start()
        entries = [make_entry(0), make_entry(1, arguments=circular), make_entry(2)]
        outcomes = await asyncio.gather(*(writer.write(e) for e in entries), return_exceptions=True)
        await writer.stop()
        return outcomes

    good, bad, also_good = asyncio.run(scenario())
    assert isinstance(bad, AuditWriteError) and isinstance(bad.__cause__, ValueError)
    assert isinstance(good, AuditRecord) and isinstance(also_good, AuditRecord)
    assert (good.seq, also_good.seq) == (1, 2)


def test_stop_drains_the_queue_and_cancelled_waiters_are_still_recorded() -> None:
    async def scenario() -> AuditWriter:
        writer = AuditWriter()
        await writer.start()
        tasks = [asyncio.create_task(writer.write(make_entry(i))) for i in range(50)]
        await asyncio.sleep(0)  # every task has queued its entry
        tasks[0].cancel()  # e.g. the client disconnected
        await writer.stop()
        assert all(t.done() for t in tasks)
        assert tasks[0].cancelled() and all(t.result().seq for t in tasks[1:])
        with pytest.raises(AuditWriterClosed):
            await writer.write(make_entry(99))
        return writer

    writer = asyncio.run(scenario())
    assert writer.stats.records == 50
    assert AuditRecord.objects.filter(request_id="req-0").exists()
    assert verify_chain().records_checked == 50


def test_write_sync_appends_one_record() -> None:
    first = write_sync(make_entry(event="portal.account_disabled", actor="admin"))
    second = AuditWriter.write_sync(make_entry(event="catalog.changed"))
    assert (first.seq, second.seq) == (1, 2) and second.prev_hash == first.hash


def test_no_maintenance_window_is_open_during_a_transactional_test() -> None:
    # The previous test's teardown opened one for pytest-django's flush (tests/conftest.py);
    # this test's setup must have closed it again.
    write_sync(make_entry())
    with pytest.raises(IntegrityError, match="append-only"):
        sql("DELETE FROM audit_record")
    assert AuditRecord.objects.count() == 1


@pytest.mark.embedded_only
@pytest.mark.django_db
def test_the_embedded_database_keeps_a_commit_through_a_power_loss() -> None:
    """SQLite in WAL mode with synchronous=NORMAL may lose the last commits when the machine
    (not the process) goes down: audit records the gateway already acted on. FULL syncs the
    log on every commit."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 2  # FULL
