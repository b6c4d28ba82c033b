"""The auditor's journey in a real browser (headless Debian Chromium), against the real ASGI app
with a real Celery worker (in a thread of this process, on an in-memory broker, so it shares the
test database): sign in as an auditor, open Evidence from the navigation, build a pack of last
month, watch the progress bar reach 100 % without a reload, download the zip and the public key,
verify the zip with `manage.py verify_pack` in a separate process, and find the request and the
download in the audit browser."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AuditRecord
from reports.models import EvidencePack
from tests.browser.conftest import screenshot, sign_in
from tests.conftest import ROOT
from tests.portal.conftest import portal_user

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "x-test-pass-123"


@pytest.fixture
def celery_worker() -> Iterator[Any]:
    """A real Celery worker (solo pool) in a thread, with its own app on an in-memory broker and
    result backend, made the current and default app so the portal's `apply_async` reaches it
    and the progress poller reads its task states."""
    from celery import Celery, _state
    from celery.contrib.testing.worker import start_worker

    import reports.tasks  # noqa: F401  (registers the shared tasks)

    previous, previous_current = _state.default_app, getattr(_state._tls, "current_app", None)
    app = Celery("wardgate-browser-test", set_as_current=True)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(broker_url="memory://", result_backend="cache+memory://",
                    broker_transport_options={}, task_always_eager=False)
    app.set_default()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            yield app
    finally:
        _state.default_app = previous
        _state._tls.current_app = previous_current


def _last_month() -> tuple[dt.date, dt.date]:
    first_this = timezone.now().date().replace(day=1)
    last = first_this - dt.timedelta(days=1)
    return last.replace(day=1), last


def test_auditor_builds_watches_downloads_and_verifies_a_pack(
        gateway, celery_worker, configure, tmp_path, new_page) -> None:
    from reports.config import reports_config
    from reports.synthetic import audit_load_generate

    configure(reports_config, pack_dir=tmp_path / "packs")
    first, last = _last_month()
    audit_load_generate(records=2000, start=dt.datetime.combine(first, dt.time.min, dt.UTC),
                        days=(last - first).days + 1, seed=11)
    portal_user("aud", "auditor")
    base = gateway.base_url

    page = new_page()
    sign_in(page, base, "aud", PASSWORD)
    page.click("header nav >> text=Evidence")
    page.wait_for_url("**/evidence/")
    page.click("#pack-form button[data-preset=last-month]")
    assert page.input_value("#id_first_day") == first.isoformat()
    assert page.input_value("#id_last_day") == last.isoformat()
    assert page.locator("#pack-controls input[type=checkbox]:checked").count() == 18
    screenshot(page, "20-evidence-form")
    page.click("#pack-build")
    page.wait_for_selector("text=its progress is shown below")
    pack = EvidencePack.objects.get()
    assert pack.created_by.username == "aud"
    row = f"#pack-{pack.pk}"

    # The bar is fed by the build and updates in place: no reload from here on.
    page.evaluate("window.__sameDocument = true")
    seen: list[int] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        value = int(page.locator(f"{row} progress").get_attribute("value") or 0)
        if not seen or seen[-1] != value:
            seen.append(value)
            if 0 < value < 100:
                screenshot(page, "21-evidence-building")
        if value == 100 and page.get_attribute(row, "data-status") == "exported":
            break
        time.sleep(0.2)
    assert seen[-1] == 100, (seen, EvidencePack.objects.get().error)
    assert seen[0] < 100 and seen == sorted(seen), seen
    assert page.evaluate("window.__sameDocument") is True
    assert page.inner_text(f"{row} .pct") == "100 %"
    screenshot(page, "22-evidence-built")

    with page.expect_download() as download:
        page.click(f"{row} a.download")
    zipped = tmp_path / download.value.suggested_filename
    download.value.save_as(zipped)

    page.click(f"{row} >> text=#{pack.pk}")
    page.wait_for_selector("#pack-controls-summary")
    pack.refresh_from_db()
    assert pack.manifest_sha256 in page.inner_text("#manifest-sha256")
    screenshot(page, "23-evidence-detail")
    with page.expect_download() as key_download:
        page.click("text=Public key (PEM)")
    key = tmp_path / "wardgate-pack-key.pem"
    key_download.value.save_as(key)

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wardgate.settings"}
    done = subprocess.run([sys.executable, "manage.py", "verify_pack", str(zipped),
                           "--public-key", str(key)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "pack OK" in done.stdout, done.stdout + done.stderr
    assert str(pack.uuid) in done.stdout

    # The request and the download are in the audit trail, with the auditor's identity.
    page.goto(f"{base}/audit/?event=reports.")
    results = page.inner_text("#audit-results")
    for event in ("reports.pack_requested", "reports.pack_built", "reports.pack_downloaded"):
        assert event in results, event
    screenshot(page, "24-audit-pack-events")
    requested = AuditRecord.objects.get(event="reports.pack_requested")
    took = AuditRecord.objects.get(event="reports.pack_downloaded")
    for record in (requested, took):
        assert record.actor == "aud" and record.auth_method == "session"
        assert record.source_ip == "127.0.0.1" and "Chrome" in record.user_agent
    assert Path(zipped).stat().st_size == pack.file_size
