"""The chain cannot be rewritten quietly, with the default configuration: checkpoints are signed
and exported to a directory outside the database by the scheduled task, the chain is keyed with
a secret the database does not hold, every audit table is guarded, and `audit_verify` (no
options) names the first record that differs although the attacker recomputed everything after
it."""

from __future__ import annotations

import hashlib
import importlib
import os
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from audit.chain import compute_hash
from audit.config import audit_config
from audit.models import AuditRecord
from audit.services import append_records
from audit.tasks import checkpoint as checkpoint_task
from audit.verify import verify_chain, verify_log
from tests.conftest import ROOT
from wardgate.env import DEMO_SECRET_KEY
from wardgate.keys import demo_public_key, demo_signing_key, signing_key_problem
from wardgate.typed_config import configured

from .conftest import make_entry, sql
from .controls_helpers import chain, rewrite_from, stored, triggers_dropped

pytestmark = pytest.mark.django_db(transaction=True)


def cut_tail_and_rewind(keep_up_to: int) -> None:
    """As someone with plain write access: open a maintenance window by INSERT, delete the tail,
    the head and the database's checkpoints, close the window again."""
    head_hash = stored(keep_up_to)["hash"]
    sql("INSERT INTO audit_maintenance_window (token, reason) VALUES ('x', 'routine')")
    sql("DELETE FROM audit_record WHERE seq > %s", [keep_up_to])
    sql("DELETE FROM audit_chain_head")
    sql("INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, %s, %s)",
        [keep_up_to, head_hash])
    sql("DELETE FROM audit_checkpoint")
    sql("DELETE FROM audit_maintenance_window")


def test_a_recomputed_chain_is_caught_and_the_edited_record_named(capsys) -> None:  # type: ignore[no-untyped-def]
    chain(80)
    assert checkpoint_task()["exported"] == [80]  # the scheduled job signs and exports
    chain(20, start=80)
    # Edit record 73, recompute every later hash (without the chain key, which is not in the
    # database), cut the tail off at 90 and delete every trace in the database.
    rewrite_from(73, key=None, decision="allow", actor="nobody")
    cut_tail_and_rewind(keep_up_to=90)

    result = verify_chain()
    assert (result.ok, result.first_broken_seq) == (False, 73)
    with pytest.raises(CommandError) as broken:
        call_command("audit_verify")
    message = str(broken.value)
    assert "audit chain BROKEN at record 73" in message
    assert "checkpoint #80 is in the export" in message and "deleted" in message
    assert "maintenance window" in message


def test_with_a_stolen_key_the_exported_checkpoint_still_names_the_edited_range() -> None:
    chain(30)
    checkpoint_task()
    rewrite_from(12, actor="mallory")  # the key stolen too: the chain itself verifies
    with triggers_dropped("audit_checkpoint_no_delete"):
        sql("DELETE FROM audit_checkpoint")
    assert verify_chain().ok
    problems = verify_log().problems
    assert any("records 1..30 were edited or rewritten" in p for p in problems)


def test_every_audit_table_is_guarded_and_a_forged_window_stays_on_record() -> None:
    chain(5)
    checkpoint_task()
    sql("INSERT INTO audit_maintenance_window (token, reason) VALUES ('forged', 'cleanup')")
    with pytest.raises(IntegrityError), transaction.atomic():
        sql("UPDATE audit_maintenance_window SET reason = 'retention'")
    sql("DELETE FROM audit_checkpoint")
    sql("DELETE FROM audit_maintenance_window")
    for statement in ("DELETE FROM audit_maintenance_log",
                      "UPDATE audit_maintenance_log SET reason = 'retention'"):
        with pytest.raises(IntegrityError), transaction.atomic():
            sql(statement)
    problems = verify_log().problems
    assert any("maintenance window forged" in p and "(cleanup)" in p for p in problems)


def test_a_chain_written_before_keying_is_continued_keyed() -> None:
    with configured(audit_config, chain_key=""):
        chain(4)  # the v1 (unkeyed) format, as every chain before this change
    legacy = stored(4)
    assert legacy["hash"] == compute_hash(legacy["prev_hash"], legacy)
    assert verify_chain().ok is False  # a configured key expects a keyed record by now
    migration = importlib.import_module("audit.migrations.0006_keyed_chain_and_window_log")
    migration.start_keyed_chain(None, types.SimpleNamespace(connection=connection))
    marker = AuditRecord.objects.get(seq=5)
    assert marker.event == "audit.chain_keyed" and marker.detail["legacy_head_seq"] == 4
    append_records([make_entry(9)])
    assert verify_chain().ok and verify_log().ok
    # A legacy-format record after the keyed ones is a rewrite without the key.
    rewrite_from(6, key=None, actor="mallory")
    assert (verify_chain().ok, verify_chain().first_broken_seq) == (False, 6)


# The key earlier versions derived for the demo from its built-in Django secret: anyone with the
# source has it, so it is what an attacker of a default installation would recompute with.
PUBLIC_DEMO_KEY = hashlib.sha256(b"audit-chain:" + DEMO_SECRET_KEY.encode()).hexdigest()


