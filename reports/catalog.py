"""The control catalog: each in-scope NIST SP 800-53 rev5 control, the evidence queries that
prove it, and how their results decide "evidence present" or "gaps found".

Titles and statements come from the NIST text (`reports.nist`); what is here is Wardgate's own
part: which populations answer the control, and which conditions are gaps. A gap is reported,
never hidden: no events of a kind the control needs, a population that does not reconcile with
the database, a broken chain, a disable that did not take effect in time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reports.evidence.base import Evidence

EVIDENCE_PRESENT = "evidence present"
GAPS_FOUND = "gaps found"


@dataclass(slots=True)
class Assessment:
    label: str
    status: str
    counts: list[tuple[str, Any]]
    gaps: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def satisfied(self) -> bool:
        return self.status == EVIDENCE_PRESENT


Check = Callable[[Mapping[str, Evidence]], tuple[list[tuple[str, Any]], list[str], list[str]]]


@dataclass(frozen=True, slots=True)
class ControlSpec:
    label: str  # as NIST writes it: "AC-2", "AU-3(3)"
    evidence: tuple[str, ...]
    approach: str  # how Wardgate's evidence answers the control
    check: Check
    oscal_method: str = "TEST"
    # The parts of the control that are the organisation's (policy, frequency, people): a pack
    # evidences the technical objective only, and says so.
    organisational: str = ""
    # Where the records behind the control are in the audit browser (its filter fields).
    records: tuple[tuple[str, str], ...] = ()

    def assess(self, evidence: Mapping[str, Evidence],
               pack_gaps: tuple[str, ...] = ()) -> Assessment:
        """The technical objective's status. `pack_gaps` hold for every control (e.g. a period
        that had not ended when the pack was built)."""
        counts, gaps, notes = self.check(evidence)
        gaps.extend(pack_gaps)
        for name in self.evidence:
            ev = evidence.get(name)
            if ev is None:
                gaps.append(f"evidence '{name}' was not produced")
                continue
            if gap := ev.reconciliation_gap():
                gaps.append(gap)
            gaps.extend(ev.problems)
            notes.extend(ev.notes)
        return Assessment(self.label, GAPS_FOUND if gaps else EVIDENCE_PRESENT, counts, gaps,
                          notes)


def _n(evidence: Mapping[str, Evidence], name: str) -> int:
    ev = evidence.get(name)
    return ev.rows if ev is not None else 0


def _stat(evidence: Mapping[str, Evidence], name: str, key: str, default: Any = None) -> Any:
    ev = evidence.get(name)
    return ev.stats.get(key, default) if ev is not None else default


def _ac2(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    gaps, notes = [], []
    if _n(ev, "account-events") == 0:
        gaps.append("no account lifecycle events (portal.account_*, tokens, sign-ins) were "
                    "recorded in the period")
    late = _stat(ev, "account-disables", "late", []) or []
    gaps.extend(f"disable not effective in time: {item}" for item in late)
    gaps.extend(_grant_gaps(ev))
    if _n(ev, "account-disables") == 0:
        notes.append("no account was disabled in the period")
    counts = [("accounts", _n(ev, "accounts")),
              ("disabled accounts", _stat(ev, "accounts", "disabled", 0)),
              ("lifecycle events", _n(ev, "account-events")),
              ("disables in period", _n(ev, "account-disables")),
              ("slowest disable (s)", _stat(ev, "account-disables", "worst_seconds", 0)),
              ("personal tokens", _n(ev, "personal-tokens")),
              ("access review rows (AC-2(j))", _n(ev, "access-review"))]
    return counts, gaps, notes


def _grant_gaps(ev: Mapping[str, Evidence]) -> list[str]:
    """Grants nobody is recorded as having decided: no created_by, or no creation event."""
    gaps = []
    if no_creator := _stat(ev, "access-review", "without_creator", []) or []:
        gaps.append(f"{len(no_creator)} grant(s) record no created_by (ids "
                    f"{', '.join(map(str, no_creator[:20]))}): nobody is recorded as granting them")
    if no_event := _stat(ev, "access-review", "without_creation_event", []) or []:
        gaps.append(f"{len(no_event)} grant(s) have no portal.grant_created audit record (ids "
                    f"{', '.join(map(str, no_event[:20]))})")
    return gaps


def _calls_by_decision(ev: Mapping[str, Evidence]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, n in (_stat(ev, "calls", "by_day", {}) or {}).items():
        decision = key.split("|", 1)[1] or "none"
        out[decision] = out.get(decision, 0) + n
    return out


def _ac3(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    gaps = []
    if _n(ev, "calls") == 0:
        gaps.append("no access decisions were recorded in the period")
    if _n(ev, "grants") == 0:
        gaps.append("no grants exist: nothing documents who may access what")
    unroled = _stat(ev, "calls", "allowed_without_role", 0)
    if unroled:
        gaps.append(f"{unroled} allowed calls name no granting role")
    by = _calls_by_decision(ev)
    counts = [("access decisions", _n(ev, "calls")), ("allowed", by.get("allow", 0)),
              ("denied", by.get("deny", 0)), ("held for approval", by.get("hold", 0)),
              ("denial records with reasons", _n(ev, "denied")), ("grants", _n(ev, "grants")),
              ("access changes", _n(ev, "access-changes"))]
    return counts, gaps, []


def _ac6(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    gaps = list(_stat(ev, "roles", "broad", []) or [])
    if _n(ev, "roles") == 0:
        gaps.append("no roles are defined")
    rules = _stat(ev, "denied", "by_rule", {}) or {}
    counts = [("roles", _n(ev, "roles")), ("grants", _n(ev, "grants")),
              ("denied records", _n(ev, "denied")), ("distinct denial rules", len(rules)),
              ("access changes", _n(ev, "access-changes"))]
    return counts, gaps, []


def _ia2(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    gaps = []
    anonymous = _stat(ev, "calls", "allowed_without_identity", 0)
    if anonymous:
        gaps.append(f"{anonymous} allowed calls have no authenticated identity")
    refused = _stat(ev, "calls", "rejected_without_actor", 0)
    if refused:
        gaps.append(f"{refused} refused requests name no actor: who made them is unknown (only "
                    "their source address is recorded)")
    without_mfa = _stat(ev, "privileged-mfa", "without_mfa", []) or []
    if without_mfa:
        gaps.append(f"IA-2(1): {len(without_mfa)} active privileged account(s) have no second "
                    f"factor enrolled: {', '.join(without_mfa[:20])}")
    methods = _stat(ev, "calls", "auth_methods", {}) or {}
    counts: list[tuple[str, Any]] = [("access decisions", _n(ev, "calls")),
                                     ("refused requests without an actor", refused),
                                     ("privileged accounts", _stat(ev, "privileged-mfa",
                                                                   "privileged", 0)),
                                     ("privileged accounts with MFA",
                                      _stat(ev, "privileged-mfa", "enrolled", 0))]
    counts += [(f"via {m or 'none'}", n) for m, n in sorted(methods.items())]
    return counts, gaps, []


def _au2(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    events = _stat(ev, "audit-records", "events", {}) or {}
    gaps = []
    if not any(e.startswith("mcp.") for e in events):
        gaps.append("no gateway events were recorded in the period")
    counts: list[tuple[str, Any]] = [("records", _n(ev, "audit-records")),
                                     ("event types", len(events))]
    return counts, gaps, []


def _au3(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    missing = _stat(ev, "field-completeness", "missing", {}) or {}
    gaps = [f"{n} {event} records lack {name}" for (event, name), n in sorted(missing.items())]
    counts = [("records checked", _n(ev, "audit-records")),
              ("records with a missing field", sum(missing.values()))]
    return counts, gaps, []


def _masking_counts(ev: Mapping[str, Evidence]) -> tuple[int, dict[str, int], dict[str, int]]:
    by_class: dict[str, int] = {}
    by_action: dict[str, int] = {}
    for (cls, action), n in (_stat(ev, "masking-by-class", "cells", {}) or {}).items():
        by_class[cls] = by_class.get(cls, 0) + n
        by_action[action] = by_action.get(action, 0) + n
    return sum(by_class.values()), by_class, by_action


def _deidentification(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str],
                                                           list[str]]:
    total, by_class, by_action = _masking_counts(ev)
    gaps = list(_stat(ev, "roles", "unmasked_by_default", []) or [])
    if total == 0:
        gaps.append("no masking actions were recorded in the period")
    gaps.extend(_stat(ev, "masking-by-class", "mismatch", []) or [])
    counts: list[tuple[str, Any]] = [("masking actions", _n(ev, "masking")),
                                     ("cells masked", total)]
    counts += [(f"class {c}", n) for c, n in sorted(by_class.items())]
    counts += [(f"action {a}", n) for a, n in sorted(by_action.items())]
    return counts, gaps, []


def _au3_3(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    total, _, _ = _masking_counts(ev)
    gaps = [] if total else ["no masking actions were recorded in the period"]
    notes = ["audit records keep results as they left the gateway (masked), arguments with "
             "secret-looking keys redacted, and bodies capped (the SHA-256 covers all)"]
    return [("cells masked before recording", total),
            ("masking actions", _n(ev, "masking"))], gaps, notes


def _sc13(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    _, _, by_action = _masking_counts(ev)
    tokenized = by_action.get("tokenize", 0)
    source = (_stat(ev, "settings", "WARDGATE_TOKEN_HMAC_KEY", "") or "")
    gaps = []
    if not tokenized:
        gaps.append("no keyed tokenization (HMAC-SHA256) was applied in the period: SC-13 "
                    "applies only where masking is cryptographic")
    if source.startswith("derived") or source == "NOT SET":
        gaps.append(f"the tokenization key is {source}")
    notes = ["only masking by keyed tokenization (HMAC-SHA256 with WARDGATE_TOKEN_HMAC_KEY) is "
             "SC-13 evidence; redaction, partial masking and nulling are not cryptographic"]
    return [("cells tokenized", tokenized), ("key", source or "unknown")], gaps, notes


def _sc28(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    formats = _stat(ev, "connections", "formats", {}) or {}
    gaps = []
    bad = {f: n for f, n in formats.items() if f not in {"fernet", "none"}}
    if bad:
        gaps.append(f"credentials not stored as Fernet tokens: {bad}")
    source = _stat(ev, "settings", "WARDGATE_FIELD_ENCRYPTION_KEY", "") or ""
    if source.startswith("derived") or source == "NOT SET":
        gaps.append(f"the credential encryption key is {source}")
    counts = [("connections", _n(ev, "connections")),
              ("sealed credentials", formats.get("fernet", 0)),
              ("personal tokens (stored hashed)", _n(ev, "personal-tokens")),
              ("encryption key", source or "unknown")]
    return counts, gaps, []


def _au6(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    gaps = []
    reviews = _n(ev, "review-events")
    if reviews == 0:
        gaps.append("no audit reviews or exports (searches, evidence packs, SIEM exports) were "
                    "recorded in the period")
    return [("reviews and exports", reviews), ("evidence packs", _n(ev, "evidence-packs")),
            ("SIEM sinks", _n(ev, "export-cursors"))], gaps, []


def _chain_checks(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str]]:
    stats = ev["chain-verification"].stats if "chain-verification" in ev else {}
    gaps = []
    if not stats.get("ok"):
        problem = stats.get("problem") or "; ".join(stats.get("problems") or []) or "unknown"
        gaps.append(f"audit chain verification FAILED: {problem}")
    elif stats.get("problems"):
        gaps.extend(stats["problems"])
    if not stats.get("checkpoints_checked"):
        gaps.append("no signed checkpoints of the chain head exist")
    elif not stats.get("signed_by_checkpoint"):
        gaps.append("the period's last record is not yet covered by a signed checkpoint")
    counts = [("records verified", stats.get("records_checked", 0)),
              ("chain head", stats.get("head_seq")),
              ("checkpoints checked", stats.get("checkpoints_checked", 0))]
    return counts, gaps


def _au9(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    counts, gaps = _chain_checks(ev)
    return counts + [("audit maintenance events", _n(ev, "audit-events"))], gaps, []


def _au9_3(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    counts, gaps = _chain_checks(ev)
    return counts, gaps, ["SHA-256 hash chain over every record; chain heads signed with Ed25519"]


def _au10(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    counts, gaps = _chain_checks(ev)
    return counts + [("identity/action combinations", _n(ev, "who-did-what"))], gaps, []


def _au11(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    days = _stat(ev, "settings", "WARDGATE_AUDIT_RETENTION_DAYS", "not configured")
    gaps = []
    if days in (None, "", "not configured"):
        gaps.append("no audit retention period is configured")
    purges = (_stat(ev, "audit-events", "by_event", {}) or {}).get("audit.purged", 0)
    return [("retention (days)", days), ("purges in period", purges),
            ("legal holds", _n(ev, "legal-holds"))], gaps, []


def _au12(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    per_day = _stat(ev, "audit-records", "records_by_day", {}) or {}
    silent = _stat(ev, "audit-records", "silent_days", []) or []
    gaps = [f"no audit records at all on {', '.join(silent[:10])}"
            f"{' ...' if len(silent) > 10 else ''}"] if silent else []
    if not per_day:
        gaps.append("no audit records were generated in the period")
    return [("records", _n(ev, "audit-records")), ("days with records", len(per_day)),
            ("event types", _n(ev, "event-types"))], gaps, []


def _ir4(ev: Mapping[str, Evidence]) -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    approvals = _stat(ev, "query-approvals", "by_status", {}) or {}
    incidents = _stat(ev, "incidents", "by_status", {}) or {}
    handled = (_n(ev, "incident-events") + _n(ev, "quarantines") + sum(incidents.values())
               + sum(approvals.values()))
    gaps = [] if handled else ["no incident handling (quarantines, incidents, held calls, "
                               "approvals) is recorded"]
    counts: list[tuple[str, Any]] = [("incident events in period", _n(ev, "incident-events")),
                                     ("quarantines", _n(ev, "quarantines")),
                                     ("calls held", _stat(ev, "calls", "held", 0))]
    counts += [(f"incidents {s}", n) for s, n in sorted(incidents.items())]
    counts += [(f"approvals {s}", n) for s, n in sorted(approvals.items())]
    return counts, gaps, []


CONTROLS: tuple[ControlSpec, ...] = (
    ControlSpec("AC-2", ("accounts", "account-events", "account-disables", "personal-tokens",
                         "api-tokens", "access-requests", "access-review"),
                "Accounts and their state; every lifecycle event the portal recorded; for each "
                "disable, whether the account's calls stopped and how fast; the access review "
                "population (who holds what, granted by whom, last used).", _ac2,
                organisational="Account types (a), account managers (b), membership criteria "
                "(c), approval of account creation (e), notification periods (h), the review "
                "frequency and the review itself (j), shared authenticators (k) and alignment "
                "with personnel processes (l) are the organisation's.",
                records=(("event", "portal.account_"),)),
    ControlSpec("AC-3", ("grants", "calls", "denied", "denials-by-rule", "calls-per-day",
                         "access-changes"),
                "Deny by default: every access decision of the period with its outcome and the "
                "role that allowed it; every denial with machine-readable reasons.", _ac3,
                organisational="The access control policy and who approves authorizations are "
                "the organisation's.", records=(("event", "mcp.decision"),)),
    ControlSpec("AC-6", ("roles", "grants", "denied", "denials-by-rule", "access-changes",
                         "access-requests", "access-review"),
                "Roles name exactly the tools, statement classes, tables and columns allowed; "
                "grants are scoped to a connection and may expire; denials show enforcement.",
                _ac6, organisational="Deciding what least privilege is for each duty, and "
                "reviewing it, are the organisation's.",
                records=(("event", "mcp."), ("decision", "deny"))),
    ControlSpec("IA-2", ("calls", "who-did-what", "personal-tokens", "privileged-mfa"),
                "Every allowed call carries an authenticated identity (OIDC or personal token); "
                "refused requests show the reason; privileged accounts have a second factor "
                "enrolled (IA-2(1)).", _ia2,
                organisational="Identity proofing, the identity provider's configuration and "
                "MFA for non-privileged access are outside the tool.",
                records=(("event", "mcp."),)),
    ControlSpec("AU-2", ("event-types", "audit-records"),
                "The event types the gateway and portal record, with counts per type and "
                "decision.", _au2,
                organisational="Coordinating the event selection with other entities (b), its "
                "rationale (d) and its periodic review (e) are the organisation's."),
    ControlSpec("AU-3", ("field-completeness", "audit-records"),
                "Each record says what happened, when, where, from where, the outcome and who: "
                "required fields checked on every record.", _au3,
                organisational="Whether the recorded content suffices for the organisation's "
                "investigations is the organisation's judgement."),
    ControlSpec("AU-3(3)", ("masking", "masking-by-class"),
                "Audit records hold results only as released (masked), secrets in arguments "
                "redacted.", _au3_3,
                organisational="Which PII elements audit records must not hold is the "
                "organisation's decision.", records=(("event", "mcp.outcome"),)),
    ControlSpec("AU-6", ("review-events", "evidence-packs", "export-cursors"),
                "Audit reviews, evidence packs and SIEM exports performed.", _au6,
                organisational="The review frequency, who reviews, reporting findings and "
                "adjusting the level of review are the organisation's.",
                records=(("event", "reports."),)),
    ControlSpec("AU-9", ("chain-verification", "checkpoints", "audit-events"),
                "Append-only, hash-chained records verified end to end against signed "
                "checkpoints when the pack was built.", _au9,
                organisational="Authorizing who may manage audit logging and alerting on "
                "unauthorized access are the organisation's."),
    ControlSpec("AU-9(3)", ("chain-verification", "checkpoints"),
                "Cryptographic protection: SHA-256 chain, Ed25519-signed checkpoints.", _au9_3,
                organisational="Key management (generation, custody, rotation of the signing "
                "keys) is the organisation's."),
    ControlSpec("AU-10", ("chain-verification", "who-did-what", "checkpoints"),
                "Who did what: every action bound to an identity in a tamper-evident chain.",
                _au10, organisational="Deciding which actions need non-repudiation is the "
                "organisation's."),
    ControlSpec("AU-11", ("settings", "audit-events", "legal-holds"),
                "The retention period, purges performed (each recorded with its range) and "
                "legal holds.", _au11,
                organisational="The retention period that records policy and regulation "
                "require is the organisation's.", records=(("event", "audit."),)),
    ControlSpec("AU-12", ("event-types", "calls-per-day", "audit-records"),
                "Records generated for every request, every day of the period.", _au12,
                organisational="Who may select the audited events, and the organisation-wide "
                "set of components that audit, are the organisation's."),
    ControlSpec("SI-12(1)", ("masking", "masking-by-class", "roles"),
                "PII elements limited in results: masking actions by class per role policy.",
                _deidentification, organisational="Which PII elements each purpose needs is "
                "the organisation's decision.", records=(("event", "mcp.outcome"),)),
    ControlSpec("SI-19", ("masking", "masking-by-class", "roles"),
                "De-identification of results: redaction, partial masking, keyed tokenization "
                "and nulling by PII class.", _deidentification,
                organisational="The de-identification policy, re-identification risk and "
                "release decisions are the organisation's.",
                records=(("event", "mcp.outcome"),)),
    ControlSpec("SC-13", ("masking-by-class", "settings"),
                "Keyed tokenization (HMAC-SHA256) where masking is cryptographic.", _sc13,
                organisational="Which cryptography law and policy require (and FIPS "
                "validation) is the organisation's determination.",
                records=(("event", "mcp.outcome"),)),
    ControlSpec("SC-28", ("connections", "personal-tokens", "api-tokens", "settings"),
                "Upstream credentials encrypted at rest (Fernet); tokens stored as hashes.",
                _sc28, oscal_method="EXAMINE",
                organisational="Which information needs protection at rest, and key custody, "
                "are the organisation's.", records=(("event", "portal.connection_"),)),
    ControlSpec("IR-4", ("incident-events", "quarantines", "incidents", "query-approvals"),
                "Quarantines, incidents, calls held for approval and their decisions.", _ir4,
                organisational="The incident response plan, coordination with contingency "
                "planning and lessons learned are the organisation's.",
                records=(("event", "portal.quarantine_"),)),
)
BY_LABEL = {c.label: c for c in CONTROLS}
ALL_LABELS = tuple(c.label for c in CONTROLS)


def controls_resolve(labels: list[str] | tuple[str, ...] | None) -> tuple[ControlSpec, ...]:
    """The specs for `labels` (case-insensitive), in catalog order; all when empty. ValueError
    names any unknown label."""
    if not labels:
        return CONTROLS
    wanted = {label.strip().upper() for label in labels if label.strip()}
    unknown = sorted(wanted - set(BY_LABEL))
    if unknown:
        raise ValueError(f"unknown control(s) {', '.join(unknown)}; the catalog has "
                         f"{', '.join(ALL_LABELS)}")
    return tuple(c for c in CONTROLS if c.label in wanted)


def evidence_needed(controls: tuple[ControlSpec, ...]) -> set[str]:
    return {name for c in controls for name in c.evidence}


def controls_of(name: str, controls: tuple[ControlSpec, ...]) -> tuple[str, ...]:
    return tuple(c.label for c in controls if name in c.evidence)
