"""Streaming the audit log to SIEMs, at least once, with a persisted cursor: real syslog (TCP and
TLS) and HTTP receivers started by the tests."""

from __future__ import annotations

import getpass
import json
import os
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from audit.config import audit_config
from audit.control_models import ExportCursor
from audit.export.config import build_exporter, build_sink
from audit.export.exporter import ExportBusy, Exporter, ExportError, LeaseLost
from audit.export.formatters import JsonFormatter, SyslogFormatter
from audit.export.sinks import DeliveryError, FileSink, SyslogTcpSink
from audit.maintenance import purge_window
from audit.models import AuditRecord
from audit.tasks import siem_export
from tests.conftest import make_user
from wardgate.typed_config import configured

from .conftest import sql
from .controls_helpers import chain
from .siem_receivers import HttpCollector, SyslogReceiver, make_self_signed_cert, wait_until

pytestmark = pytest.mark.django_db


def syslog_exporter(receiver: SyslogReceiver, batch_size: int = 5, **kwargs: Any) -> Exporter:
    sink = SyslogTcpSink(
        "siem", SyslogFormatter(JsonFormatter(), hostname="gw"), "127.0.0.1", receiver.port
    )
    return Exporter(sink, batch_size=batch_size, **kwargs)


def cursor(name: str = "siem") -> int:
    return ExportCursor.objects.get(name=name).seq


def assert_exactly_once(seqs: list[int], last: int) -> None:
    counts = Counter(seqs)
    assert sorted(counts) == list(range(1, last + 1)), (
        f"missing: {set(range(1, last + 1)) - set(counts)}"
    )
    assert {seq: n for seq, n in counts.items() if n > 1} == {}


def test_syslog_receiver_gets_every_record_exactly_once_across_an_exporter_restart() -> None:
    chain(23)
    with SyslogReceiver() as receiver:
        first = syslog_exporter(receiver)
        stats = first.run_once(max_batches=2)  # stopped mid-way, as by a restart
        first.close()
        assert (stats.batches, stats.records, stats.cursor) == (2, 10, 10)
        assert cursor() == 10
        assert wait_until(lambda: len(receiver.seqs()) == 10)
        chain(7, start=23)  # appended while the exporter was down
        second = syslog_exporter(receiver)  # a new instance: it knows only the saved cursor
        stats = second.run_once()
        second.close()
        assert (stats.batches, stats.records, stats.cursor) == (4, 20, 30)
        assert wait_until(lambda: len(receiver.seqs()) >= 30)
        assert wait_until(lambda: receiver.closed == 2)
    assert_exactly_once(receiver.seqs(), 30)
    assert receiver.connections == 2 and receiver.errors == []
    assert ExportCursor.objects.get(name="siem").delivered == 30


def test_a_crash_between_delivery_and_cursor_save_resends_exactly_that_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain(22)
    saves = {"n": 0}
    real_save = Exporter._save_cursor

    def crash_on_third(self: Exporter, seq: int, count: int) -> None:
        saves["n"] += 1
        if saves["n"] == 3:
            raise KeyboardInterrupt("process killed after delivering batch 3")
        real_save(self, seq, count)

    with SyslogReceiver() as receiver:
        crashing = syslog_exporter(receiver)
        monkeypatch.setattr(Exporter, "_save_cursor", crash_on_third)
        with pytest.raises(KeyboardInterrupt):
            crashing.run_once()
        crashing.close()
        monkeypatch.setattr(Exporter, "_save_cursor", real_save)
        assert cursor() == 10
        restarted = syslog_exporter(receiver)
        restarted.run_once()
        restarted.close()
        assert wait_until(lambda: len(receiver.seqs()) == 27)
    counts = Counter(receiver.seqs())
    assert sorted(counts) == list(range(1, 23))  # nothing lost
    # The duplicate window: exactly the one batch delivered but not yet acknowledged.
    assert sorted(seq for seq, n in counts.items() if n == 2) == [11, 12, 13, 14, 15]


def test_syslog_over_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert = make_self_signed_cert(tmp_path)
    chain(12)
    spec = {
        "name": "tls-siem",
        "type": "syslog",
        "host": "127.0.0.1",
        "tls": True,
        "ca_file": str(cert.cert_file),
        "server_name": "localhost",
        "body": "cef",
        "batch_size": 4,
    }
    with SyslogReceiver(cert=cert) as receiver:
        spec["port"] = receiver.port
        exporter = build_exporter(spec)
        exporter.run_once(max_batches=1)
        exporter.close()
        restarted = build_exporter(spec)
        restarted.run_once()
        restarted.close()
        assert wait_until(lambda: len(receiver.seqs()) >= 12)
        assert wait_until(lambda: receiver.closed == 2)
    assert_exactly_once(receiver.seqs(), 12)
    # One connection per exporter: TLS 1.3 session tickets are not mistaken for a hang-up.
    assert receiver.connections == 2 and receiver.errors == []
    assert all(" CEF:0|Wardgate|" in message for message in receiver.messages)


