"""The pack as an OSCAL 1.1.2 assessment-results document.

Metadata identifies the system (organisation, system, environment, boundary: settings) and who
asked for the pack (`parties`, `responsible-parties` with role `prepared-by`: the person, or the
organisation's monthly schedule). One `result` for the pack (start/end = the period; a PARTIAL
pack ends when it was generated) reviewing the selected controls; one `observation` per evidence
file (TEST for the system's own records, EXAMINE for state and configuration), originating from
the generator (a tool, defined as a local component), whose `relevant-evidence` names the file,
its SHA-256 and row count; one `finding` per control. A finding's status is that of the
control's *technical* objective only (what the tool evidences): `satisfied` when that evidence is
present, `not-satisfied` when gaps were found; the parts of the control that are the
organisation's (policy, frequency, people) are named in the finding and are not assessed here.
The files are also listed as back-matter resources with their hashes.

`import-ap` points at WARDGATE_PACK_ASSESSMENT_PLAN_URL when set; otherwise at a back-matter
placeholder resource that the organisation replaces with its assessment plan.

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
from reports.nist import NistCatalog, plain_text

from .provenance import Requester, SystemIdentity

OSCAL_VERSION = "1.1.2"
NS = "https://wardgate.dev/ns/oscal"


def _ts(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _prop(name: str, value: Any) -> dict[str, str]:
    # OSCAL names are tokens: letters, digits, '.', '-', '_' (not starting with a digit).
    token = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "value"
    if token[0].isdigit():
        token = "n" + token
    return {"name": token, "ns": NS, "value": " ".join(str(value).split()) or "-"}


def assessment_results(
    *,
    pack_uuid: uuid.UUID,
    identity: SystemIdentity,
    requester: Requester,
    partial: bool,
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
        description = f"Technical objective (what the tool evidences): {spec.approach}"
        if spec.organisational:
            description += (f" Not assessed here (organisational, outside the tool): "
                            f"{spec.organisational}")
        if a.gaps:
            description += " Gaps: " + "; ".join(a.gaps)
        objectives = "; ".join(f"{label} {plain_text(prose)}" for label, prose in text.objectives
                               if prose)
        finding: dict[str, Any] = {
            "uuid": uid("finding", spec.label),
            "title": f"{text.label} {text.title}: technical objective, {a.status}",
            "description": description,
            "props": [_prop("objective-scope", "technical"),
                      *(_prop(name, value) for name, value in a.counts)],
            "target": {
                "type": "objective-id",
                "target-id": f"{text.id}_obj",
                "description": "The control's technical objective as evidenced by the system's "
                               "own records and configuration. NIST objectives: "
                               + (objectives or plain_text(text.statement))[:3000],
                "props": [_prop("objective-scope", "technical")],
                "status": {"state": "satisfied" if a.satisfied else "not-satisfied",
                           "reason": "pass" if a.satisfied else "fail",
                           "remarks": "Status of the technical objective only; the "
                                      "organisational parts are not assessed by this tool."},
                "remarks": spec.organisational
                           or "No organisational part is identified for this control.",
            },
            "origins": [{"actors": [{"type": "tool", "actor-uuid": tool}]}],
        }
        if related:
            finding["related-observations"] = related
        findings.append(finding)
    system = identity.system
    organisation = uid("party", "organisation")
    parties: list[dict[str, Any]] = [{"uuid": organisation, "type": "organization",
                                      "name": identity.organisation}]
    if requester.kind == "person":
        prepared_by = uid("party", "requester", requester.name)
        parties.append({"uuid": prepared_by, "type": "person", "name": requester.name,
                        "props": [_prop("username", requester.name)],
                        "remarks": "The portal account that requested this evidence pack."})
        prepared_remarks = f"Requested by {requester.name}."
    else:
        prepared_by = organisation
        prepared_remarks = (f"Requested by the organisation's monthly schedule "
                            f"({requester.name}); no person asked for this pack.")
    completeness = "PARTIAL" if partial else "COMPLETE"
    plan = uid("resource", "assessment-plan")
    if identity.assessment_plan_url:
        import_ap: dict[str, Any] = {"href": identity.assessment_plan_url}
        plan_resource = {"uuid": plan, "title": "Assessment plan",
                         "rlinks": [{"href": identity.assessment_plan_url}]}
    else:
        import_ap = {"href": "#" + plan,
                     "remarks": "Placeholder: the organisation replaces this reference with its "
                                "own assessment plan (set WARDGATE_PACK_ASSESSMENT_PLAN_URL)."}
        plan_resource = {"uuid": plan, "title": "Assessment plan (placeholder)",
                         "description": "Placeholder for the organisation's assessment plan "
                                        "(SAP). The evidence in this pack is collected "
                                        "continuously by the system and assembled by the "
                                        "generator for the period; see manifest.json.",
                         "props": [_prop("placeholder", "true")]}
    document = {
        "assessment-results": {
            "uuid": str(pack_uuid),
            "metadata": {
                "title": f"{system} evidence pack {period_start:%Y-%m-%d} to "
                         f"{period_end:%Y-%m-%d} (end exclusive)"
                         + (" PARTIAL" if partial else ""),
                "last-modified": _ts(generated_at),
                "version": generator_version,
                "oscal-version": OSCAL_VERSION,
                "props": [_prop("generator", "wardgate-reports"),
                          _prop("organisation", identity.organisation),
                          _prop("system-name", system),
                          _prop("environment", identity.environment),
                          _prop("authorization-boundary", " ".join(identity.boundary.split())),
                          _prop("requested-by", f"{requester.kind}:{requester.name}"),
                          _prop("completeness", completeness),
                          _prop("nist-catalog", f"{nist.source} ({nist.version})"),
                          _prop("parameters", json.dumps(parameters, sort_keys=True))],
                "roles": [{"id": "prepared-by", "title": "Prepared By",
                           "description": "Who requested this evidence pack."},
                          {"id": "system-owner", "title": "System Owner"}],
                "parties": parties,
                "responsible-parties": [
                    {"role-id": "prepared-by", "party-uuids": [prepared_by],
                     "remarks": prepared_remarks},
                    {"role-id": "system-owner", "party-uuids": [organisation]},
                ],
                "remarks": f"System: {system} ({identity.environment}) of "
                           f"{identity.organisation}. Authorization boundary: "
                           f"{identity.boundary}"
                           + (" PARTIAL: the period had not ended when this pack was "
                              "generated." if partial else ""),
            },
            "import-ap": import_ap,
            "results": [{
                "uuid": uid("result"),
                "title": f"Evidence for {len(controls)} controls, {period_start:%Y-%m-%d} to "
                         f"{period_end:%Y-%m-%d}" + (" (PARTIAL)" if partial else ""),
                "description": "System-generated evidence (information produced by the entity): "
                               "each observation names its query, file, SHA-256 and row count; "
                               "the signed manifest.json covers every file. Findings report "
                               "each control's technical objective only.",
                "start": _ts(period_start),
                "end": _ts(min(period_end, generated_at)),
                "props": [_prop("completeness", completeness)],
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
            "back-matter": {"resources": [plan_resource, *resources]},
        }
    }
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode()
