"""Retention (NIST AU-11): purge only what a signed checkpoint and an exported evidence pack
cover, never under a legal hold, record the purge, and keep the log verifiable afterwards."""

from __future__ import annotations

import getpass
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection

from audit.checkpoints import checkpoint_create, checkpoint_export, verify_keys
from audit.config import audit_config
from audit.control_models import AuditCheckpoint, LegalHold
from audit.maintenance import purge_window
from audit.models import AuditRecord
from audit.retention import (
    LEGAL_HOLD_PLACED,
    LEGAL_HOLD_RELEASED,
    RetentionError,
    covered_by_exported_pack,
    legal_hold_place,
    legal_hold_release,
    retention_purge,
)
from audit.services import AuditEntry, append_records
from audit.verify import PURGE_EVENT, verify_log
from wardgate.typed_config import configured

from .conftest import sql
from .controls_helpers import chain, triggers_dropped

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(days=400)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Stamps appended records with a time the test chooses."""
    clock = Clock()
    monkeypatch.setattr("audit.services.timezone", types.SimpleNamespace(now=clock))
    return clock


@pytest.fixture
def packs(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Evidence packs (reports/) stand-in: records up to `covered["upto"]` are exported."""
    covered = {"upto": 10**9}
    monkeypatch.setattr(
        "audit.retention.covered_by_exported_pack",
        lambda seq, using="default": seq <= covered["upto"],
    )
    return covered


def history(clock: Clock, *, export: bool = True) -> None:
    """Records 1..5 (day 0, checkpoint at 5), 6..10 (day 10, checkpoint at 10), 11..12 (day
    400, no checkpoint)."""
    chain(5)
    checkpoint_create()
    clock.now = T0 + timedelta(days=10)
    chain(5, start=5)
    checkpoint_create()
    if export:
        checkpoint_export()  # to the write-once directory every deployment now has
    clock.now = LATER
    chain(2, start=10)


def seqs() -> list[int]:
    return list(AuditRecord.objects.values_list("seq", flat=True))