def test_tls_refuses_an_untrusted_receiver(tmp_path: Path) -> None:
    cert = make_self_signed_cert(tmp_path)
    chain(2)
    with SyslogReceiver(cert=cert) as receiver:
        exporter = build_exporter(
            {
                "name": "tls",
                "type": "syslog",
                "host": "127.0.0.1",
                "port": receiver.port,
                "tls": True,
            }
        )
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            exporter.run_once()
        exporter.close()
    assert cursor("tls") == 0


def test_a_receiver_that_closed_the_connection_gets_the_next_batch_on_a_new_one() -> None:
    chain(15)
    with SyslogReceiver(drop_after_frames=5) as receiver:
        exporter = syslog_exporter(receiver)
        exporter.run_once(max_batches=1)
        assert wait_until(lambda: receiver.closed == 1)  # the receiver restarted
        exporter.run_once()
        exporter.close()
        assert wait_until(lambda: len(receiver.seqs()) >= 15)
    assert_exactly_once(receiver.seqs(), 15)
    assert receiver.connections == 2


def test_http_sink_signs_each_batch_and_retries_a_refused_one() -> None:
    chain(10)
    calls = {"n": 0}

    def status(_: int) -> int:
        calls["n"] += 1
        return 503 if calls["n"] == 2 else 200

    with HttpCollector(secret="s3cret", status=status) as collector:
        spec = {
            "name": "collector",
            "type": "http",
            "url": collector.url,
            "hmac_secret": "s3cret",
            "batch_size": 4,
            "format": "ocsf",
        }
        exporter = build_exporter(spec)
        with pytest.raises(DeliveryError, match="HTTP 503"):
            exporter.run_once()
        assert cursor("collector") == 4  # the refused batch is not acknowledged
        exporter.run_once()
        exporter.close()
    assert collector.bad_signatures == 0
    assert [h["X-Wardgate-Seq"] for h in collector.headers] == ["1-4", "5-8", "9-10"]
    assert all(h["X-Wardgate-Signature"].startswith("sha256=") for h in collector.headers)
    assert [doc["metadata"]["sequence"] for doc in collector.lines()] == list(range(1, 11))
    assert {doc["class_uid"] for doc in collector.lines()} == {6003}


def test_http_sink_with_the_wrong_secret_is_refused_by_the_receiver() -> None:
    chain(3)
    with HttpCollector(secret="right") as collector:
        with configured(audit_config, siem_hmac_secret="wrong"):
            exporter = build_exporter({"name": "c", "type": "http", "url": collector.url})
        with pytest.raises(DeliveryError, match="HTTP 401"):
            exporter.run_once()
        exporter.close()
    assert collector.bad_signatures == 1 and cursor("c") == 0


def test_elasticsearch_bulk_accepts_already_indexed_records_only() -> None:
    chain(4)
    outcome = {"status": 409}

    def bulk(lines: list[dict[str, Any]]) -> dict[str, Any]:
        items = [
            {"create": {"_id": line["create"]["_id"], "status": 201}}
            for line in lines
            if "create" in line
        ]
        items[0]["create"]["status"] = outcome["status"]
        return {"errors": True, "items": items}

    with HttpCollector(secret="k", bulk_answer=bulk) as collector:
        spec = {
            "name": "es",
            "type": "http",
            "url": collector.url,
            "hmac_secret": "k",
            "format": "elasticsearch_bulk",
            "batch_size": 2,
        }
        exporter = build_exporter(spec)
        exporter.run_once(max_batches=1)  # 409: a re-sent record, fine
        assert cursor("es") == 2
        outcome["status"] = 400
        with pytest.raises(DeliveryError, match="bulk item failed"):
            exporter.run_once()
        exporter.close()
    assert cursor("es") == 2


def test_file_sink_appends_fsyncs_and_survives_rotation_and_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "siem" / "audit.jsonl"
    path.parent.mkdir()
    path.write_text('{"partial": ')  # a line torn by a crash
    chain(6)
    exporter = Exporter(FileSink("file", JsonFormatter(), path), batch_size=4)
    exporter.run_once(max_batches=1)
    os.rename(path, tmp_path / "siem" / "audit.jsonl.1")  # logrotate
    exporter.run_once()
    exporter.close()
    rotated = (tmp_path / "siem" / "audit.jsonl.1").read_text().splitlines()
    assert rotated[0] == '{"partial": '
    assert [json.loads(line)["seq"] for line in rotated[1:]] == [1, 2, 3, 4]
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [5, 6]


