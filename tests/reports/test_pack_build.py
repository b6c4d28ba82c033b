"""A pack built in-process over a synthetic log: every file signed and listed, populations that
reconcile with the database, the assessments, OSCAL, and what verification catches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Q

from audit.models import AuditRecord
from tests.reports.conftest import MARCH, PackFile, build_pack, pack_requester, rewrite_zip

pytestmark = pytest.mark.django_db


def march() -> Any:
    return AuditRecord.objects.filter(at__gte=MARCH[0], at__lt=MARCH[1])


def test_pack_is_complete_signed_and_verifies(small_log, system_state, pack_dir, open_pack,
                                              capsys) -> None:
    pack = build_pack(created_by=system_state["auditor"])
    assert pack.status == "exported", pack.error
    assert pack.progress == 100 and pack.sha256 and pack.signature and pack.key_id
    assert pack.includes_records
    zipped = open_pack(pack)
    listed = {f["path"] for f in zipped.manifest["files"]}
    assert set(zipped.names) == listed | {"manifest.json", "manifest.sig"}
    assert {"report.pdf", "oscal/assessment-results.json", "chain/verification.json",
            "csv/audit-records.csv", "csv/calls.csv", "csv/denied-calls.csv",
            "csv/masking-actions.csv", "csv/state/accounts.csv", "README.txt"} <= listed

    call_command("verify_pack", str(zipped.path))
    out = capsys.readouterr().out
    assert "pack OK" in out and pack.key_id in out

    # The pack is an audit export of its own: recorded in the chain (AU-6).
    built = AuditRecord.objects.get(event="reports.pack_built")
    assert built.actor == "auditor" and built.detail["sha256"] == pack.sha256


def test_csv_populations_equal_database_counts(small_log, system_state, pack_dir,
                                              open_pack) -> None:
    zipped = open_pack(build_pack())
    rows = {name: zipped.csv_rows(name) for name in zipped.names if name.endswith(".csv")}
    for name, data in rows.items():  # the manifest's row counts are the files' row counts
        assert zipped.file(name).get("rows") == len(data), name
    assert len(rows["csv/audit-records.csv"]) == march().count() == small_log.records
    assert len(rows["csv/calls.csv"]) == march().filter(
        event__in=("mcp.decision", "mcp.rejected", "mcp.request")).count()
    assert len(rows["csv/denied-calls.csv"]) == march().filter(decision="deny").count()
    assert len(rows["csv/masking-actions.csv"]) == sum(len(r.masking) for r in march())
    assert len(rows["csv/account-events.csv"]) == march().filter(
        Q(event__startswith="portal.account_") | Q(event__startswith="portal.api_token_")
        | Q(event__startswith="portal.token_") | Q(event__startswith="portal.mfa_")
        | Q(event__startswith="portal.login") | Q(event__startswith="portal.logout")
        | Q(event__startswith="portal.user_")).count()
    assert len(rows["csv/incident-events.csv"]) == march().filter(
        Q(event__startswith="portal.quarantine_") | Q(event__startswith="portal.incident_")
        | Q(event__startswith="portal.approval_") | Q(event__startswith="approval.")
        | Q(decision="hold")).count()
    assert sum(int(r["records"]) for r in rows["csv/event-types.csv"]) == march().count()
    assert sum(int(r["calls"]) for r in rows["csv/calls-per-day.csv"]) == len(rows["csv/calls.csv"])
    cells = sum(int(r["cells"]) for r in rows["csv/masking-by-class.csv"])
    assert cells == sum(int(r["cells"]) for r in rows["csv/masking-actions.csv"]) > 0
    # Every file says how it was selected, and the database count it reconciled with.
    for name in ("csv/calls.csv", "csv/denied-calls.csv", "csv/masking-actions.csv",
                 "csv/state/accounts.csv"):
        entry = zipped.file(name)
        assert entry["query"] and entry["expected_rows"] == entry["rows"], name
    # Each population row names its record, whose hash is in the chain.
    first = rows["csv/denied-calls.csv"][0]
    assert AuditRecord.objects.get(seq=int(first["seq"])).hash == first["hash"]
    # Secrets never enter a pack.
    assert "upstream-secret" not in zipped.read("csv/state/connections.csv").decode()
    assert rows["csv/state/connections.csv"][0]["stored_format"] == "fernet"
    assert "token_hash" not in rows["csv/state/personal-tokens.csv"][0]


def test_assessments_per_control(small_log, system_state, pack_dir, open_pack) -> None:
    pack = build_pack()
    status = open_pack(pack).summary()
    from reports.catalog import ALL_LABELS

    assert list(status) == list(ALL_LABELS)
    for control in ("AC-2", "AC-3", "AC-6", "AU-2", "AU-3", "AU-12", "SI-19", "SI-12(1)",
                    "AU-3(3)", "IR-4", "AU-11", "AU-6"):
        assert status[control] == "evidence present", (control, pack.summary)
    gaps = {c["control"]: c["gaps"] for c in pack.summary["controls"]}
    # The synthetic log refuses some requests that name nobody: IA-2 reports them.
    assert status["IA-2"] == "gaps found"
    assert [g for g in gaps["IA-2"] if "refused requests name no actor" in g] == gaps["IA-2"]
    # No checkpoint was signed in this test: the chain verifies, but AU-9 says what is missing.
    assert status["AU-9"] == "gaps found"
    assert any("no signed checkpoints" in g for g in gaps["AU-9"])
    assert pack.summary["chain_ok"] is True
    # Demo keys are derived from the secret key: SC-28 and SC-13 say so.
    assert any("derived from the secret key" in g for g in gaps["SC-28"])
    disables = {c["control"]: dict(c["counts"]) for c in pack.summary["controls"]}["AC-2"]
    assert disables["disables in period"] == 1 and disables["slowest disable (s)"] == 0


def test_oscal_assessment_results(small_log, system_state, pack_dir, open_pack) -> None:
    zipped = open_pack(build_pack(controls=["AC-2", "AU-9", "SI-19"]))
    doc = json.loads(zipped.read("oscal/assessment-results.json"))["assessment-results"]
    assert doc["uuid"] == zipped.manifest["pack"]["uuid"]
    assert {"title", "last-modified", "version", "oscal-version"} <= set(doc["metadata"])
    assert doc["import-ap"]["href"].startswith("#")
    (result,) = doc["results"]
    assert result["start"].startswith("2026-03-01T00:00:00") and result["end"].startswith(
        "2026-04-01T00:00:00")
    selected = result["reviewed-controls"]["control-selections"][0]["include-controls"]
    assert [c["control-id"] for c in selected] == ["ac-2", "au-9", "si-19"]
    tool = result["local-definitions"]["components"][0]["uuid"]
    observations = {o["uuid"]: o for o in result["observations"]}
    files = {f["path"]: f for f in zipped.manifest["files"]}
    for obs in observations.values():
        assert obs["methods"][0] in {"TEST", "EXAMINE"} and obs["collected"]
        assert obs["origins"][0]["actors"][0] == {"type": "tool", "actor-uuid": tool}
        (evidence,) = obs["relevant-evidence"]
        props = {p["name"]: p["value"] for p in evidence["props"]}
        assert props["sha256"] == files[evidence["href"]]["sha256"]
        assert int(props["rows"]) == files[evidence["href"]].get("rows", 1)
    findings = {f["target"]["target-id"]: f for f in result["findings"]}
    assert set(findings) == {"ac-2_obj", "au-9_obj", "si-19_obj"}
    assert findings["ac-2_obj"]["target"]["status"]["state"] == "satisfied"
    assert findings["au-9_obj"]["target"]["status"]["state"] == "not-satisfied"
    for finding in findings.values():
        assert all(r["observation-uuid"] in observations for r in finding["related-observations"])
    resources = {r["rlinks"][0]["href"]: r for r in doc["back-matter"]["resources"][1:]}
    assert resources["csv/account-events.csv"]["rlinks"][0]["hashes"][0] == {
        "algorithm": "SHA-256", "value": files["csv/account-events.csv"]["sha256"]}


@pytest.mark.parametrize("tamper", ["csv", "manifest", "extra", "missing", "signature"])
def test_verify_pack_catches_tampering(small_log, pack_dir, open_pack, tmp_path, tamper) -> None:
    zipped = open_pack(build_pack(controls=["AU-2"]))
    target = tmp_path / "tampered.zip"
    if tamper == "csv":
        data = zipped.read("csv/event-types.csv").replace(b"mcp.decision,allow,",
                                                          b"mcp.decision,allow,1")
        rewrite_zip(zipped.path, target, {"csv/event-types.csv": data})
        expected = "csv/event-types.csv was altered"
    elif tamper == "manifest":
        manifest = json.loads(zipped.read("manifest.json"))
        manifest["files"][0]["sha256"] = "0" * 64
        rewrite_zip(zipped.path, target, {"manifest.json": json.dumps(manifest).encode()})
        expected = "the signature does not match manifest.json"
    elif tamper == "extra":
        rewrite_zip(zipped.path, target, {}, add={"csv/extra.csv": b"a\r\n"})
        expected = "csv/extra.csv is in the zip but not in the manifest"
    elif tamper == "missing":
        rewrite_zip(zipped.path, target, {"report.pdf": None})
        expected = "report.pdf is listed in the manifest but missing"
    else:
        rewrite_zip(zipped.path, target, {"manifest.sig": bytes(64)})
        expected = "the signature does not match"
    with pytest.raises(CommandError, match="FAILED verification") as failed:
        call_command("verify_pack", str(target))
    assert failed.value.returncode == 1 and expected in str(failed.value)


def test_verify_pack_with_another_key_fails(small_log, pack_dir, open_pack, tmp_path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from reports.keys import public_pem

    zipped = open_pack(build_pack(controls=["AU-2"]))
    other = tmp_path / "other.pem"
    other.write_text(public_pem(Ed25519PrivateKey.generate().public_key()))
    with pytest.raises(CommandError, match="signature does not match"):
        call_command("verify_pack", str(zipped.path), "--public-key", str(other))
    published = tmp_path / "published.pem"
    published.write_bytes(zipped.read("pack-public-key.pem"))
    call_command("verify_pack", str(zipped.path), "--public-key", str(published))


def test_formula_cells_are_neutralised(db, pack_dir, open_pack) -> None:
    from audit.services import AuditEntry, append_records
    from reports.synthetic import audit_load_generate

    audit_load_generate(records=50, start=MARCH[0], days=2, seed=1)
    # A portal event written now falls outside March: move the period to cover today.
    from django.utils import timezone

    append_records([AuditEntry(event="portal.account_created", actor="=HYPERLINK(\"x\")",
                               auth_method="session", decision="info",
                               detail={"account": "+cmd"})])
    today = timezone.now().date()
    import datetime as dt

    from reports.services import period_from_dates

    pack = build_pack(period=period_from_dates(today - dt.timedelta(days=1), today),
                      controls=["AC-2"], partial=True)
    row = open_pack(pack).csv_rows("csv/account-events.csv")[0]
    assert row["actor"] == "'=HYPERLINK(\"x\")"
    assert row["subject"] == "account=+cmd"  # not at the start of the cell: left as is


def test_empty_period_reports_gaps_and_still_verifies(db, pack_dir, open_pack) -> None:
    pack = build_pack(controls=["AC-2", "AU-2", "AU-12", "SI-19"])
    zipped = open_pack(pack)
    assert set(zipped.summary().values()) == {"gaps found"}
    gaps = {c["control"]: " ".join(c["gaps"]) for c in pack.summary["controls"]}
    assert "no account lifecycle events" in gaps["AC-2"]
    assert "no gateway events" in gaps["AU-2"]
    assert "no masking actions" in gaps["SI-19"]
    call_command("verify_pack", str(zipped.path))


def test_disable_that_did_not_take_effect_is_a_gap(db, configure, pack_dir) -> None:
    import datetime as dt

    from django.utils import timezone

    from audit.services import AuditEntry, append_records
    from reports.config import reports_config
    from reports.services import period_from_dates

    configure(reports_config, disable_sla_seconds=0.0)
    append_records([
        AuditEntry(event="portal.account_disabled", actor="admin", decision="info",
                   detail={"account": "mallory"}),
        AuditEntry(event="mcp.decision", actor="mallory", auth_method="oidc", decision="allow",
                   jsonrpc_method="tools/call", tool="execute_sql", connection="c",
                   request_id="r1", source_ip="10.0.0.1", detail={"role": "analyst"}),
    ])
    today = timezone.now().date()
    pack = build_pack(period=period_from_dates(today - dt.timedelta(days=1), today),
                      controls=["AC-2"], partial=True)
    (ac2,) = pack.summary["controls"]
    assert not pack.includes_records  # an AC-2 pack does not hold every record
    assert ac2["status"] == "gaps found"
    assert any("mallory" in g and "after the disable" in g for g in ac2["gaps"])


def test_unknown_control_and_bad_period_are_refused(db, pack_dir) -> None:
    with pytest.raises(CommandError, match="unknown control"):
        call_command("evidence_pack", "--from", "2026-03-01", "--to", "2026-03-31",
                     "--requested-by", pack_requester().username, "--controls", "AC-2,XX-9",
                     "--sync")
    with pytest.raises(CommandError, match="ends .* before it starts"):
        call_command("evidence_pack", "--from", "2026-03-31", "--to", "2026-03-01",
                     "--requested-by", pack_requester().username, "--sync")


def test_evidence_pack_command_sync(small_log, pack_dir, tmp_path, capsys) -> None:
    out = tmp_path / "copy.zip"
    call_command("evidence_pack", "--from", "2026-03-01", "--to", "2026-03-31", "--controls",
                 "AU-2,AU-3", "--out", str(out), "--requested-by", pack_requester().username,
                 "--sync")
    assert "pack ready" in capsys.readouterr().out
    zipped = PackFile(out)
    assert zipped.manifest["pack"]["controls"] == ["AU-2", "AU-3"]
    assert zipped.manifest["pack"]["period"] == {"start": "2026-03-01T00:00:00+00:00",
                                                 "end_exclusive": "2026-04-01T00:00:00+00:00",
                                                 "ended": True}
    assert zipped.manifest["pack"]["requested_by"] == {"kind": "person",
                                                       "name": pack_requester().username}
    assert zipped.manifest["pack"]["completeness"] == "COMPLETE"
    call_command("verify_pack", str(out))
    from audit.models import AuditRecord

    requested = AuditRecord.objects.get(event="reports.pack_requested")
    # The command names its requester (an active account) instead of the OS user.
    assert requested.actor == pack_requester().username and requested.auth_method == "cli"


def test_pack_files_are_whole_or_absent(db, pack_dir, monkeypatch) -> None:
    from reports.models import EvidencePack
    from reports.pack import builder

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(builder, "render_pdf", boom)
    with pytest.raises(RuntimeError):
        build_pack(controls=["AU-2"])
    pack = EvidencePack.objects.get()
    assert pack.status == "failed" and "disk full" in pack.error
    assert not any(Path(pack_dir).rglob("*.zip")) and not any(Path(pack_dir).iterdir())


def test_pack_states_which_chain_verification_it_used(small_log, pack_dir, open_pack) -> None:
    from audit.checkpoints import checkpoint_create, checkpoint_export
    from audit.control_models import AuditVerifiedThrough

    # No signed, exported checkpoint yet: every record is recomputed.
    first = json.loads(open_pack(build_pack()).read("chain/verification.json"))
    assert first["ok"] and first["mode"] == "full"
    assert first["chain"]["records_checked"] >= 3000 and first["verified_through"] is None

    checkpoint_create()
    checkpoint_export()
    second = json.loads(open_pack(build_pack()).read("chain/verification.json"))
    assert second["ok"] and second["mode"] == "full"  # it leaves the signed marker
    marker = AuditVerifiedThrough.objects.get()

    # The next pack recomputes only the records after the marker, and says since when.
    third_pack = build_pack()
    third = json.loads(open_pack(third_pack).read("chain/verification.json"))
    assert third["ok"] and third["mode"] == "incremental"
    assert third["verified_through"]["seq"] == marker.seq
    assert third["chain"]["records_checked"] == third["chain"]["head_seq"] - marker.seq
    assert f"records 1..{marker.seq} were recomputed" in third["mode_reason"]
    stats = next(e for e in open_pack(third_pack).manifest["files"]
                 if e["path"] == "chain/verification.json")
    assert "incremental recomputation" in stats["query"]
