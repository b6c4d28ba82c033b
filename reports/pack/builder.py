"""Assembling one pack: evidence queries -> CSVs, assessments, PDF, OSCAL, manifest, signature.

The zip is written under a temporary name next to its final place and renamed only once it is
complete and signed, so a pack file that exists is a whole pack.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from django.db import connection
from django.db.models import Max, Min

from audit.models import AuditChainHead, AuditRecord
from audit.services import HEAD_ID
from reports import catalog
from reports.catalog import Assessment, ControlSpec
from reports.config import reports_config
from reports.evidence import chain as chain_evidence
from reports.evidence import events, records, state
from reports.evidence.base import Evidence, PackScope
from reports.keys import key_id, load_private_key, public_pem
from reports.nist import nist_catalog_load

from .archive import PackArchive
from .manifest import FORMAT, MANIFEST, SIGNATURE, manifest_bytes
from .oscal import assessment_results
from .provenance import Requester, SystemIdentity
from .report_context import ReportContext, SampleTable

GENERATOR = "wardgate-reports"
# progress(percent, stage, audit records read so far)
Progress = Callable[[int, str, int], None]


def generator_version() -> str:
    try:
        return version("wardgate")
    except PackageNotFoundError:
        return "0+unknown"


def render_pdf(path: Path, ctx: ReportContext) -> None:
    """Draw the PDF report. reportlab is imported here, when a pack is built (in a worker), not
    by every portal process: the portal's views import this module."""
    from .pdf import render_pdf as draw

    draw(path, ctx)


@dataclass(frozen=True, slots=True)
class BuiltPack:
    path: Path
    sha256: str
    size: int
    manifest_sha256: str
    signature: str  # base64
    key_id: str
    summary: dict[str, Any]


def pack_scope(period_start: dt.datetime, period_end: dt.datetime, *, sample_size: int,
               seed: int) -> PackScope:
    head = AuditChainHead.objects.filter(pk=HEAD_ID).values_list("seq", flat=True).first()
    head_seq = head if head is not None else (
        AuditRecord.objects.aggregate(m=Max("seq"))["m"] or 0)
    span = (AuditRecord.objects.filter(at__gte=period_start, at__lt=period_end,
                                       seq__lte=head_seq)
            .aggregate(first=Min("seq"), last=Max("seq")))
    return PackScope(period_start=period_start, period_end=period_end, head_seq=head_seq,
                     first_seq=span["first"], last_seq=span["last"],
                     generated_at=dt.datetime.now(dt.UTC), sample_size=sample_size, seed=seed,
                     database=connection.vendor)