def test_a_second_exporter_is_kept_out_by_the_lease_until_it_expires() -> None:
    chain(6)
    with SyslogReceiver() as receiver:
        holder = syslog_exporter(receiver, lease_seconds=60)
        holder.acquire()
        other = syslog_exporter(receiver)
        with pytest.raises(ExportBusy, match="being exported by"):
            other.run_once()
        # The holder crashed: its lease runs out, the other takes over.
        ExportCursor.objects.filter(name="siem").update(
            lease_expires=ExportCursor.objects.get(name="siem").lease_expires - timedelta(hours=1)
        )
        assert other.run_once().records == 6
        with pytest.raises(LeaseLost):
            holder._save_cursor(6, 0)
        holder.close()
        other.close()
        assert wait_until(lambda: len(receiver.seqs()) == 6)


def test_records_purged_before_export_are_skipped_but_a_gap_stops_the_export() -> None:
    chain(10)
    with purge_window("retention"):
        sql("DELETE FROM audit_record WHERE seq <= 3")
    with SyslogReceiver() as receiver:
        exporter = syslog_exporter(receiver)
        stats = exporter.run_once()
        assert (stats.records, stats.purged_before_export) == (7, 3)
        assert wait_until(lambda: len(receiver.seqs()) == 7)
        chain(5, start=10)
        with purge_window("attacker"):
            sql("DELETE FROM audit_record WHERE seq = 13")
        with pytest.raises(ExportError, match="record 13 is missing"):
            exporter.run_once()
        exporter.close()
    assert cursor() == 12  # delivered up to the gap


def test_a_cursor_beyond_the_chain_head_stops_the_export() -> None:
    chain(3)
    ExportCursor.objects.create(name="siem", seq=9)
    with SyslogReceiver() as receiver:
        exporter = syslog_exporter(receiver)
        with pytest.raises(ExportError, match="chain head is at 3"):
            exporter.run_once()
        exporter.set_cursor(2, by="operator")
        # Record 3, then the record of the cursor move itself: the SIEM learns of the skip.
        assert exporter.run_once().records == 2
        exporter.close()


def test_audit_export_command_and_celery_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chain(7)
    path = tmp_path / "out.log"
    sinks = [{"name": "f", "type": "file", "path": str(path), "format": "syslog", "body": "ocsf"}]
    with configured(audit_config, siem_sinks=tuple(sinks)):
        call_command(
            "audit_export", "--sink", "f", "--once", "--batch-size", "3", "--max-batches", "1"
        )
        assert "exported 3 record(s) in 1 batch(es)" in capsys.readouterr().out
        assert siem_export() == {"f": {"records": 4, "cursor": 7}}
        call_command("audit_export", "--sink", "f", "--set-cursor", "5")
        assert cursor("f") == 5
        # Moving the cursor keeps records from the SIEM: who did it is on record.
        moved = AuditRecord.objects.get(event="audit.export_cursor_set")
        assert moved.actor == f"os:{getpass.getuser()}" and moved.auth_method == "cli"
        assert moved.detail == {"sink": "f", "from_seq": 7, "to_seq": 5}
        make_user("siem-admin", "admin")
        call_command("audit_export", "--sink", "f", "--set-cursor", "9", "--by", "siem-admin")
        assert AuditRecord.objects.filter(event="audit.export_cursor_set").latest("seq").actor \
            == "siem-admin"
        with pytest.raises(CommandError, match="no active account 'ghost'"):
            call_command("audit_export", "--sink", "f", "--set-cursor", "1", "--by", "ghost")
        assert cursor("f") == 9
        with pytest.raises(CommandError, match="no SIEM sink named 'nope'"):
            call_command("audit_export", "--sink", "nope", "--once")
    lines = path.read_text().splitlines()
    assert len(lines) == 7 and all(line.startswith("<110>1 ") for line in lines)


def test_sink_specs_are_checked() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="needs url"):
        build_sink({"name": "h", "type": "http"})
    with pytest.raises(ImproperlyConfigured, match="type must be one of"):
        build_sink({"name": "k", "type": "kafka"})
    with pytest.raises(ImproperlyConfigured, match="unknown SIEM format"):
        build_sink({"name": "f", "type": "file", "path": "/tmp/x", "format": "xml"})
