"""Requesting, scheduling and serving packs: the services, the monthly schedule, the JSON views,
the key handling and the production refusal."""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from audit.models import AuditRecord
from reports.models import EvidencePack
from reports.services import (
    PackRequestError,
    evidence_pack_build,
    evidence_pack_request,
    evidence_pack_schedule_monthly,
    period_from_dates,
    previous_month,
)
from tests.conftest import ROOT
from tests.reports.conftest import MARCH, pack_requester

pytestmark = pytest.mark.django_db


def test_request_validates_period_and_controls(db) -> None:
    by = pack_requester()
    with pytest.raises(PackRequestError, match="timezone-aware"):
        evidence_pack_request(period_start=dt.datetime(2026, 3, 1), period_end=MARCH[1],
                              enqueue=False)
    with pytest.raises(PackRequestError, match="end after it starts"):
        evidence_pack_request(period_start=MARCH[1], period_end=MARCH[0], enqueue=False)
    with pytest.raises(PackRequestError, match="in the future"):
        evidence_pack_request(period_start=dt.datetime(2999, 1, 1, tzinfo=dt.UTC),
                              period_end=dt.datetime(2999, 2, 1, tzinfo=dt.UTC), enqueue=False)
    with pytest.raises(PackRequestError, match="unknown control"):
        evidence_pack_request(period_start=MARCH[0], period_end=MARCH[1], controls=["ZZ-1"],
                              created_by=by, enqueue=False)
    with pytest.raises(PackRequestError, match="who is requesting"):
        evidence_pack_request(period_start=MARCH[0], period_end=MARCH[1], enqueue=False)
    pack = evidence_pack_request(period_start=MARCH[0], period_end=MARCH[1],
                                 controls=["au-9", "AC-2"], created_by=by, enqueue=False)
    assert pack.controls == ["AC-2", "AU-9"] and pack.status == "queued" and pack.task_id
    assert not pack.partial
    requested = AuditRecord.objects.get(event="reports.pack_requested")
    assert requested.actor == by.username and requested.detail["pack"] == str(pack.uuid)


def test_a_period_that_has_not_ended_is_refused_unless_partial(db) -> None:
    from django.utils import timezone

    today = timezone.now().date()
    start, end = period_from_dates(today.replace(day=1), today)
    with pytest.raises(PackRequestError, match="has not ended yet"):
        evidence_pack_request(period_start=start, period_end=end, created_by=pack_requester(),
                              enqueue=False)
    assert not EvidencePack.objects.exists()
    pack = evidence_pack_request(period_start=start, period_end=end, partial=True,
                                 created_by=pack_requester(), enqueue=False)
    assert pack.partial
    # Asking for "partial" on a period that has ended changes nothing.
    done = evidence_pack_request(period_start=MARCH[0], period_end=MARCH[1], partial=True,
                                 created_by=pack_requester(), enqueue=False)
    assert not done.partial