class PackBuilder:
    """Builds one pack file. `progress(percent, stage, records)` is called as it goes."""

    def __init__(self, *, pack_uuid: uuid.UUID, period_start: dt.datetime,
                 period_end: dt.datetime, controls: tuple[ControlSpec, ...], out_dir: Path,
                 requester: Requester, identity: SystemIdentity | None = None,
                 progress: Progress | None = None) -> None:
        self.pack_uuid = pack_uuid
        self.period_start = period_start
        self.period_end = period_end
        self.controls = controls
        self.out_dir = out_dir
        self.requester = requester
        self.identity = identity or SystemIdentity.configured()
        self.records_done = 0
        self._progress = progress or (lambda percent, stage, records: None)
        self.needed = catalog.evidence_needed(controls)
        self.evidence: dict[str, Evidence] = {}
        self.private_key = load_private_key(reports_config().signing_key)
        self.key_id = key_id(self.private_key.public_key())

    def progress(self, percent: int, stage: str) -> None:
        self._progress(percent, stage, self.records_done)

    def _keep(self, ev: Evidence) -> None:
        ev.controls = catalog.controls_of(ev.name, self.controls)
        self.evidence[ev.name] = ev

    def file_name(self) -> str:
        return (f"wardgate-evidence-{self.period_start:%Y%m%d}-"
                f"{(self.period_end - dt.timedelta(microseconds=1)):%Y%m%d}-"
                f"{str(self.pack_uuid)[:8]}.zip")

    def build(self) -> BuiltPack:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        final = self.out_dir / self.file_name()
        spool = Path(tempfile.mkdtemp(prefix=".build-", dir=self.out_dir))
        partial = spool / "pack.zip"
        try:
            summary = self._build_into(partial, spool)
            sha, size = _file_sha256(partial)
            partial.replace(final)
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        self.progress(100, "done")
        return BuiltPack(final, sha, size, summary["manifest_sha256"], summary["signature"],
                         self.key_id, summary)

    def _build_into(self, path: Path, spool: Path) -> dict[str, Any]:
        self.progress(1, "reading the period's place in the audit chain")
        seed = int(self.pack_uuid.hex[:8], 16)
        sample_size = reports_config().sample_size
        scope = pack_scope(self.period_start, self.period_end, sample_size=sample_size,
                           seed=seed)
        archive = PackArchive(path)
        # A period that had not ended when the build started: every control's evidence is
        # incomplete, and the pack says PARTIAL everywhere.
        partial = scope.generated_at < scope.period_end
        pack_gaps = (f"the period had not ended when the pack was built (PARTIAL: it covers "
                     f"records up to {scope.generated_at.isoformat(timespec='seconds')}, not to "
                     f"{scope.period_end.isoformat()})",) if partial else ()
        try:
            stream = self._audit_log(scope, archive, spool)
            self._state(archive, scope)
            assessments = [spec.assess(self.evidence, pack_gaps) for spec in self.controls]
            nist = nist_catalog_load()
            version_ = generator_version()
            parameters = {
                "controls": [c.label for c in self.controls],
                "period_start": scope.period_start.isoformat(),
                "period_end_exclusive": scope.period_end.isoformat(),
                "chain_head_seq": scope.head_seq,
                "first_seq": scope.first_seq, "last_seq": scope.last_seq,
                "database": scope.database,
                "sample_size": sample_size,
                "sampling": f"reservoir sampling (Algorithm R), seed {seed}",
                "nist_catalog": nist.source, "nist_catalog_sha256": nist.sha256,
                "requested_by": self.requester.as_dict(),
                "partial": partial,
            }
            evidence = sorted(self.evidence.values(), key=lambda e: e.path)
            self.progress(90, "rendering the PDF report")
            pdf = spool / "report.pdf"
            render_pdf(pdf, self._report(scope, assessments, nist, evidence, stream, parameters,
                                         version_, partial))
            archive.add_file("report.pdf", pdf, "application/pdf")
            self.progress(95, "writing OSCAL assessment results")
            archive.write_bytes("oscal/assessment-results.json", assessment_results(
                pack_uuid=self.pack_uuid, identity=self.identity, requester=self.requester,
                partial=partial, period_start=scope.period_start, period_end=scope.period_end,
                generated_at=scope.generated_at, generator_version=version_,
                controls=self.controls, assessments=assessments, evidence=evidence, nist=nist,
                parameters=parameters), "application/json")
            public = public_pem(self.private_key.public_key())
            archive.write_bytes("pack-public-key.pem", public.encode(), "application/x-pem-file")
            archive.write_bytes("README.txt", _readme(self.file_name(), self.key_id,
                                                      partial).encode(), "text/plain")
            summary = {
                "controls": [{"control": a.label, "status": a.status, "gaps": a.gaps,
                              "counts": [[k, v] for k, v in a.counts]} for a in assessments],
                "chain_ok": bool(self.evidence["chain-verification"].stats.get("ok"))
                if "chain-verification" in self.evidence else None,
                "records": self._rows("audit-records"),
                "includes_records": "audit-records" in self.evidence,
                "first_seq": scope.first_seq, "last_seq": scope.last_seq,
                "head_seq": scope.head_seq,
                "partial": partial,
                "requested_by": self.requester.as_dict(),
            }
            manifest = {
                "format": FORMAT,
                "pack": {"uuid": str(self.pack_uuid), "system": self.identity.system,
                         "system_identification": self.identity.as_dict(),
                         "requested_by": self.requester.as_dict(),
                         "completeness": "PARTIAL" if partial else "COMPLETE",
                         "period": {"start": scope.period_start.isoformat(),
                                    "end_exclusive": scope.period_end.isoformat(),
                                    "ended": not partial},
                         "controls": [c.label for c in self.controls],
                         "generated_at": scope.generated_at.isoformat(),
                         "generator": {"name": GENERATOR, "version": version_},
                         "parameters": parameters},
                "signing": {"algorithm": "Ed25519", "key_id": self.key_id,
                            "signature": SIGNATURE, "signed_bytes": MANIFEST},
                "summary": [{"control": a.label, "status": a.status, "gaps": len(a.gaps)}
                            for a in assessments],
                "files": [self._manifest_entry(e) for e in archive.entries],
            }
            raw = manifest_bytes(manifest)
            signature = self.private_key.sign(raw)
            archive.write_bytes(MANIFEST, raw, "application/json", listed=False)
            archive.write_bytes(SIGNATURE, signature, "application/octet-stream", listed=False)
        finally:
            archive.close()
        summary["manifest_sha256"] = hashlib.sha256(raw).hexdigest()
        summary["signature"] = base64.b64encode(signature).decode("ascii")
        return summary

    def _rows(self, name: str) -> int:
        ev = self.evidence.get(name)
        return ev.rows if ev else 0

    def _manifest_entry(self, entry: Any) -> dict[str, Any]:
        ev = next((e for e in self.evidence.values() if e.path == entry.path), None)
        item: dict[str, Any] = {"path": entry.path, "sha256": entry.sha256, "bytes": entry.bytes,
                                "media_type": entry.media_type}
        if entry.rows is not None:
            item["rows"] = entry.rows
        if ev is not None:
            item.update(evidence=ev.name, title=ev.title, query=ev.selection,
                        expected_rows=ev.expected_rows, controls=list(ev.controls),
                        method=ev.method)
        return item

    # -- the audit log ----------------------------------------------------------------------

    def _audit_log(self, scope: PackScope, archive: PackArchive,
                   spool: Path) -> records.StreamResult | None:
        stream_names = {"audit-records", "calls", "denied", "masking", "denials-by-rule",
                        "calls-per-day", "field-completeness", "who-did-what", "event-types",
                        "masking-by-class"}
        chain_names = {"chain-verification"}
        stream: records.StreamResult | None = None
        check: chain_evidence.ChainCheck | None = None
        if self.needed & chain_names:
            self.progress(2, "verifying the audit chain (in the background)")
            check = chain_evidence.ChainCheck()
        try:
            stream = self._records_and_events(scope, archive, spool, stream_names)
        except BaseException:
            if check is not None:
                check.cancel()
            raise
        if check is not None:
            self.progress(80, "waiting for the audit chain verification")
            self._keep(chain_evidence.write_chain(scope, archive, check.result()))
        if "account-disables" in self.needed:
            self._keep(events.write_disables(scope, archive,
                                             reports_config().disable_sla_seconds))
        return stream

    def _records_and_events(self, scope: PackScope, archive: PackArchive, spool: Path,
                            stream_names: set[str]) -> records.StreamResult | None:
        stream: records.StreamResult | None = None
        group_names = {g.name for g in events.GROUPS}
        counts: records.RecordCounts | None = None
        if self.needed & (stream_names | group_names):
            self.progress(20, "counting the period's records")
            counts = records.record_counts(scope)
        if self.needed & stream_names:
            assert counts is not None

            def read(fraction: float) -> None:
                self.records_done = int(fraction * counts.records)
                self.progress(20 + int(fraction * 55), "reading the audit records")

            stream = records.stream_records(scope, archive, spool, progress=read)
            self.records_done = counts.records
            self._after_stream(scope, archive, stream, counts)
        self.progress(78, "collecting administrative events")
        for group in events.GROUPS:
            if group.name in self.needed:
                assert counts is not None
                seqs = stream.stats.group_seqs[group.name] if stream is not None else None
                self._keep(events.write_event_group(scope, archive, group, seqs,
                                                    counts.groups[group.name]))
        return stream

    def _after_stream(self, scope: PackScope, archive: PackArchive,
                      stream: records.StreamResult, counts: records.RecordCounts) -> None:
        s = stream.stats
        stream.records.expected_rows = counts.records
        stream.calls.expected_rows = counts.calls
        stream.denied.expected_rows = counts.denied
        stream.masking.expected_rows = counts.masking_actions
        methods: Counter[str] = Counter()
        for (method, _), n in s.auth_methods.items():
            methods[method] += n
        stream.calls.stats.update(allowed_without_role=s.allowed_without_role,
                                  allowed_without_identity=s.allowed_without_identity,
                                  held=s.held, auth_methods=dict(methods),
                                  rejected_without_actor=s.rejected_without_actor)
        first_day = scope.period_start.date()
        last_day = min(scope.period_end - dt.timedelta(microseconds=1), scope.generated_at).date()
        silent = [(first_day + dt.timedelta(days=i)).isoformat()
                  for i in range((last_day - first_day).days + 1)
                  if (first_day + dt.timedelta(days=i)).isoformat() not in s.records_by_day]
        stream.records.stats["silent_days"] = silent
        for ev in (stream.records, stream.calls, stream.denied, stream.masking):
            self._keep(ev)
        self.progress(76, "aggregating the figures")
        self._keep(self._aggregate_csv(
            archive, "calls-per-day", "csv/calls-per-day.csv", "Access decisions per day",
            "Figure data: access decisions per day and decision (sums to csv/calls.csv).",
            ("day", "decision", "calls"),
            [(d, dec, n) for (d, dec), n in sorted(s.calls_by_day.items())],
            total=sum(s.calls_by_day.values()), population=stream.calls))
        self._keep(self._aggregate_csv(
            archive, "denials-by-rule", "csv/denials-by-rule.csv", "Denials by rule",
            "Reasons given for denials, counted by rule (one denial may give several).",
            ("rule", "denials"), s.denials_by_rule.most_common(), total=None, population=None))
        required = ("request_id", "source_ip", "connection", "jsonrpc_method", "decision",
                    "auth_method", "actor", "tool", "response_sha256")
        completeness = []
        for event, n in sorted(s.events.items()):
            needed = set(records.required_fields(event, "tools/call"))
            completeness.append([event, n, ";".join(f for f in required if f in needed),
                                 sum(s.missing.get((event, f), 0) for f in required)]
                                + [s.missing.get((event, f), 0) for f in required])
        fc = self._aggregate_csv(
            archive, "field-completeness", "csv/field-completeness.csv",
            "Audit record field completeness",
            "Per event type: records, the fields AU-3 requires of it (what, when, where, source, "
            "outcome, identity), and how many records lack each (0 everywhere = complete).",
            ("event", "records", "required_fields", "missing_total",
             *[f"missing_{f}" for f in required]), completeness,
            total=sum(s.events.values()), population=stream.records, count_column=1)
        fc.stats["missing"] = {k: v for k, v in s.missing.items() if v}
        self._keep(fc)
        self._keep(self._aggregate_csv(
            archive, "who-did-what", "csv/who-did-what.csv", "Who did what",
            "Records per identity, authentication method, event and decision.",
            ("actor", "auth_method", "event", "decision", "records"),
            [(*k, n) for k, n in sorted(s.who.items())], total=sum(s.who.values()),
            population=stream.records, count_column=4))
        types = counts.event_types
        et = self._aggregate_csv(
            archive, "event-types", "csv/event-types.csv", "Event types recorded",
            "Records per event type and decision (SQL GROUP BY), with their seq range.",
            ("event", "decision", "records", "first_seq", "last_seq"), types,
            total=sum(t[2] for t in types), population=stream.records)
        et.selection = (f"SELECT event, decision, COUNT(*), MIN(seq), MAX(seq) FROM "
                        f"{scope.selection} GROUP BY event, decision")
        by_event: Counter[str] = Counter()
        for t in types:
            by_event[t[0]] += t[2]
        if dict(by_event) != dict(s.events):
            et.problems.append("event counts by GROUP BY differ from the records streamed")
        self._keep(et)
        sql_masking = records.masking_by_class_sql(scope)
        mc = self._aggregate_csv(
            archive, "masking-by-class", "csv/masking-by-class.csv", "Masking by class and action",
            "Cells masked and records affected per PII class and action (SQL over the masking "
            "summaries), the data of the 'masking actions by class' figure.",
            ("class", "action", "cells", "records"), sql_masking, total=None, population=None)
        mc.selection = (f"SELECT class, action, SUM(count), COUNT(DISTINCT record) FROM "
                        f"{scope.selection} CROSS JOIN json elements of masking GROUP BY 1, 2")
        mc.stats["cells"] = {(c, a): n for c, a, n, _ in sql_masking}
        if mc.stats["cells"] != {k: v for k, v in s.masking.items()}:
            mc.problems.append("masked cells by SQL differ from csv/masking-actions.csv")
            mc.stats["mismatch"] = mc.problems[-1:]
        self._keep(mc)

    def _aggregate_csv(self, archive: PackArchive, name: str, path: str, title: str,
                       description: str, columns: tuple[str, ...], rows: Any, *,
                       total: int | None, population: Evidence | None,
                       count_column: int | None = None) -> Evidence:
        rows = list(rows)
        entry = archive.write_csv(path, columns, rows)
        ev = Evidence(name=name, path=entry.path, title=title, description=description,
                      selection=f"aggregate of {population.path}" if population else "aggregate",
                      rows=entry.rows, sha256=entry.sha256, bytes=entry.bytes)
        if count_column is not None:
            total = sum(int(r[count_column]) for r in rows)
        if population is not None and total is not None and total != population.rows:
            ev.problems.append(f"{path} sums to {total} but {population.path} has "
                               f"{population.rows} rows")
        return ev

    # -- state ------------------------------------------------------------------------------

    def _state(self, archive: PackArchive, scope: PackScope) -> None:
        self.progress(82, "taking the system's state")
        if "accounts" in self.needed:
            self._keep(state.write_accounts(archive))
        if "privileged-mfa" in self.needed:
            self._keep(state.write_privileged_mfa(archive))
        if "access-review" in self.needed:
            self._keep(state.write_access_review(archive, head_seq=scope.head_seq))
        if "connections" in self.needed:
            self._keep(state.write_connections(archive))
        if "settings" in self.needed:
            self._keep(state.write_settings(archive, self.key_id))
        for spec in state.SNAPSHOTS:
            if spec.name in self.needed:
                ev = state.write_snapshot(archive, spec)
                if spec.name == "roles":
                    ev.stats.update(state.role_findings())
                self._keep(ev)

    # -- the report -------------------------------------------------------------------------

    def _report(self, scope: PackScope, assessments: list[Assessment], nist: Any,
                evidence: list[Evidence], stream: records.StreamResult | None,
                parameters: dict[str, Any], version_: str, partial: bool) -> ReportContext:
        samples: list[SampleTable] = []
        method = f"Uniform random sample (reservoir sampling, seed {scope.seed}) of "
        if stream is not None:
            samples.append(SampleTable(
                "Access decisions", method + f"{stream.calls.rows} records in csv/calls.csv.",
                ("seq", "at", "actor", "auth_method", "call", "decision", "detail", "hash"),
                stream.calls.samples))
            samples.append(SampleTable(
                "Denied calls", method + f"{stream.denied.rows} records in csv/denied-calls.csv.",
                ("seq", "at", "actor", "event", "call", "rules", "hash"), stream.denied.samples))
            samples.append(SampleTable(
                "Masking actions", method + f"{stream.masking.rows} rows in "
                                            "csv/masking-actions.csv.",
                ("seq", "at", "actor", "call", "column", "class", "action", "cells", "hash"),
                stream.masking.samples))
        for name in ("account-events", "incident-events", "review-events"):
            ev = self.evidence.get(name)
            if ev is not None:
                samples.append(SampleTable(
                    ev.title, method + f"{ev.rows} records in {ev.path}.",
                    ("seq", "at", "event", "actor", "decision", "subject", "hash"), ev.samples))
        chain = self.evidence["chain-verification"].stats if (
            "chain-verification" in self.evidence) else {"ok": False,
                                                         "problem": "not verified"}
        masking = self.evidence.get("masking-by-class")
        shown = [("Chain head at build", f"#{scope.head_seq}"),
                 ("Records in period", f"{self._rows('audit-records')} (seq {scope.first_seq} to "
                                       f"{scope.last_seq})"),
                 ("Database", scope.database), ("Sampling", parameters["sampling"]),
                 ("NIST text", f"{nist.source}, catalog {nist.version}")]
        return ReportContext(
            identity=self.identity, requester=self.requester, partial=partial,
            pack_uuid=str(self.pack_uuid),
            period_start=scope.period_start, period_end=scope.period_end,
            generated_at=scope.generated_at, generator_version=version_, key_id=self.key_id,
            parameters=shown, controls=self.controls, assessments=assessments, nist=nist,
            evidence=evidence, chain=chain,
            calls_by_day=stream.stats.calls_by_day if stream else {},
            masking_cells=masking.stats.get("cells", {}) if masking else {}, samples=samples)


