"""The pack as an OSCAL 1.1.2 assessment-results document.

One `result` for the pack (start/end = the period) reviewing the selected controls; one
`observation` per evidence file (TEST for the system's own records, EXAMINE for state and
configuration), originating from the generator (a tool, defined as a local component), whose
`relevant-evidence` names the file, its SHA-256 and row count; one `finding` per control
targeting its objective, `satisfied` when the evidence is present and `not-satisfied` when gaps
were found. The files are also listed as back-matter resources with their hashes.

UUIDs are version 5, derived from the pack's UUID, so the same pack always yields the same ids.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from reports.catalog import Assessment, ControlSpec
from reports.evidence.base import Evidence
from reports.nist import NistCatalog

OSCAL_VERSION = "1.1.2"
NS = "https://wardgate.dev/ns/oscal"


def _ts(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _prop(name: str, value: Any) -> dict[str, str]:
    # OSCAL names are tokens: letters, digits, '.', '-', '_' (not starting with a digit).
    token = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "value"
    if token[0].isdigit():
        token = "n" + token
    return {"name": token, "ns": NS, "value": str(value) or "-"}


def assessment_results(
    *,
    pack_uuid: uuid.UUID,
    system: str,
    period_start: datetime,
    period_end: datetime,
    generated_at: datetime,
    generator_version: str,
    controls: Sequence[ControlSpec],
    assessments: Sequence[Assessment],
    evidence: Sequence[Evidence],
    nist: NistCatalog,
    parameters: dict[str, Any],
) -> bytes:
    def uid(*parts: str) -> str:
        return str(uuid.uuid5(pack_uuid, "/".join(parts)))

    tool = uid("component", "generator")
    observations = []
    resources = []
    observation_of: dict[str, str] = {}
    for ev in evidence:
        obs = uid("observation", ev.name)
        res = uid("resource", ev.path)
        observation_of[ev.name] = obs
        props = [_prop("sha256", ev.sha256), _prop("bytes", ev.bytes), _prop("rows", ev.rows)]
        if ev.expected_rows is not None:
            props.append(_prop("database-rows", ev.expected_rows))
        observations.append({
            "uuid": obs,
            "title": ev.title,
            "description": ev.description,
            "props": [_prop("query", ev.selection)],
            "methods": [ev.method],
            "types": ["control-objective"],
            "origins": [{"actors": [{"type": "tool", "actor-uuid": tool}]}],
            "relevant-evidence": [{"href": ev.path, "description": f"{ev.path}: {ev.title}",
                                   "props": props}],
            "collected": _ts(generated_at),
        })
        resources.append({
            "uuid": res,
            "title": ev.path,
            "description": ev.description,
            "rlinks": [{"href": ev.path,
                        "media-type": "application/json" if ev.path.endswith(".json")
                        else "text/csv",
                        "hashes": [{"algorithm": "SHA-256", "value": ev.sha256}]}],
        })
    findings = []
    by_label = {a.label: a for a in assessments}
    for spec in controls:
        a = by_label[spec.label]
        text = nist.get(spec.label)
        related = [{"observation-uuid": observation_of[n]} for n in spec.evidence
                   if n in observation_of]
        description = spec.approach
        if a.gaps:
            description += " Gaps: " + "; ".join(a.gaps)
        finding: dict[str, Any] = {
            "uuid": uid("finding", spec.label),
            "title": f"{text.label} {text.title}: {a.status}",
            "description": description,
            "props": [_prop(name, value) for name, value in a.counts] or None,
            "target": {
                "type": "objective-id",
                "target-id": f"{text.id}_obj",
                "description": "; ".join(f"{label} {prose}" for label, prose in text.objectives)
                               or text.statement[:2000],
                "status": {"state": "satisfied" if a.satisfied else "not-satisfied",
                           "reason": "pass" if a.satisfied else "fail"},
            },
            "origins": [{"actors": [{"type": "tool", "actor-uuid": tool}]}],
        }
        if related:
            finding["related-observations"] = related
        if finding["props"] is None:
            del finding["props"]
        findings.append(finding)
    document = {
        "assessment-results": {
            "uuid": str(pack_uuid),
            "metadata": {
                "title": f"{system} evidence pack {period_start:%Y-%m-%d} to "
                         f"{period_end:%Y-%m-%d} (end exclusive)",
                "last-modified": _ts(generated_at),
                "version": generator_version,
                "oscal-version": OSCAL_VERSION,
                "props": [_prop("generator", "wardgate-reports"),
                          _prop("nist-catalog", f"{nist.source} ({nist.version})"),
                          _prop("parameters", json.dumps(parameters, sort_keys=True))],
            },
            "import-ap": {
                "href": "#" + uid("resource", "assessment-plan"),
                "remarks": "No separate assessment plan: evidence is collected continuously by "
                           "the system and assembled by the generator for the period.",
            },
            "results": [{
                "uuid": uid("result"),
                "title": f"Evidence for {len(controls)} controls, {period_start:%Y-%m-%d} to "
                         f"{period_end:%Y-%m-%d}",
                "description": "System-generated evidence (information produced by the entity): "
                               "each observation names its query, file, SHA-256 and row count; "
                               "the signed manifest.json covers every file.",
                "start": _ts(period_start),
                "end": _ts(period_end),
                "local-definitions": {"components": [{
                    "uuid": tool,
                    "type": "software",
                    "title": "Wardgate evidence pack generator",
                    "description": f"reports/ of {system}, version {generator_version}",
                    "props": [_prop("version", generator_version)],
                    "status": {"state": "operational"},
                }]},
                "reviewed-controls": {"control-selections": [{"include-controls": [
                    {"control-id": nist.get(c.label).id} for c in controls]}]},
                "observations": observations,
                "findings": findings,
            }],
            "back-matter": {"resources": [
                {"uuid": uid("resource", "assessment-plan"), "title": "Assessment plan",
                 "description": "Continuous, system-generated evidence; see manifest.json."},
                *resources,
            ]},
        }
    }
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode()
