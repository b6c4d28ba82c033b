"""Checkpoints exported to a write-once location, and verification from those copies, which
someone with write access to the database cannot rewrite."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from google.api_core.exceptions import PreconditionFailed

from audit.checkpoints import (
    CheckpointConflict,
    CheckpointData,
    CheckpointError,
    DirectoryStore,
    GcsStore,
    checkpoint_create,
    checkpoint_export,
    load_checkpoints,
    store_for,
)
from audit.config import audit_config
from audit.control_models import AuditCheckpoint
from audit.maintenance import purge_window
from audit.verify import verify_chain, verify_log
from wardgate.typed_config import configured

from .conftest import sql
from .controls_helpers import chain, rewrite_from, triggers_dropped, truncate_and_rewind

pytestmark = pytest.mark.django_db


def exported_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("checkpoint-*.json"))


def test_checkpoints_are_exported_once_as_read_only_files(tmp_path: Path) -> None:
    chain(3)
    checkpoint_create()
    chain(2, start=3)
    checkpoint_create()
    store = DirectoryStore(tmp_path / "export")
    assert [c.seq for c in checkpoint_export(store=store)] == [3, 5]
    files = exported_files(tmp_path / "export")
    assert [f.name for f in files] == [
        "checkpoint-00000000000000000003.json",
        "checkpoint-00000000000000000005.json",
    ]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
    doc = json.loads(files[1].read_text())
    assert doc["seq"] == 5 and doc["format"] == "wardgate-checkpoint" and doc["version"] == 1
    assert doc["message"] == f"wardgate-checkpoint:v1|5|{doc['hash']}|{doc['at']}"
    assert not list((tmp_path / "export").glob(".*"))  # no temporary files left behind
    assert AuditCheckpoint.objects.filter(exported_at__isnull=True).count() == 0
    assert checkpoint_export(store=store) == []  # nothing new


def test_an_exported_checkpoint_is_never_overwritten(tmp_path: Path) -> None:
    chain(2)
    checkpoint = CheckpointData.from_model(checkpoint_create())
    store = DirectoryStore(tmp_path)
    assert store.put(checkpoint.file_name, checkpoint.to_json()) is True
    assert store.put(checkpoint.file_name, checkpoint.to_json()) is False  # identical: no-op
    path = tmp_path / checkpoint.file_name
    before = path.read_bytes()
    forged = CheckpointData(checkpoint.seq, "f" * 64, checkpoint.at, "AAAA", checkpoint.key_id)
    with pytest.raises(CheckpointConflict, match="write-once"):
        store.put(checkpoint.file_name, forged.to_json())
    assert path.read_bytes() == before
    with pytest.raises(CheckpointError):
        store.put("../escape.json", b"{}")


def test_audit_checkpoint_command_signs_and_exports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("audit_checkpoint")
    assert "audit log is empty" in capsys.readouterr().out
    chain(4)
    with configured(audit_config, checkpoint_export=str(tmp_path / "cp")):
        call_command("audit_checkpoint", "--export")
    out = capsys.readouterr().out
    # #5: the record of this run, which the checkpoint signs too.
    assert "checkpoint #5" in out and "exported 1 checkpoint(s): #5..#5" in out
    assert len(exported_files(tmp_path / "cp")) == 1
    with configured(audit_config, checkpoint_export=""), \
            pytest.raises(CommandError, match="WARDGATE_CHECKPOINT_EXPORT"):
        call_command("audit_checkpoint", "--export")


def test_audit_checkpoint_records_who_ran_it_and_what_it_signed(tmp_path: Path) -> None:
    import getpass

    from audit.models import AuditRecord
    from tests.conftest import make_user

    def last() -> AuditRecord:
        return AuditRecord.objects.order_by("-seq").first()

    make_user("root-admin", "admin")
    chain(4)
    with configured(audit_config, checkpoint_export=str(tmp_path / "cp")):
        call_command("audit_checkpoint", "--export", stdout=io.StringIO())
        signed = last()
        assert signed.event == "audit.checkpoint_signed", "audit_checkpoint left no record"
        assert (signed.actor, signed.auth_method, signed.user_agent) == (
            f"os:{getpass.getuser()}", "cli", "manage.py audit_checkpoint")
        assert signed.detail == {"previous_checkpoint": None, "export": True,
                                 "export_location": str(tmp_path / "cp")}
        # The checkpoint it announces vouches for the record too, and was exported.
        assert AuditCheckpoint.objects.get().seq == signed.seq == 5
        assert [f.name for f in exported_files(tmp_path / "cp")] == [
            "checkpoint-00000000000000000005.json"]
        # Nothing new to sign or export: nothing recorded, nothing signed.
        call_command("audit_checkpoint", "--export", stdout=io.StringIO())
        assert last().seq == 5 and AuditCheckpoint.objects.count() == 1
        # Something new: signed, and named by --by.
        chain(2, start=10)
        call_command("audit_checkpoint", "--by", "root-admin", stdout=io.StringIO())
        assert (last().event, last().actor, last().seq) == (
            "audit.checkpoint_signed", "root-admin", 8)
        assert last().detail["previous_checkpoint"] == 5
        assert AuditCheckpoint.objects.order_by("-seq").first().seq == 8
        with pytest.raises(CommandError, match="no active account 'ghost'"):
            call_command("audit_checkpoint", "--by", "ghost")
        assert last().seq == 8
        assert verify_log().ok
        # A refusal is recorded too, with who asked.
        chain(2, start=20)
        rewrite_from(last().seq, key=None, actor="mallory")
        with pytest.raises(CommandError, match="refusing to checkpoint a broken chain"):
            call_command("audit_checkpoint", "--by", "root-admin")
    refused = last()
    assert (refused.event, refused.decision, refused.actor) == (
        "audit.checkpoint_refused", "deny", "root-admin")
    assert "broken chain" in refused.reasons[0]["message"]
    assert not AuditRecord.objects.filter(event="audit.checkpoint_signed", seq__gt=8).exists()


def test_verification_from_the_export_catches_a_rewrite_the_database_hides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "export"
    chain(6)
    checkpoint_create()
    chain(4, start=6)
    checkpoint_create()
    checkpoint_export(store=DirectoryStore(export))
    assert verify_log(checkpoints_from=str(export)).ok
    call_command("audit_verify", "--checkpoints-from", str(export))
    assert f"checkpoints OK: 2 verified from {export}" in capsys.readouterr().out

    # The attacker edits record 3, recomputes the chain after it, and deletes the database's
    # checkpoints, which would give the rewrite away.
    rewrite_from(3, decision="deny")
    with purge_window("attacker"):
        sql("DELETE FROM audit_checkpoint")
    assert verify_chain().ok  # (with the chain key stolen too: the chain alone verifies)
    # The database alone no longer looks clean: the window the deletion needed is on record.
    assert any("(attacker) was opened and no purge record" in p for p in verify_log().problems)

    result = verify_log(checkpoints_from=str(export))
    assert not result.ok
    assert any("records 1..6 were edited or rewritten" in p for p in result.problems)
    assert any("checkpoint #6 is in the export" in p and "deleted" in p for p in result.problems)
    with pytest.raises(CommandError) as broken:
        call_command("audit_verify", "--checkpoints-from", str(export))
    assert broken.value.returncode == 1
    assert f"audit checkpoints BROKEN ({export})" in str(broken.value)


def test_a_database_checkpoint_rewritten_to_match_is_caught_by_its_copy(tmp_path: Path) -> None:
    chain(5)
    checkpoint_create()
    checkpoint_export(store=DirectoryStore(tmp_path))
    rewrite_from(2, actor="mallory")
    head_hash = AuditCheckpoint.objects.get().hash
    with triggers_dropped("audit_checkpoint_signed_fields"):
        sql("UPDATE audit_checkpoint SET hash = %s", [head_hash[::-1]])
    problems = verify_log(checkpoints_from=str(tmp_path)).problems
    assert any("in the database differs from its exported copy" in p for p in problems)
    assert any("records 1..5 were edited or rewritten" in p for p in problems)


def test_truncation_is_caught_from_the_export_with_database_checkpoints_gone(
    tmp_path: Path,
) -> None:
    chain(8)
    checkpoint_create()
    checkpoint_export(store=DirectoryStore(tmp_path))
    truncate_and_rewind(keep_up_to=5)
    with purge_window("attacker"):
        sql("DELETE FROM audit_checkpoint")
    assert any("(attacker) was opened" in p for p in verify_log().problems)
    problems = verify_log(checkpoints_from=str(tmp_path)).problems
    assert any(p.startswith("the log was truncated: checkpoint #8") for p in problems)


def test_unreadable_or_missing_exports_are_problems(tmp_path: Path) -> None:
    chain(2)
    checkpoint_create()
    checkpoint_export(store=DirectoryStore(tmp_path))
    (tmp_path / "checkpoint-00000000000000000009.json").write_text("{not json")
    problems = verify_log(checkpoints_from=str(tmp_path)).problems
    assert any("is not a readable checkpoint" in p for p in problems)
    missing = verify_log(checkpoints_from=str(tmp_path / "nowhere")).problems
    assert any("does not exist" in p for p in missing)
    with pytest.raises(CheckpointError, match="unsupported"):
        store_for("s3://bucket/x")


# --- GCS ---------------------------------------------------------------------------------------


class FakeBlob:
    def __init__(self, bucket: FakeBucket, name: str) -> None:
        self.bucket, self.name = bucket, name

    def upload_from_string(self, data: bytes, content_type: str, if_generation_match: int) -> None:
        assert if_generation_match == 0 and content_type == "application/json"
        if self.name in self.bucket.objects:
            raise PreconditionFailed("exists")
        self.bucket.objects[self.name] = data

    def download_as_bytes(self) -> bytes:
        return self.bucket.objects[self.name]


class FakeBucket:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def blob(self, name: str) -> FakeBlob:
        return FakeBlob(self, name)


class FakeGcsClient:
    """The slice of google.cloud.storage.Client the store uses, with GCS's precondition."""

    def __init__(self) -> None:
        self.buckets: dict[str, FakeBucket] = {}

    def bucket(self, name: str) -> FakeBucket:
        return self.buckets.setdefault(name, FakeBucket())

    def list_blobs(self, bucket: str, prefix: str) -> list[FakeBlob]:
        found = self.bucket(bucket)
        return [FakeBlob(found, n) for n in found.objects if n.startswith(prefix)]


def test_gcs_export_is_write_once_and_verifiable() -> None:
    client = FakeGcsClient()
    store = GcsStore("gs://audit-bucket/wardgate/prod/", client=client)
    chain(3)
    checkpoint_create()
    checkpoint_export(store=store)
    objects = client.buckets["audit-bucket"].objects
    assert list(objects) == ["wardgate/prod/checkpoint-00000000000000000003.json"]
    data = CheckpointData.from_model(AuditCheckpoint.objects.get())
    assert store.put(data.file_name, objects[next(iter(objects))]) is False
    with pytest.raises(CheckpointConflict):
        store.put(data.file_name, b"{}")
    checkpoints, problems = load_checkpoints(store=store)
    assert problems == [] and [c.seq for c in checkpoints] == [3]
    assert (
        checkpoints[0].source
        == "gs://audit-bucket/wardgate/prod/checkpoint-00000000000000000003.json"
    )
    assert verify_log(store=store).ok


def test_gcs_without_the_library_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)  # as if not installed
    store = store_for("gs://bucket/prefix")
    with pytest.raises(CheckpointError, match="pip install google-cloud-storage"):
        store.put("checkpoint-1.json", b"{}")