def demo_chain_key(var_dir: Path) -> str:
    """The chain key a demo installation in `var_dir` starts with (no key in the environment)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WARDGATE_", "DATABASE_URL", "CELERY_", "DJANGO_"))}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); "
         "from audit.config import audit_config; print(audit_config().chain_key)"],
        cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "wardgate.settings",
                       "WARDGATE_VAR_DIR": str(var_dir)},
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_the_demo_chain_key_is_made_for_the_installation_not_taken_from_the_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = demo_chain_key(tmp_path / "a")
    assert len(first) == 64 and first != PUBLIC_DEMO_KEY
    key_file = tmp_path / "a" / "audit-chain.key"
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert demo_chain_key(tmp_path / "a") == first  # the same installation keeps its key
    assert demo_chain_key(tmp_path / "b") != first  # another installation has its own
    assert audit_config().chain_key not in ("", PUBLIC_DEMO_KEY)


def test_a_chain_recomputed_with_the_public_demo_key_is_caught_at_the_edited_record(capsys) -> None:  # type: ignore[no-untyped-def]
    # The default configuration's attacker: write access to the database and the source code,
    # recomputing every hash after the edit with the key the source gives away.
    chain(20)
    rewrite_from(13, key=PUBLIC_DEMO_KEY.encode(), decision="allow", actor="nobody")
    result = verify_chain()
    assert (result.ok, result.first_broken_seq) == (False, 13)
    with pytest.raises(CommandError, match="audit chain BROKEN at record 13"):
        call_command("audit_verify")


def test_a_chain_begun_under_the_old_demo_key_is_continued_and_stays_guarded() -> None:
    with configured(audit_config, chain_key=PUBLIC_DEMO_KEY):
        chain(4)  # an installation from before the demo had a key of its own
    # Every record under the old key is what a rewrite of the whole chain with it looks like.
    assert verify_chain().ok is False
    chain(3, start=4)  # the next appends (the demo makes some at start) are under the new key
    assert verify_chain().ok and verify_log().ok
    # Recomputed with the old (public) key after the current key took over: named.
    rewrite_from(6, key=PUBLIC_DEMO_KEY.encode(), actor="mallory")
    assert (verify_chain().ok, verify_chain().first_broken_seq) == (False, 6)


# The checkpoint key earlier versions derived for the demo from its built-in Django secret: it is
# in the source, so anyone could sign checkpoints with it.
PUBLIC_DEMO_SIGNING_KEY = demo_signing_key(DEMO_SECRET_KEY)


def demo_checkpoint_keys(var_dir: Path) -> tuple[str, list[str]]:
    """The checkpoint signing key and verify keys of a demo installation in `var_dir`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WARDGATE_", "DATABASE_URL", "CELERY_", "DJANGO_"))}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); "
         "from audit.config import audit_config; config = audit_config(); "
         "print(config.checkpoint_signing_key); print(','.join(config.checkpoint_verify_keys))"],
        cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "wardgate.settings",
                       "WARDGATE_VAR_DIR": str(var_dir)},
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    signing, verify = done.stdout.strip().split("\n")
    return signing, verify.split(",")


def test_the_demo_checkpoint_key_is_made_for_the_installation_not_taken_from_the_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first, verify = demo_checkpoint_keys(tmp_path / "a")
    assert first != PUBLIC_DEMO_SIGNING_KEY and signing_key_problem(first) is None
    key_file = tmp_path / "a" / "checkpoint-signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert demo_checkpoint_keys(tmp_path / "a")[0] == first  # the same installation keeps it
    assert demo_checkpoint_keys(tmp_path / "b")[0] != first  # another has its own
    # What earlier demos signed still verifies: the old key's public half, never its use.
    assert verify == [demo_public_key(DEMO_SECRET_KEY)]
    assert audit_config().checkpoint_signing_key not in ("", PUBLIC_DEMO_SIGNING_KEY)


def test_checkpoints_signed_with_the_old_demo_key_verify_and_later_ones_are_forgeries(capsys) -> None:  # type: ignore[no-untyped-def]
    from audit.checkpoints import checkpoint_create

    chain(5)
    with configured(audit_config, checkpoint_signing_key=PUBLIC_DEMO_SIGNING_KEY):
        checkpoint_create()  # an installation from before the demo had a key of its own
    assert verify_log().ok
    chain(3, start=5)
    assert checkpoint_create().seq == 8  # now under the installation's key
    call_command("audit_verify")
    assert "checkpoints OK" in capsys.readouterr().out
    # The default configuration's attacker signs with the key the source gives away.
    from django.utils import timezone

    from audit.control_models import AuditCheckpoint
    from audit.signing import checkpoint_message, key_id, load_private_key, sign

    chain(2, start=8)
    public_key = load_private_key(PUBLIC_DEMO_SIGNING_KEY)
    at = timezone.now()
    AuditCheckpoint.objects.create(
        seq=10, hash=stored(10)["hash"], at=at, key_id=key_id(public_key.public_key()),
        signature=sign(public_key, checkpoint_message(10, stored(10)["hash"], at)))
    problems = verify_log().problems
    assert any("checkpoint #10 (database) is signed by retired key" in p and "forged" in p
               for p in problems), problems
    with pytest.raises(CommandError, match="forged"):
        call_command("audit_verify")


def demo_pack_key(var_dir: Path) -> str:
    """The evidence pack signing key of a demo installation in `var_dir`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WARDGATE_", "DATABASE_URL", "CELERY_", "DJANGO_"))}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); "
         "from reports.config import reports_config; print(reports_config().signing_key)"],
        cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "wardgate.settings",
                       "WARDGATE_VAR_DIR": str(var_dir)},
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_the_demo_pack_key_is_made_for_the_installation_not_taken_from_the_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Earlier demos signed evidence packs with a key derived from the built-in (public) demo
    # secret: anyone could sign a forged pack that `verify_pack` and openssl accepted.
    public = demo_signing_key(DEMO_SECRET_KEY, purpose="wardgate-evidence-pack-signing")
    first = demo_pack_key(tmp_path / "a")
    assert first != public and signing_key_problem(first) is None
    key_file = tmp_path / "a" / "pack-signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert demo_pack_key(tmp_path / "a") == first  # the same installation keeps it
    assert demo_pack_key(tmp_path / "b") != first  # another has its own
