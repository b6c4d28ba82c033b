"""The auditor's journey outside the browser: the Evidence pages and the packs API (with a
portal API token), who may use them, and what an assessor checks in the pack itself: the
requester and the system named everywhere, PARTIAL periods, OSCAL that validates against NIST's
schema and claims only the technical objective, the gaps and populations, the PDF's metadata and
samples, and verify_pack on a pack unzipped and zipped again."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from audit.models import AuditRecord
from portal.services.api_tokens import api_token_issue
from reports.models import EvidencePack
from reports.services import evidence_pack_build, period_from_dates
from tests.portal.conftest import client_for, portal_user
from tests.reports.conftest import MARCH, PackFile, build_pack, require_tool

pytestmark = pytest.mark.django_db

SCHEMA = Path(__file__).resolve().parent / "oscal" / "oscal_assessment-results_schema.json"
SCHEMA_SHA256 = "d033da70154cf6625ae46a746199e88e58f2928b1387dfac051d381b92f41b0d"


def oscal_errors(document: dict[str, Any]) -> list[str]:
    """Every violation of NIST's OSCAL 1.1.2 assessment-results schema (with `pattern` checked by
    the `regex` module: the schema uses \\p{L})."""
    import jsonschema
    import regex

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, "string") and not regex.search(patrn, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    raw = SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256  # the vendored file is untouched
    validator_class = jsonschema.validators.extend(jsonschema.Draft7Validator,
                                                   {"pattern": pattern})
    validator = validator_class(json.loads(raw),
                                format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
            for e in validator.iter_errors(document)]


def _last_day(pack: EvidencePack) -> str:
    return (pack.period_end - dt.timedelta(days=1)).date().isoformat()


# -- the portal pages ----------------------------------------------------------------------------

def test_evidence_page_build_watch_detail_download(small_log, system_state, pack_dir) -> None:
    auditor = portal_user("aud", "auditor")
    client = client_for(auditor)
    page = client.get("/evidence/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="/evidence/"' in html and ">Evidence</a>" in html  # in the navigation
    assert "AC-2 Account Management" in html and "IR-4 Incident Handling" in html
    assert 'data-preset="last-month"' in html and 'type="date"' in html

    # A period that has not ended is refused with a clear message, and nothing is queued.
    today = timezone.now().date()
    refused = client.post("/evidence/", {"first_day": today.replace(day=1).isoformat(),
                                         "last_day": today.isoformat()})
    assert refused.status_code == 200 and "has not ended yet" in refused.content.decode()
    assert not EvidencePack.objects.exists()
    backwards = client.post("/evidence/", {"first_day": "2026-03-31", "last_day": "2026-03-01"})
    assert "before it starts" in backwards.content.decode()

    made = client.post("/evidence/", {"first_day": "2026-03-01", "last_day": "2026-03-31",
                                      "controls": ["AC-2", "AU-6", "IA-2"]})
    assert made.status_code == 302
    pack = EvidencePack.objects.get()
    assert pack.created_by == auditor and pack.controls == ["AC-2", "IA-2", "AU-6"]
    requested = AuditRecord.objects.get(event="reports.pack_requested")
    assert requested.actor == "aud" and requested.auth_method == "session"
    history = client.get("/evidence/history/").content.decode()
    assert f'id="pack-{pack.pk}"' in history and 'data-status="queued"' in history
    assert 'hx-trigger="every 1s"' in history  # polls while a pack builds
    assert f"/evidence/{pack.pk}/download/" not in history

    evidence_pack_build(pack=pack)
    history = client.get("/evidence/history/").content.decode()
    assert 'data-status="exported"' in history and 'data-progress="100"' in history
    assert f"/evidence/{pack.pk}/download/" in history and "hx-trigger" not in history
    assert "aud" in history and f"#{pack.parameters['head_seq']}" in history

    detail = client.get(f"/evidence/{pack.pk}/").content.decode()
    pack.refresh_from_db()
    assert pack.manifest_sha256 in detail and "verify_pack" in detail and "openssl" in detail
    assert 'href="/evidence/public-key.pem"' in detail
    # Each control links into the audit browser, filtered to its records.
    link = re.search(r'id="control-AC-2".*?href="(/audit/\?[^"]+)"', detail, re.S)
    assert link is not None
    audit = client.get(link.group(1).replace("&amp;", "&"))
    assert audit.status_code == 200
    shown = audit.content.decode()
    assert "portal.account_" in shown and "2026-03-01T00:00" in shown

    download = client.get(f"/evidence/{pack.pk}/download/")
    assert download.status_code == 200
    body = b"".join(download.streaming_content)
    assert hashlib.sha256(body).hexdigest() == pack.sha256 == download["X-Pack-SHA256"]
    took = AuditRecord.objects.get(event="reports.pack_downloaded")
    assert (took.actor, took.auth_method, took.detail["pack"]) == ("aud", "session",
                                                                   str(pack.uuid))
    key = client.get("/evidence/public-key.pem")
    zipped = PackFile(pack_dir / pack.file_name)
    assert key.content == zipped.read("pack-public-key.pem")
    assert client.get("/evidence/999999/").status_code == 404
    assert client.get("/evidence/999999/download/").status_code == 404


def test_failed_builds_show_why(db, pack_dir, monkeypatch) -> None:
    from reports.pack import builder

    client = client_for(portal_user("aud", "auditor"))
    client.post("/evidence/", {"first_day": "2026-03-01", "last_day": "2026-03-31",
                               "controls": ["AU-2"]})
    pack = EvidencePack.objects.get()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(builder.PackBuilder, "build", broken)
    with pytest.raises(OSError):
        evidence_pack_build(pack=pack)
    history = client.get("/evidence/history/").content.decode()
    assert 'data-status="failed"' in history and "Failed: OSError: disk full" in history


# -- the API -------------------------------------------------------------------------------------

def _bearer(user: Any) -> Client:
    _, plaintext = api_token_issue(user=user, name="grc", by=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")


def test_api_with_a_portal_token(small_log, system_state, pack_dir) -> None:
    grc = _bearer(portal_user("grc-bot", "auditor"))
    bad = grc.post("/api/v1/evidence-packs/", {"first_day": "2026-03-01", "last_day": "2026-03-31",
                                               "controls": ["ZZ-9"]},
                   content_type="application/json")
    assert bad.status_code == 400
    today = timezone.now().date().isoformat()
    ongoing = grc.post("/api/v1/evidence-packs/", {"first_day": today, "last_day": today},
                       content_type="application/json")
    assert ongoing.status_code == 400 and "has not ended" in ongoing.content.decode()
    made = grc.post("/api/v1/evidence-packs/", {"first_day": "2026-03-01",
                                                "last_day": "2026-03-31", "controls": ["AU-2"]},
                    content_type="application/json")
    assert made.status_code == 202, made.content
    body = made.json()
    assert body["status"] == "queued" and body["requested_by"] == "grc-bot"
    assert AuditRecord.objects.get(event="reports.pack_requested").auth_method == "api_token"
    progress = grc.get(f"/api/v1/evidence-packs/{body['id']}/progress/").json()
    assert progress["progress"] == 0 and not progress["finished"]
    assert grc.get(f"/api/v1/evidence-packs/{body['id']}/download/").status_code == 404

    evidence_pack_build(pack=EvidencePack.objects.get(pk=body["id"]))
    progress = grc.get(f"/api/v1/evidence-packs/{body['id']}/progress/").json()
    assert progress["status"] == "exported" and progress["progress"] == 100
    assert progress["records_processed"] == 3000 and progress["chain_head_seq"] >= 3000
    assert grc.get("/api/v1/evidence-packs/").json()[0]["id"] == body["id"]
    download = grc.get(f"/api/v1/evidence-packs/{body['id']}/download/")
    assert download.status_code == 200
    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == progress["sha256"]
    took = AuditRecord.objects.get(event="reports.pack_downloaded")
    assert (took.actor, took.auth_method) == ("grc-bot", "api_token")
    key = grc.get("/api/v1/evidence-packs/public-key/")
    assert key.status_code == 200 and key.content.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert key["X-Key-Id"] == progress["key_id"]
    schema = grc.get("/api/schema/").content.decode()
    for path in ("/api/v1/evidence-packs/", "/api/v1/evidence-packs/{id}/progress/",
                 "/api/v1/evidence-packs/{id}/download/", "/api/v1/evidence-packs/public-key/"):
        assert path in schema, path


EVIDENCE_PAGES = ["/evidence/", "/evidence/history/", "/evidence/public-key.pem",
                  "/evidence/{pk}/", "/evidence/{pk}/download/"]
EVIDENCE_API = ["/api/v1/evidence-packs/", "/api/v1/evidence-packs/{pk}/progress/",
                "/api/v1/evidence-packs/{pk}/download/", "/api/v1/evidence-packs/public-key/"]


@pytest.mark.parametrize("role", ["engineer", "approver"])
def test_engineers_and_approvers_get_403_everywhere(small_log, pack_dir, role) -> None:
    pack = build_pack(controls=["AU-2"])
    user = portal_user(f"u-{role}", role)
    session, token = client_for(user), _bearer(user)
    for url in EVIDENCE_PAGES + EVIDENCE_API:
        url = url.format(pk=pack.pk)
        for client in (session, token) if url.startswith("/api/") else (session,):
            assert client.get(url).status_code == 403, (role, url)
    assert session.post("/evidence/", {"first_day": "2026-03-01",
                                       "last_day": "2026-03-31"}).status_code == 403
    assert token.post("/api/v1/evidence-packs/", {"first_day": "2026-03-01",
                                                  "last_day": "2026-03-31"},
                      content_type="application/json").status_code == 403
    assert EvidencePack.objects.count() == 1
    assert not AuditRecord.objects.filter(event="reports.pack_downloaded").exists()
    assert ">Evidence</a>" not in session.get("/").content.decode()


# -- what the assessor checks in the pack ----------------------------------------------------

def test_oscal_validates_and_names_requester_system_and_scope(small_log, system_state, pack_dir,
                                                              configure, open_pack) -> None:
    from dataclasses import replace

    from reports.config import reports_config

    configure(reports_config, identity=replace(reports_config().identity,
                                               organisation="Example Health Ltd",
                                               environment="staging"))
    zipped = open_pack(build_pack())
    doc = json.loads(zipped.read("oscal/assessment-results.json"))
    assert oscal_errors(doc) == []
    ar = doc["assessment-results"]
    meta = ar["metadata"]
    parties = {p["uuid"]: p for p in meta["parties"]}
    responsible = {r["role-id"]: r["party-uuids"] for r in meta["responsible-parties"]}
    (prepared,) = responsible["prepared-by"]
    assert parties[prepared] == {**parties[prepared], "type": "person", "name": "pack-auditor"}
    (owner,) = responsible["system-owner"]
    assert parties[owner]["name"] == "Example Health Ltd"
    props = {p["name"]: p["value"] for p in meta["props"]}
    assert props["environment"] == "staging" and props["completeness"] == "COMPLETE"
    assert props["requested-by"] == "person:pack-auditor"
    # import-ap: a documented placeholder, unless the organisation names its plan.
    plan = ar["import-ap"]["href"].removeprefix("#")
    (placeholder,) = [r for r in ar["back-matter"]["resources"] if r["uuid"] == plan]
    assert "placeholder" in placeholder["title"].lower()
    assert "WARDGATE_PACK_ASSESSMENT_PLAN_URL" in ar["import-ap"]["remarks"]
    # Findings claim only the technical objective and say what is organisational.
    (result,) = ar["results"]
    for finding in result["findings"]:
        assert "technical objective" in finding["title"]
        assert {"name": "objective-scope", "ns": "https://wardgate.dev/ns/oscal",
                "value": "technical"} in finding["target"]["props"]
        assert "organisational parts are not assessed" in finding["target"]["status"]["remarks"]
        assert finding["target"]["remarks"]
    ac2 = next(f for f in result["findings"] if f["target"]["target-id"] == "ac-2_obj")
    assert "review frequency" in ac2["target"]["remarks"]
    assert "](#" not in json.dumps(doc)  # no raw markdown links from NIST's text
    manifest = zipped.manifest["pack"]
    assert manifest["system_identification"]["organisation"] == "Example Health Ltd"
    assert manifest["requested_by"] == {"kind": "person", "name": "pack-auditor"}

    configure(reports_config, identity=replace(
        reports_config().identity, assessment_plan_url="https://grc.example.com/sap/2026.json"))
    ar = json.loads(open_pack(build_pack(controls=["AU-2"])).read(
        "oscal/assessment-results.json"))
    assert ar["assessment-results"]["import-ap"] == {
        "href": "https://grc.example.com/sap/2026.json"}
    assert oscal_errors(ar) == []


def test_the_schema_check_catches_a_broken_document(small_log, pack_dir, open_pack) -> None:
    doc = json.loads(open_pack(build_pack(controls=["AU-2"])).read(
        "oscal/assessment-results.json"))
    del doc["assessment-results"]["metadata"]["parties"][0]["type"]
    doc["assessment-results"]["results"][0]["findings"][0]["target"]["status"]["state"] = "ok"
    doc["assessment-results"]["metadata"]["props"][0]["name"] = "1 bad"
    errors = oscal_errors(doc)
    assert len(errors) >= 3, errors


def test_a_partial_period_is_marked_partial_everywhere(small_log, pack_dir, open_pack,
                                                       tmp_path) -> None:
    today = timezone.now().date()
    start, end = period_from_dates(today - dt.timedelta(days=2), today)
    pack = build_pack(period=(start, end), controls=["AU-2", "AC-2"], partial=True)
    assert pack.partial
    zipped = open_pack(pack)
    assert zipped.manifest["pack"]["completeness"] == "PARTIAL"
    assert zipped.manifest["pack"]["period"]["ended"] is False
    doc = json.loads(zipped.read("oscal/assessment-results.json"))
    assert oscal_errors(doc) == []
    ar = doc["assessment-results"]
    assert ar["metadata"]["title"].endswith("PARTIAL")
    assert {"name": "completeness", "ns": "https://wardgate.dev/ns/oscal",
            "value": "PARTIAL"} in ar["results"][0]["props"]
    for control in pack.summary["controls"]:
        assert control["status"] == "gaps found"
        assert any("had not ended" in g for g in control["gaps"])
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(zipped.read("report.pdf"))
    text = subprocess.run([require_tool("pdftotext"), "-layout", str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "Evidence pack — PARTIAL" in text and "PARTIAL (not ended)" in text
    assert zipped.read("README.txt").startswith(b"PARTIAL PACK")


def test_gaps_an_assessor_would_find(db, pack_dir, open_pack, tmp_path) -> None:
    """A grant made behind the portal's back (no creator, no event), an admin without MFA and a
    refused request that names nobody are gaps; the populations show who holds what."""
    from audit.services import AuditEntry, append_records
    from portal.models import Connection, Grant, Role
    from portal.services.grants import grant_create

    admin = portal_user("root-admin", "admin", mfa=False)
    portal_user("safe-approver", "approver")  # with TOTP
    holder = portal_user("hana", "engineer")
    by = portal_user("ada", "admin")
    conn = Connection.objects.create(slug="bq", name="bq", upstream_url="http://x/mcp")
    role = Role.objects.create(name="reader", rules={"tools": ["execute_sql"]})
    proper = grant_create(role=role, connection=conn, user=holder, by=by, reason="project")
    sneaky = Grant.objects.create(role=role, connection=conn, user=admin, reason="")
    append_records([
        AuditEntry(event="mcp.decision", actor="hana", auth_method="personal_token",
                   decision="allow", jsonrpc_method="tools/call", tool="execute_sql",
                   connection="bq", request_id="r1", source_ip="10.0.0.1",
                   detail={"role": "reader"}),
        AuditEntry(event="mcp.rejected", actor="", auth_method="none", decision="deny",
                   connection="bq", request_id="r2", source_ip="203.0.113.9",
                   reasons=[{"rule": "auth.invalid_token", "message": "bad token"}]),
    ])
    yesterday = timezone.now().date() - dt.timedelta(days=1)
    pack = build_pack(period=period_from_dates(yesterday, timezone.now().date()),
                      controls=["AC-2", "IA-2"], partial=True, created_by=by)
    gaps = {c["control"]: " | ".join(c["gaps"]) for c in pack.summary["controls"]}
    assert f"record no created_by (ids {sneaky.pk})" in gaps["AC-2"]
    assert f"no portal.grant_created audit record (ids {sneaky.pk})" in gaps["AC-2"]
    assert f"1 grant(s) record no created_by (ids {sneaky.pk})" in gaps["AC-2"]  # only it
    assert "1 refused requests name no actor" in gaps["IA-2"]
    assert "IA-2(1): 1 active privileged account(s) have no second factor enrolled: " \
           "root-admin" in gaps["IA-2"]
    zipped = open_pack(pack)
    review = {(r["grant_id"], r["holder"]): r for r in zipped.csv_rows("csv/state/access-review.csv")}
    row = review[(str(proper.pk), "hana")]
    assert row["granted_by"] == "ada" and row["creation_event_seq"] and row["status"] == "active"
    assert row["last_used_at"].startswith(timezone.now().date().isoformat())
    assert review[(str(sneaky.pk), "root-admin")]["granted_by"] == ""
    assert review[(str(sneaky.pk), "root-admin")]["last_used_at"] == "never"
    mfa = {r["username"]: r for r in zipped.csv_rows("csv/state/privileged-accounts-mfa.csv")}
    assert set(mfa) == {"root-admin", "safe-approver", "ada"}
    assert mfa["root-admin"]["mfa_enrolled"] == "False"
    assert mfa["safe-approver"]["factors"] == "totp"


def test_monthly_pack_is_attributed_to_the_schedule(small_log, pack_dir, open_pack) -> None:
    from reports.services import evidence_pack_schedule_monthly

    pack = evidence_pack_schedule_monthly(now=dt.datetime(2026, 4, 1, 1, 30, tzinfo=dt.UTC))
    assert pack is not None and pack.created_by is None
    evidence_pack_build(pack=pack)
    zipped = open_pack(pack)
    assert zipped.manifest["pack"]["requested_by"] == {
        "kind": "schedule", "name": "reports.evidence_pack_monthly"}
    meta = json.loads(zipped.read("oscal/assessment-results.json"))["assessment-results"][
        "metadata"]
    (prepared,) = [r for r in meta["responsible-parties"] if r["role-id"] == "prepared-by"]
    assert "monthly schedule" in prepared["remarks"]
    built = AuditRecord.objects.get(event="reports.pack_built")
    assert built.actor == "reports.evidence_pack_monthly"
    client = client_for(portal_user("aud", "auditor"))
    assert "schedule (reports.evidence_pack_monthly)" in client.get(
        "/evidence/history/").content.decode()


def test_pdf_metadata_statements_and_sample_hashes(small_log, system_state, pack_dir, open_pack,
                                                   tmp_path) -> None:
    pack = build_pack(controls=["AC-3", "AU-12", "AU-2"])
    zipped = open_pack(pack)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(zipped.read("report.pdf"))
    info = subprocess.run([require_tool("pdfinfo"), "-isodates", str(pdf)], capture_output=True,
                          text=True, check=True).stdout
    created = re.search(r"^CreationDate:\s+(\S+)", info, re.M)
    assert created is not None
    generated = zipped.manifest["pack"]["generated_at"]
    assert created.group(1)[:19] == generated[:19]  # the real time, not 2000-01-01
    text = subprocess.run([require_tool("pdftotext"), "-raw", str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "](#" not in text and "defined in AU-2a" in text
    assert "Requested by" in text and "pack-auditor" in text and "Organisation" in text
    assert "Organisational parts, outside the tool" in text
    squashed = re.sub(r"\s+", "", text)
    sampled = zipped.csv_rows("csv/calls.csv")
    hashes = {r["seq"]: r["hash"] for r in sampled}
    shown = [h for h in hashes.values() if h in squashed]
    assert len(shown) >= 5  # the sampled records' hashes, traceable to the chain


def test_verify_pack_accepts_a_rezipped_pack_but_no_change(small_log, pack_dir, open_pack,
                                                           tmp_path) -> None:
    unzip, zip_ = require_tool("unzip"), require_tool("zip")
    original = open_pack(build_pack(controls=["AU-2", "AU-9"])).path
    unpacked = tmp_path / "unpacked"
    subprocess.run([unzip, "-q", str(original), "-d", str(unpacked)], check=True)

    def rezip(name: str) -> Path:
        target = tmp_path / name
        subprocess.run([zip_, "-q", "-r", str(target), "."], cwd=unpacked, check=True)
        return target

    same = rezip("same.zip")
    import zipfile

    assert any(i.is_dir() for i in zipfile.ZipFile(same).infolist())  # zip -r adds directories
    call_command("verify_pack", str(same))

    (unpacked / "csv" / "event-types.csv").write_bytes(
        (unpacked / "csv" / "event-types.csv").read_bytes() + b"x,y,1,1,1\n")
    with pytest.raises(CommandError, match="event-types.csv was altered"):
        call_command("verify_pack", str(rezip("changed.zip")))
    subprocess.run([unzip, "-q", "-o", str(original), "csv/event-types.csv", "-d",
                    str(unpacked)], check=True)
    (unpacked / "csv" / "extra.csv").write_text("a\n")
    with pytest.raises(CommandError, match="extra.csv is in the zip but not in the manifest"):
        call_command("verify_pack", str(rezip("added.zip")))
    (unpacked / "csv" / "extra.csv").unlink()
    (unpacked / "report.pdf").unlink()
    with pytest.raises(CommandError, match="report.pdf is listed in the manifest but missing"):
        call_command("verify_pack", str(rezip("missing.zip")))
    # A "directory" entry that carries bytes is a file, not a directory.
    smuggled = tmp_path / "smuggled.zip"
    with zipfile.ZipFile(original) as src, zipfile.ZipFile(smuggled, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr("csv/", b"hidden")
    with pytest.raises(CommandError, match="csv/ is in the zip but not in the manifest"):
        call_command("verify_pack", str(smuggled))


def test_cli_needs_requested_by(small_log, pack_dir, capsys) -> None:
    with pytest.raises(CommandError, match="no such active account"):
        call_command("evidence_pack", "--from", "2026-03-01", "--to", "2026-03-31",
                     "--requested-by", "nobody", "--sync")
    portal_user("cli-auditor", "auditor")
    call_command("evidence_pack", "--from", "2026-03-01", "--to", "2026-03-31",
                 "--requested-by", "cli-auditor", "--controls", "AU-2", "--sync")
    pack = EvidencePack.objects.get()
    assert pack.created_by.username == "cli-auditor"
    requested = AuditRecord.objects.get(event="reports.pack_requested")
    assert (requested.actor, requested.auth_method) == ("cli-auditor", "cli")
    assert (pack.period_start, pack.period_end) == MARCH


def test_a_download_that_cannot_be_recorded_sends_nothing(small_log, pack_dir,
                                                          monkeypatch) -> None:
    """AU-9/AU-6: no unrecorded export. If the audit write fails, the zip does not leave."""
    import reports.services

    pack = build_pack(controls=["AU-2"])
    client = client_for(portal_user("aud", "auditor"))

    def refuse(entries: Any) -> Any:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(reports.services, "append_records", refuse)
    with pytest.raises(RuntimeError, match="audit store unavailable"):
        client.get(f"/evidence/{pack.pk}/download/")
    client.raise_request_exception = False
    response = client.get(f"/evidence/{pack.pk}/download/")
    assert response.status_code == 500 and b"PK" not in response.content
    api = _bearer(portal_user("grc", "auditor"))
    api.raise_request_exception = False
    response = api.get(f"/api/v1/evidence-packs/{pack.pk}/download/")
    assert response.status_code == 500 and not response.content.startswith(b"PK")


def test_progress_comes_from_the_celery_task_while_it_runs(db) -> None:
    """The bar shows the task's own PROGRESS report (result backend) while the build runs; the
    pack row, written by the same callback, is the fallback."""
    from reports.selectors import evidence_pack_progress
    from wardgate.celery import app

    pack = EvidencePack.objects.create(period_start=MARCH[0], period_end=MARCH[1],
                                       status="running", progress=10, stage="row stage",
                                       records_processed=5, task_id=uuid.uuid4().hex)
    assert evidence_pack_progress(pack)["progress"] == 10  # no task report yet
    app.backend.store_result(pack.task_id, {"percent": 42, "stage": "reading the audit records",
                                            "records": 1234}, "PROGRESS")
    shown = evidence_pack_progress(pack)
    assert (shown["progress"], shown["stage"], shown["records_processed"]) == (
        42, "reading the audit records", 1234)
    EvidencePack.objects.filter(pk=pack.pk).update(status="exported", progress=100)
    pack.refresh_from_db()
    assert evidence_pack_progress(pack)["progress"] == 100  # finished: the row is the truth


# -- what a new auditor does with the page's own words ------------------------------------------

def _verify_instructions(detail: str) -> tuple[str, str]:
    """The two command blocks of the pack page's "Verify it" card: (Wardgate, OpenSSL)."""
    import html

    card = detail[detail.index('id="verify"'):]
    blocks = [html.unescape(b) for b in re.findall(r"<pre>(.*?)</pre>", card, re.S)]
    assert len(blocks) == 2, blocks
    return blocks[0], blocks[1]


