"""Signed checkpoints of the chain head (NIST AU-9, AU-10): signing, and what `audit_verify`
finds with them that the chain alone cannot (a recomputed tail, a truncation with the head
rewound)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from audit.checkpoints import CheckpointData, CheckpointError, checkpoint_create, verify_keys
from audit.config import audit_config
from audit.control_models import AuditCheckpoint
from audit.maintenance import purge_window
from audit.signing import (
    SigningKeyError,
    checkpoint_message,
    demo_signing_key,
    key_id,
    load_private_key,
    load_public_key,
    sign,
    signature_valid,
    signing_key_problem,
)
from audit.verify import verify_chain, verify_log
from wardgate.typed_config import configured

from .conftest import sql
from .controls_helpers import chain, rewrite_from, stored, triggers_dropped, truncate_and_rewind

AT = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def raw_b64(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


# --- signing (no database) ---------------------------------------------------------------------


def test_the_signed_message_is_canonical() -> None:
    assert checkpoint_message(7, "ab" * 32, AT) == (
        b"wardgate-checkpoint:v1|7|" + b"ab" * 32 + b"|2026-03-04T05:06:07.890123+00:00"
    )
    with pytest.raises(ValueError):
        checkpoint_message(7, "a|b", AT)


@pytest.mark.parametrize("form", ["base64", "pem"])
def test_sign_and_verify_with_base64_or_pem_keys(form: str) -> None:
    key = Ed25519PrivateKey.generate()
    text = (
        raw_b64(key)
        if form == "base64"
        else key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )
    loaded = load_private_key(text)
    message = checkpoint_message(3, "0" * 64, AT)
    signature = sign(loaded, message)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for public in (key.public_key(), load_public_key(public_pem.decode())):
        assert signature_valid(public, message, signature)
        assert key_id(public) == key_id(loaded.public_key())
    assert not signature_valid(key.public_key(), checkpoint_message(4, "0" * 64, AT), signature)
    assert not signature_valid(Ed25519PrivateKey.generate().public_key(), message, signature)
    assert not signature_valid(key.public_key(), message, "not base64!")


def test_bad_keys_are_named() -> None:
    assert signing_key_problem("") == "the checkpoint signing key is not set"
    assert "32 raw bytes" in (signing_key_problem("c2hvcnQ=") or "")
    rsa_like = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
    assert "PEM" in (signing_key_problem(rsa_like) or "")
    with pytest.raises(SigningKeyError):
        load_public_key("nope")
    # The demo default is deterministic and usable.
    assert demo_signing_key("s") == demo_signing_key("s") != demo_signing_key("t")
    assert signing_key_problem(demo_signing_key("s")) is None


def test_production_refuses_to_start_without_a_signing_key() -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {
        **os.environ,
        "WARDGATE_MODE": "production",
        "WARDGATE_SECRET_KEY": "x" * 40,
        "WARDGATE_DEBUG": "0",
        "DATABASE_URL": "postgres://u@db/wardgate",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "WARDGATE_ALLOWED_HOSTS": "wardgate.example",
        "WARDGATE_FIELD_ENCRYPTION_KEY": "f" * 40,
        "WARDGATE_TOKEN_HMAC_KEY": "t" * 40,
        "WARDGATE_PACK_SIGNING_KEY": demo_signing_key("pack"),
        "DJANGO_SETTINGS_MODULE": "wardgate.settings",
    }
    env.pop("WARDGATE_CHECKPOINT_SIGNING_KEY", None)
    load = [sys.executable, "-c", "import django; django.setup()"]
    done = subprocess.run(load, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "WARDGATE_CHECKPOINT_SIGNING_KEY must be set" in done.stderr
    env["WARDGATE_CHECKPOINT_SIGNING_KEY"] = demo_signing_key("production")
    done = subprocess.run(load, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "WARDGATE_CHECKPOINT_SIGNING_KEY" not in done.stderr


# --- creating checkpoints ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_checkpoint_signs_the_chain_head_and_is_idempotent() -> None:
    assert checkpoint_create() is None  # empty log
    records = chain(5)
    checkpoint = checkpoint_create()
    assert checkpoint is not None
    assert (checkpoint.seq, checkpoint.hash) == (5, records[-1].hash)
    data = CheckpointData.from_model(AuditCheckpoint.objects.get())
    assert data.verify(verify_keys()) is None
    assert checkpoint_create().pk == checkpoint.pk  # the head did not move
    chain(2, start=5)
    assert checkpoint_create().seq == 7
    assert list(AuditCheckpoint.objects.values_list("seq", flat=True)) == [5, 7]


@pytest.mark.django_db
def test_a_checkpoint_is_refused_on_a_broken_chain() -> None:
    chain(4)
    checkpoint_create()
    chain(3, start=4)
    with triggers_dropped("audit_record_no_update"):
        sql("UPDATE audit_record SET actor = 'mallory' WHERE seq = 6")
    with pytest.raises(CheckpointError, match="record 6"):
        checkpoint_create()
    assert AuditCheckpoint.objects.count() == 1


@pytest.mark.django_db
def test_signed_checkpoint_fields_cannot_change_nor_be_deleted() -> None:
    chain(3)
    checkpoint = checkpoint_create()
    for statement in (
        "UPDATE audit_checkpoint SET hash = 'x'",
        "UPDATE audit_checkpoint SET seq = 99",
        "UPDATE audit_checkpoint SET signature = 'x'",
        "DELETE FROM audit_checkpoint",
    ):
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
            sql(statement)
    # Recording the export is allowed.
    AuditCheckpoint.objects.filter(pk=checkpoint.pk).update(export_location="/x")
    with purge_window("test"):
        sql("DELETE FROM audit_checkpoint")


# --- what the checkpoints catch ----------------------------------------------------------------


@pytest.mark.django_db
def test_an_intact_log_verifies_with_its_checkpoints(capsys: pytest.CaptureFixture[str]) -> None:
    chain(4)
    checkpoint_create()
    chain(3, start=4)
    checkpoint_create()
    chain(2, start=7)  # not yet checkpointed: fine
    result = verify_log(batch_size=2)
    assert result.ok, result.problems
    assert result.checkpoints_checked == 2 and result.latest_checkpoint.seq == 7
    call_command("audit_verify")
    out = capsys.readouterr().out
    assert "audit chain OK: 9 records verified" in out
    assert "checkpoints OK: 2 verified from database, latest #7" in out


@pytest.mark.django_db
def test_an_edit_with_the_whole_tail_recomputed_is_caught_by_a_checkpoint() -> None:
    chain(3)
    checkpoint_create()
    chain(7, start=3)
    checkpoint_create()
    rewrite_from(5, actor="mallory")
    assert stored(5)["actor"] == "mallory"
    assert verify_chain().ok  # the chain alone cannot tell
    result = verify_log()
    assert not result.ok
    assert result.problems == (
        f"record 10 no longer has the hash that checkpoint #10 signed at "
        f"{result.latest_checkpoint.at} (database): records 4..10 were edited or rewritten",
    )
    with pytest.raises(CommandError) as broken:
        call_command("audit_verify")
    assert broken.value.returncode == 1
    assert "audit checkpoints BROKEN" in str(broken.value)
    assert "records 4..10 were edited or rewritten" in str(broken.value)
    assert "audit chain BROKEN" not in str(broken.value)


@pytest.mark.django_db
def test_a_truncated_tail_with_the_head_rewound_is_caught_by_a_checkpoint() -> None:
    chain(10)
    checkpoint_create()
    chain(2, start=10)
    truncate_and_rewind(keep_up_to=7)
    chain_only = verify_chain()
    assert chain_only.ok and chain_only.head_seq == 7  # the chain alone verifies
    result = verify_log()
    assert not result.ok
    [problem] = [p for p in result.problems if "maintenance window" not in p]
    assert problem.startswith("the log was truncated: checkpoint #10")
    assert "the chain ends at record 7 (head seq 7)" in problem
    with pytest.raises(CommandError, match="truncated") as broken:
        call_command("audit_verify")
    assert broken.value.returncode == 1


@pytest.mark.django_db
def test_truncating_everything_is_caught() -> None:
    chain(3)
    checkpoint_create()
    with purge_window("attacker"):
        sql("DELETE FROM audit_record")
        sql("DELETE FROM audit_chain_head")
    assert verify_chain().ok
    [problem] = verify_log().problems
    assert "truncated: checkpoint #3" in problem and "chain ends at record 0" in problem


@pytest.mark.django_db
def test_a_rewritten_or_forged_checkpoint_fails_its_signature() -> None:
    chain(3)
    checkpoint_create()
    with triggers_dropped("audit_checkpoint_signed_fields"):
        sql("UPDATE audit_checkpoint SET hash = %s", ["f" * 64])
    [problem] = verify_log().problems
    assert problem == "checkpoint #3 (database) has an invalid signature: it was forged or altered"

    chain(1, start=3)
    other = Ed25519PrivateKey.generate()
    AuditCheckpoint.objects.create(
        seq=4,
        hash=stored(4)["hash"],
        at=AT,
        signature=sign(other, checkpoint_message(4, stored(4)["hash"], AT)),
        key_id=key_id(other.public_key()),
    )
    problems = verify_log().problems
    assert any("checkpoint #4 (database) is signed by unknown key" in p for p in problems)


@pytest.mark.django_db
def test_checkpoints_of_a_rotated_key_verify_with_its_public_key() -> None:
    old = Ed25519PrivateKey.generate()
    with configured(audit_config, checkpoint_signing_key=raw_b64(old)):
        chain(2)
        checkpoint_create()
    assert "unknown key" in verify_log().problems[0]
    public = base64.b64encode(
        old.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    with configured(audit_config, checkpoint_verify_keys=(public,)):
        assert verify_log().ok
        chain(1, start=2)
        assert checkpoint_create().seq == 3  # signed with the new key, on the old one's anchor
        assert verify_log().ok