def test_purges_up_to_the_newest_covering_checkpoint_and_records_itself(
    clock: Clock, packs: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    history(clock)
    result = retention_purge(now=LATER, retention_days=365)
    assert (result.purged, result.from_seq, result.to_seq) == (10, 1, 10)
    assert result.skipped is None and result.export_error is None
    assert seqs() == [11, 12, 13]
    purge = AuditRecord.objects.get(seq=13)
    assert purge.event == PURGE_EVENT and purge.decision == "info"
    anchor = AuditCheckpoint.objects.get(seq=10)
    assert purge.detail["from_seq"] == 1 and purge.detail["to_seq"] == 10
    assert purge.detail["count"] == 10 and purge.detail["anchor_hash"] == anchor.hash
    assert purge.detail["retention_days"] == 365
    # A checkpoint covers the purge record, made in the same transaction.
    assert result.purge_record_seq == 13 and result.checkpoint_seq == 13
    assert AuditCheckpoint.objects.filter(seq=13).exists()

    verified = verify_log()
    assert verified.ok, (verified.chain.problem, verified.problems)
    assert verified.anchor == (10, anchor.hash) and verified.purge_record_seq == 13
    assert verified.chain.records_checked == 3
    call_command("audit_verify", "--full")
    out = capsys.readouterr().out
    assert "audit chain OK: 3 records verified" in out
    assert "records 1..10 purged by retention (purge record #13)" in out
    # The verifications above left a signed marker at checkpoint #13: by default the next one
    # starts there (and still checks the anchor and the purge record).
    call_command("audit_verify")
    out = capsys.readouterr().out
    assert "audit chain OK: 0 records verified" in out and "mode: incremental" in out
    assert "records 1..10 purged by retention (purge record #13)" in out


def test_only_records_older_than_the_cutoff_are_purged(clock: Clock, packs: dict[str, int]) -> None:
    history(clock)
    # Day 10's records are younger than the cutoff: only the checkpoint at 5 qualifies.
    result = retention_purge(now=T0 + timedelta(days=370), retention_days=365)
    assert (result.from_seq, result.to_seq) == (1, 5)
    assert seqs()[0] == 6
    assert retention_purge(now=T0 + timedelta(days=370), retention_days=365).purged == 0
    assert verify_log().ok


def test_nothing_is_purged_beyond_exported_evidence_packs_or_checkpoints(
    clock: Clock, packs: dict[str, int]
) -> None:
    history(clock)
    packs["upto"] = 7  # a pack covers up to record 7: only the checkpoint at 5 qualifies
    assert retention_purge(now=LATER, retention_days=365).to_seq == 5
    packs["upto"] = 9
    skipped = retention_purge(now=LATER, retention_days=365)
    assert skipped.purged == 0
    assert skipped.skipped == "records 6..10 are not (all) in an exported evidence pack yet"
    packs["upto"] = 10**9
    with purge_window("test"):
        sql("DELETE FROM audit_checkpoint WHERE seq = 10")
    skipped = retention_purge(now=LATER, retention_days=365)
    assert skipped.skipped == "no signed checkpoint covers records 6..10 yet"
    assert seqs()[0] == 6


def test_a_legal_hold_stops_purging_until_released(clock: Clock, packs: dict[str, int]) -> None:
    history(clock)
    hold = legal_hold_place(reason="litigation 2026-17", created_by="counsel")
    assert retention_purge(now=LATER, retention_days=365).skipped == (
        f"legal hold #{hold.pk} is active: nothing is purged"
    )
    assert seqs()[0] == 1
    legal_hold_release(hold, released_by="counsel")
    assert not LegalHold.objects.get().active
    checkpoint_create()
    assert retention_purge(now=LATER, retention_days=365).purged > 0
    events = list(
        AuditRecord.objects.filter(event__startswith="audit.legal_hold").values_list(
            "event", "actor", "detail"
        )
    )
    assert events == [
        (LEGAL_HOLD_PLACED, "counsel", {"legal_hold_id": hold.pk, "reason": "litigation 2026-17"}),
        (
            LEGAL_HOLD_RELEASED,
            "counsel",
            {"legal_hold_id": hold.pk, "reason": "litigation 2026-17"},
        ),
    ]
    assert verify_log().ok


def test_a_legal_hold_cannot_be_deleted_outside_a_maintenance_window() -> None:
    legal_hold_place(reason="audit", created_by="counsel")
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        sql("DELETE FROM audit_legal_hold")


def test_repeated_purges_keep_the_log_verifiable(clock: Clock, packs: dict[str, int]) -> None:
    history(clock)
    retention_purge(now=LATER, retention_days=365)
    clock.now = LATER + timedelta(days=1)
    chain(3, start=20)
    checkpoint_create()
    checkpoint_export()
    clock.now = LATER + timedelta(days=500)
    chain(1, start=30)
    second = retention_purge(now=clock.now, retention_days=365)
    # The first purge record (13) goes too; the newest one anchors the log.
    assert (second.from_seq, second.to_seq) == (11, 16)
    assert seqs() == [17, 18]
    verified = verify_log()
    assert verified.ok, verified.problems
    assert verified.anchor[0] == 16 and verified.purge_record_seq == 18


def test_a_log_that_does_not_verify_is_not_purged(clock: Clock, packs: dict[str, int]) -> None:
    history(clock)
    with triggers_dropped("audit_record_no_update"):
        sql("UPDATE audit_record SET actor = 'mallory' WHERE seq = 3")
    with pytest.raises(RetentionError, match="record 3 was altered"):
        retention_purge(now=LATER, retention_days=365)
    assert seqs()[0] == 1


def test_a_prefix_deleted_by_someone_else_is_not_taken_for_a_purge(
    clock: Clock, packs: dict[str, int]
) -> None:
    history(clock)
    with purge_window("attacker"):
        sql("DELETE FROM audit_record WHERE seq <= 3")
    problems = verify_log().problems
    assert any("records 1..3 are missing and no signed checkpoint" in p for p in problems)

    # Deleting up to a checkpoint and appending a look-alike purge record (the chain is
    # unkeyed) still fails: no checkpoint signed by the key covers the forged purge record.
    with purge_window("attacker"):
        sql("DELETE FROM audit_record WHERE seq <= 5")
    anchor = AuditCheckpoint.objects.get(seq=5)
    append_records(
        [AuditEntry(event=PURGE_EVENT, detail={"to_seq": 5, "anchor_hash": anchor.hash})]
    )
    problems = verify_log().problems
    assert problems[0] == (
        "the purge record #13 is not covered by a signed checkpoint (latest: "
        "#10); run audit_checkpoint --export")
    # ...and the windows the deletions needed are on record, unexplained by any purge.
    assert sum("(attacker) was opened and no purge record accounts for it" in p
               for p in problems) == 2


def test_with_an_export_location_only_exported_checkpoints_count(
    clock: Clock, packs: dict[str, int], tmp_path: Path
) -> None:
    with configured(audit_config, checkpoint_export=str(tmp_path)):
        history(clock, export=False)
        assert retention_purge(now=LATER, retention_days=365).skipped.startswith(
            "no signed checkpoint covers"
        )
        checkpoint_export()
        result = retention_purge(now=LATER, retention_days=365)
        assert result.to_seq == 10 and result.export_error is None
        # The checkpoint covering the purge record was exported right after the purge.
        assert (tmp_path / "checkpoint-00000000000000000013.json").exists()
        verified = verify_log(checkpoints_from=str(tmp_path))
        assert verified.ok, verified.problems


def test_dry_run_and_the_commands(
    clock: Clock, packs: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    history(clock)
    with configured(audit_config, retention_days=1):
        # Records are stamped by the fake clock; the commands use the real one, years later.
        call_command("audit_retention", "--dry-run")
        assert "would purge records 1..10 (10)" in capsys.readouterr().out
        assert seqs()[0] == 1
        get_user_model().objects.create_user("counsel")
        call_command("audit_legal_hold", "--place", "regulator inquiry", "--by", "counsel")
        call_command("audit_retention")
        assert "nothing purged: legal hold #" in capsys.readouterr().out
        hold = LegalHold.objects.get()
        call_command("audit_legal_hold", "--release", str(hold.pk), "--by", "counsel")
        call_command("audit_legal_hold")
        assert f"#{hold.pk} released" in capsys.readouterr().out
        checkpoint_create()
        checkpoint_export()
        call_command("audit_retention")
        assert "purged records 1..14 (14); recorded as #15" in capsys.readouterr().out
        # Who ran it is recorded: --by names an account, else the OS user.
        purge = AuditRecord.objects.get(seq=15)
        assert purge.actor == f"os:{getpass.getuser()}" and purge.auth_method == "cli"
    with pytest.raises(CommandError, match="--by: no active account 'nobody'"):
        call_command("audit_legal_hold", "--place", "x", "--by", "nobody")
    call_command("audit_legal_hold", "--place", "x")
    assert LegalHold.objects.filter(released_at__isnull=True).get().created_by == \
        f"os:{getpass.getuser()}"


# --- the evidence pack hook --------------------------------------------------------------------


@pytest.fixture
def no_reports_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("audit.retention._evidence_pack_model", None)  # as without reports
    yield


def test_without_evidence_packs_nothing_counts_as_exported(no_reports_models: None) -> None:
    chain(3)
    assert covered_by_exported_pack(3) is False


def test_exported_evidence_pack_periods_must_cover_the_purged_records(clock: Clock) -> None:
    try:
        from reports.models import EvidencePack
    except ImportError:
        pytest.skip("reports.models.EvidencePack is not available")
    if EvidencePack._meta.db_table not in connection.introspection.table_names():
        pytest.skip("the evidence pack table has no migration yet")
    chain(2)  # day 0
    clock.now = T0 + timedelta(days=40)
    chain(2, start=2)  # day 40

    def pack(start: datetime, end: datetime, status: str = "exported",
             includes_records: bool = True) -> None:
        EvidencePack.objects.create(period_start=start, period_end=end, status=status,
                                    includes_records=includes_records)

    assert not covered_by_exported_pack(4)
    # A pack for a subset of controls, without the record populations, covers nothing.
    pack(T0 - timedelta(days=1), T0 + timedelta(days=60), includes_records=False)
    assert not covered_by_exported_pack(4)
    pack(T0, T0 + timedelta(days=30))
    assert covered_by_exported_pack(2) and not covered_by_exported_pack(3)
    pack(T0 + timedelta(days=35), T0 + timedelta(days=60), status="running")
    assert not covered_by_exported_pack(4)
    pack(T0 + timedelta(days=30), T0 + timedelta(days=40))  # end exclusive: day 40 not in it
    assert not covered_by_exported_pack(4)
    pack(T0 + timedelta(days=40), T0 + timedelta(days=41))
    assert covered_by_exported_pack(4)
    assert verify_keys()  # the key configuration used by retention is readable