def _attachment_name(response: Any) -> str:
    found = re.search(r'filename="([^"]+)"', response["Content-Disposition"])
    assert found is not None, response["Content-Disposition"]
    return found.group(1)


def test_the_verify_commands_on_the_pack_page_verify_the_download(
        small_log, system_state, pack_dir, tmp_path, monkeypatch) -> None:
    """Download the zip and the key from the pages (under the names the browser saves them as),
    then run the pack page's commands exactly as shown: they verify; a changed file fails."""
    import shlex

    for tool in ("bash", "unzip", "openssl", "sha256sum", "python3"):
        require_tool(tool)
    client = client_for(portal_user("aud", "auditor"))
    client.post("/evidence/", {"first_day": "2026-03-01", "last_day": "2026-03-31",
                               "controls": ["AU-2", "AU-9"]})
    pack = evidence_pack_build(pack=EvidencePack.objects.get())
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    zipped = client.get(f"/evidence/{pack.pk}/download/")
    (downloads / _attachment_name(zipped)).write_bytes(b"".join(zipped.streaming_content))
    key = client.get("/evidence/public-key.pem")
    (downloads / _attachment_name(key)).write_bytes(key.content)
    wardgate, plain = _verify_instructions(client.get(f"/evidence/{pack.pk}/").content.decode())

    # manage.py verify_pack, with the arguments the page shows, from the download folder.
    argv = shlex.split(wardgate)
    assert argv[:3] == ["python", "manage.py", "verify_pack"]
    monkeypatch.chdir(downloads)
    call_command(*argv[2:])

    # OpenSSL and coreutils only, the lines pasted into a shell as they are.
    def run(workdir: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", plain], cwd=workdir,
                              capture_output=True, text=True, timeout=60)

    done = run(downloads)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{pack.manifest_sha256}  manifest.json" in done.stdout  # what the page says to expect
    assert "Signature Verified Successfully" in done.stdout
    files = PackFile(pack_dir / pack.file_name).manifest["files"]
    assert done.stdout.count(": OK\n") == len(files) > 5

    # The same commands on a pack one of whose files was changed after signing: they fail.
    import zipfile

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / _attachment_name(key)).write_bytes(key.content)
    with zipfile.ZipFile(downloads / pack.file_name) as src, \
            zipfile.ZipFile(tampered / pack.file_name, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info, data + b"x,1\n" if info.filename == "csv/event-types.csv" else data)
    failed = run(tampered)
    assert failed.returncode != 0 and "csv/event-types.csv: FAILED" in failed.stdout


