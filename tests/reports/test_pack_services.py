"""Requesting, scheduling and serving packs: the services, the monthly schedule, the JSON views,
the key handling and the production refusal."""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import sys
from typing import Any

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
    previous_month,
)
from tests.conftest import ROOT, make_user
from tests.reports.conftest import MARCH

pytestmark = pytest.mark.django_db


def test_request_validates_period_and_controls(db) -> None:
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
                              enqueue=False)
    pack = evidence_pack_request(period_start=MARCH[0], period_end=MARCH[1],
                                 controls=["au-9", "AC-2"], enqueue=False)
    assert pack.controls == ["AC-2", "AU-9"] and pack.status == "queued" and pack.task_id


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
                                 enqueue=False)
    first = evidence_pack_build(pack=pack)
    again = evidence_pack_build(pack=pack)  # a redelivered task
    assert again.sha256 == first.sha256
    assert AuditRecord.objects.filter(event="reports.pack_built").count() == 1


@pytest.mark.urls("tests.reports.urls")
def test_views_progress_list_create_download(small_log, pack_dir, client) -> None:
    auditor = make_user("auditor", "auditor")
    engineer = make_user("engineer", "engineer")
    assert client.get("/reports/packs/").status_code == 401
    client.force_login(engineer)
    assert client.get("/reports/packs/").status_code == 403
    client.force_login(auditor)

    created = client.post("/reports/packs/new", {"from": "2026-03-01", "to": "2026-03-31",
                                                 "controls": ["AU-2", "AU-12"]},
                          content_type="application/json")
    assert created.status_code == 202, created.content
    body = created.json()
    assert body["status"] == "queued" and body["controls"] == ["AU-2", "AU-12"]
    bad = client.post("/reports/packs/new", {"from": "2026-03-31", "to": "2026-03-01"},
                      content_type="application/json")
    assert bad.status_code == 400 and "before it starts" in bad.json()["error"]

    pack = EvidencePack.objects.get(pk=body["id"])
    assert pack.created_by == auditor
    progress = client.get(f"/reports/packs/{pack.pk}/").json()
    assert progress["progress"] == 0 and not progress["finished"]
    assert "download_url" not in progress
    assert client.get(f"/reports/packs/{pack.pk}/download").status_code == 404

    evidence_pack_build(pack=pack)
    progress = client.get(f"/reports/packs/{pack.pk}/").json()
    assert progress["status"] == "exported" and progress["progress"] == 100
    assert progress["download_url"].endswith(f"/reports/packs/{pack.pk}/download")
    assert [c["control"] for c in progress["summary"]] == ["AU-2", "AU-12"]
    listed = client.get("/reports/packs/").json()
    assert listed["packs"][0]["id"] == pack.pk
    assert {"id": "AC-2", "title": "AC-2 Account Management"} in listed["controls"]

    download = client.get(f"/reports/packs/{pack.pk}/download")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")
    import hashlib

    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == pack.sha256
    took = AuditRecord.objects.get(event="reports.pack_downloaded")
    assert took.actor == "auditor" and took.detail["pack"] == str(pack.uuid)
    assert client.get("/reports/packs/999999/").status_code == 404


def test_keys_pem_and_base64(tmp_path, settings, capsys) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
    settings.WARDGATE_PACK_SIGNING_KEY = pem
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


def test_demo_key_is_derived_and_stable(settings: Any) -> None:
    from reports.keys import demo_key

    assert demo_key(settings.SECRET_KEY) == settings.WARDGATE_PACK_SIGNING_KEY
    assert demo_key("a") != demo_key("b") and demo_key("a") == demo_key("a")


def test_a_pack_being_built_elsewhere_is_not_built_again(small_log, pack_dir) -> None:
    from django.utils import timezone

    pack = evidence_pack_request(period_start=MARCH[0], period_end=MARCH[1], controls=["AU-2"],
                                 enqueue=False)
    EvidencePack.objects.filter(pk=pack.pk).update(status="running", started_at=timezone.now())
    assert evidence_pack_build(pack=pack).status == "running"  # the other worker has it
    assert not list(pack_dir.glob("*.zip")) if pack_dir.exists() else True
    EvidencePack.objects.filter(pk=pack.pk).update(
        started_at=timezone.now() - dt.timedelta(hours=3))  # that worker died
    assert evidence_pack_build(pack=pack).status == "exported"