def _file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _readme(file_name: str, key: str, partial: bool) -> str:
    warning = ("PARTIAL PACK: the period had not ended when this pack was built; it does not "
               "cover the whole period.\n\n" if partial else "")
    return f"""{warning}Wardgate evidence pack {file_name}

report.pdf                        the report: summary per control, figures, samples
csv/*.csv                         full populations behind every figure (query in manifest.json)
csv/state/*.csv                   the system's state when the pack was built
chain/verification.json           audit chain and checkpoint verification result
oscal/assessment-results.json     OSCAL 1.1.2 assessment results
manifest.json                     every file above with its SHA-256, size and row count
manifest.sig                      Ed25519 signature (64 raw bytes) over manifest.json
pack-public-key.pem               the signing public key (key id {key}); check it against the
                                  key published by the system owner (manage.py pack_public_key)

Verify with Wardgate:
    python manage.py verify_pack {file_name} --public-key published-key.pem

Verify with OpenSSL and coreutils only:
    unzip -o {file_name} -d pack && cd pack
    openssl pkeyutl -verify -pubin -inkey published-key.pem -rawin \\
        -in manifest.json -sigfile manifest.sig
    python3 -c "import json; [print(f['sha256'] + '  ' + f['path']) \\
        for f in json.load(open('manifest.json'))['files']]" | sha256sum -c -

CSV cells that begin with = + - @ are prefixed with ' so spreadsheets keep them as text.
"""