def test_partial_period_from_the_page_and_the_api_and_coming_back(small_log, pack_dir,
                                                                  open_pack) -> None:
    """Ticking "Partial period" builds a pack of a month not over yet, marked PARTIAL in the
    history, on its page and in its manifest; leaving and opening Evidence again shows the
    build where it is, polled in place."""
    client = client_for(portal_user("aud", "auditor"))
    today = timezone.now().date()
    first = (today - dt.timedelta(days=3)).isoformat()
    made = client.post("/evidence/", {"first_day": first, "last_day": today.isoformat(),
                                      "partial": "on", "controls": ["AU-2"]})
    assert made.status_code == 302
    pack = EvidencePack.objects.get()
    assert pack.partial and "PARTIAL" in client.get(made["Location"]).content.decode()
    EvidencePack.objects.filter(pk=pack.pk).update(status="running", progress=37,
                                                   stage="reading the audit records",
                                                   records_processed=1200)
    client.get("/audit/")  # the auditor goes elsewhere, then comes back
    back = client.get("/evidence/").content.decode()
    row = re.search(rf'<tr id="pack-{pack.pk}".*?</tr>', back, re.S)
    assert row is not None
    assert 'data-progress="37"' in row.group(0) and "1200 records read" in row.group(0)
    assert "PARTIAL" in row.group(0) and 'hx-trigger="every 1s"' in back
    EvidencePack.objects.filter(pk=pack.pk).update(status="queued")
    evidence_pack_build(pack=pack)
    assert open_pack(pack).manifest["pack"]["completeness"] == "PARTIAL"
    assert "PARTIAL" in client.get(f"/evidence/{pack.pk}/").content.decode()

    grc = _bearer(portal_user("grc", "auditor"))
    body = grc.post("/api/v1/evidence-packs/", {"first_day": first, "last_day": today.isoformat(),
                                                "partial": True, "controls": ["AU-2"]},
                    content_type="application/json")
    assert body.status_code == 202 and body.json()["partial"] is True