def test_monthly_schedule_is_idempotent(db, pack_dir) -> None:
    assert previous_month(dt.datetime(2026, 1, 3, 12, tzinfo=dt.UTC)) == (
        dt.datetime(2025, 12, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    pack = evidence_pack_schedule_monthly(now=dt.datetime(2026, 4, 1, 1, 30, tzinfo=dt.UTC))
    assert pack is not None and (pack.period_start, pack.period_end) == MARCH
    assert pack.trigger == "schedule" and len(pack.controls) == 18
    assert evidence_pack_schedule_monthly(now=dt.datetime(2026, 4, 2, tzinfo=dt.UTC)) is None
    evidence_pack_build(pack=pack)
    assert evidence_pack_schedule_monthly(now=dt.datetime(2026, 4, 9, tzinfo=dt.UTC)) is None
    beat = django_settings.CELERY_BEAT_SCHEDULE["reports-monthly-evidence-pack"]
    assert beat["task"] == "reports.evidence_pack_monthly"
    assert str(beat["schedule"].day_of_month) == "{1}"


def test_build_twice_does_no_work_twice(small_log, pack_dir) -> None:
    pack = evidence_pack_request(period_start=MARCH[0], period_end=MARCH[1], controls=["AU-2"],
                                 created_by=pack_requester(), enqueue=False)
    first = evidence_pack_build(pack=pack)
    again = evidence_pack_build(pack=pack)  # a redelivered task
    assert again.sha256 == first.sha256
    assert AuditRecord.objects.filter(event="reports.pack_built").count() == 1


def test_keys_pem_and_base64(tmp_path, configure, capsys) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from reports.config import reports_config
    from reports.keys import PackKeyError, key_id, load_private_key, load_public_key

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    raw = base64.b64encode(key.private_bytes(serialization.Encoding.Raw,
                                             serialization.PrivateFormat.Raw,
                                             serialization.NoEncryption())).decode()
    assert key_id(load_private_key(pem).public_key()) == key_id(load_private_key(raw).public_key())
    for bad in ("", "not a key", base64.b64encode(b"short").decode(),
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"):
        with pytest.raises(PackKeyError):
            load_private_key(bad)
    configure(reports_config, signing_key=pem)
    call_command("pack_public_key")
    captured = capsys.readouterr()
    assert key_id(load_public_key(captured.out)) == key_id(key.public_key())
    assert key_id(key.public_key()) in captured.err


def _settings_import(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, capture_output=True,
        text=True, timeout=60,
        env={k: v for k, v in {**os.environ, **env}.items() if not k.startswith("WARDGATE_")
             or k in env} | {"DJANGO_SETTINGS_MODULE": "wardgate.settings"})


PRODUCTION = {
    "WARDGATE_MODE": "production", "WARDGATE_SECRET_KEY": "s" * 50,
    "DATABASE_URL": "postgres://u@127.0.0.1:5432/x", "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "WARDGATE_ALLOWED_HOSTS": "gw.example.com", "WARDGATE_FIELD_ENCRYPTION_KEY": "f" * 40,
    "WARDGATE_TOKEN_HMAC_KEY": "t" * 40,
    "WARDGATE_CHECKPOINT_SIGNING_KEY": base64.b64encode(b"c" * 32).decode(),
}


def test_production_requires_a_pack_signing_key() -> None:
    missing = _settings_import(PRODUCTION)
    assert missing.returncode != 0
    assert "WARDGATE_PACK_SIGNING_KEY must be set" in missing.stderr
    bad = _settings_import({**PRODUCTION, "WARDGATE_PACK_SIGNING_KEY": "nope"})
    assert bad.returncode != 0 and "WARDGATE_PACK_SIGNING_KEY" in bad.stderr
    good = _settings_import({**PRODUCTION,
                             "WARDGATE_PACK_SIGNING_KEY": base64.b64encode(b"k" * 32).decode()})
    assert "WARDGATE_PACK_SIGNING_KEY" not in good.stderr, good.stderr[-2000:]


def test_the_demo_signs_packs_with_its_installation_key() -> None:
    # Made once per installation (tests/audit/test_tamper_default.py checks it is kept, 0600,
    # and differs between installations); never the key the source gives away.
    from reports.config import reports_config
    from wardgate.env import DEMO_SECRET_KEY
    from wardgate.keys import demo_signing_key, signing_key_problem

    key = reports_config().signing_key
    assert signing_key_problem(key) is None
    assert key != demo_signing_key(DEMO_SECRET_KEY, purpose="wardgate-evidence-pack-signing")


def test_a_pack_being_built_elsewhere_is_not_built_again(small_log, pack_dir) -> None:
    from django.utils import timezone

    pack = evidence_pack_request(period_start=MARCH[0], period_end=MARCH[1], controls=["AU-2"],
                                 created_by=pack_requester(), enqueue=False)
    EvidencePack.objects.filter(pk=pack.pk).update(status="running", started_at=timezone.now())
    assert evidence_pack_build(pack=pack).status == "running"  # the other worker has it
    assert not list(pack_dir.glob("*.zip")) if pack_dir.exists() else True
    EvidencePack.objects.filter(pk=pack.pk).update(
        started_at=timezone.now() - dt.timedelta(hours=3))  # that worker died
    assert evidence_pack_build(pack=pack).status == "exported"