@pytest.mark.parametrize(("today", "expected"), [
    (dt.date(2026, 5, 20), {"last-month": ("2026-04-01", "2026-04-30"),
                            "last-quarter": ("2026-01-01", "2026-03-31"),
                            "year-to-date": ("2026-01-01", "2026-05-19")}),
    (dt.date(2026, 1, 15), {"last-month": ("2025-12-01", "2025-12-31"),
                            "last-quarter": ("2025-10-01", "2025-12-31"),
                            "year-to-date": ("2026-01-01", "2026-01-14")}),
    (dt.date(2026, 3, 1), {"last-month": ("2026-02-01", "2026-02-28"),
                           "last-quarter": ("2025-10-01", "2025-12-31"),
                           "year-to-date": ("2026-01-01", "2026-02-28")}),
])
def test_period_presets(today: dt.date, expected: dict[str, tuple[str, str]]) -> None:
    from reports.forms import period_presets

    shown = {p["id"]: (p["first"].isoformat(), p["last"].isoformat())
             for p in period_presets(today)}
    assert shown == expected


def test_the_beat_task_builds_last_month_for_the_schedule(small_log, pack_dir) -> None:
    """The task Celery beat runs (not only the service under it): last calendar month, every
    control, attributed to the schedule in the history, its progress the task's own."""
    from reports.tasks import evidence_pack_monthly_task

    result = evidence_pack_monthly_task.apply()
    assert result.successful(), result.traceback
    pack = EvidencePack.objects.get()
    first_this = timezone.now().date().replace(day=1)
    assert (pack.status, pack.trigger, pack.created_by) == ("exported", "schedule", None)
    assert pack.period_end.date() == first_this and len(pack.controls) == 18
    assert pack.task_id == result.id and result.result["sha256"] == pack.sha256
    history = client_for(portal_user("aud", "auditor")).get("/evidence/").content.decode()
    assert "schedule (reports.evidence_pack_monthly)" in history
    assert evidence_pack_monthly_task.apply().result is None  # beat firing twice: one pack
    assert EvidencePack.objects.count() == 1


@pytest.mark.parametrize(("today", "first", "last"), [
    (dt.datetime(2026, 2, 10, 9, tzinfo=dt.UTC), dt.date(2026, 1, 1), dt.date(2026, 1, 31)),
    (dt.datetime(2026, 3, 1, 0, 5, tzinfo=dt.UTC), dt.date(2026, 2, 1), dt.date(2026, 2, 28)),
])
def test_demo_load_fills_last_month_and_nothing_after(db, monkeypatch, today, first,
                                                      last) -> None:
    """`generate_audit_load N` (the README's first step) covers every day of last month and
    nothing after it: no day of a 31-day month without records (an AU-12 gap), no February
    load spilling into this month."""
    import types

    from reports.management.commands import generate_audit_load

    monkeypatch.setattr(generate_audit_load, "timezone", types.SimpleNamespace(now=lambda: today))
    call_command("generate_audit_load", "600")
    days = {at.date() for at in AuditRecord.objects.values_list("at", flat=True)}
    assert min(days) == first and max(days) == last
    assert len(days) == (last - first).days + 1
