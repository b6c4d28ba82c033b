"""Retention: purge old audit records, but only what can still be proven afterwards.

Records older than WARDGATE_AUDIT_RETENTION_DAYS are deleted only up to the newest record that is
both signed by a checkpoint (exported, when an export location is configured) and included in an
exported evidence pack; never while a legal hold is active; only inside a maintenance window;
never from a log that fails verification (that would destroy the evidence of tampering).

The purge ends exactly at a checkpoint, so the first kept record links (prev_hash) to a signed
hash: `audit.verify.verify_log` uses that checkpoint as the chain's anchor. The purge appends an
`audit.purged` record (range, count, anchor) in the same transaction, and a checkpoint covering
that record, so a prefix deleted by anyone else is never mistaken for a retention purge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Max, Min
from django.utils import timezone

from .checkpoints import (
    CheckpointData,
    CheckpointError,
    checkpoint_create,
    checkpoint_export,
    configured_store,
    verify_keys,
)
from .config import audit_config
from .control_models import AuditCheckpoint, LegalHold
from .maintenance import purge_window
from .models import AuditChainHead, AuditRecord
from .services import HEAD_ID, AuditEntry, append_records
from .verify import PURGE_EVENT, verify_log

log = logging.getLogger(__name__)

LEGAL_HOLD_PLACED = "audit.legal_hold.placed"
LEGAL_HOLD_RELEASED = "audit.legal_hold.released"

# What retention needs of reports.models.EvidencePack: a status, and the half-open period
# [period_start, period_end) of audit records the pack holds. Only here, if the model changes.
PACK_STATUS_EXPORTED = "exported"
PACK_FIELDS = ("status", "period_start", "period_end", "includes_records")


class RetentionError(Exception):
    """Retention refused to purge (e.g. the log does not verify)."""


@dataclass(frozen=True, slots=True)
class PurgeResult:
    purged: int
    from_seq: int | None = None
    to_seq: int | None = None
    cutoff: datetime | None = None
    purge_record_seq: int | None = None
    checkpoint_seq: int | None = None
    skipped: str | None = None  # why nothing was purged
    export_error: str | None = None  # the purge happened, exporting its checkpoint failed


# --- evidence pack coverage: the hook reports/ wires into ----------------------------------------

# The evidence pack model retention asks about (`reports.models.EvidencePack`). The reports app
# registers it when it is ready (reports/apps.py), so the audit app imports no other app.
_evidence_pack_model: type | None = None


def evidence_pack_model_register(pack_model: type | None) -> None:
    """Name the model whose exported packs count as coverage (None: nothing counts)."""
    global _evidence_pack_model
    _evidence_pack_model = pack_model


def covered_by_exported_pack(seq: int, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when every record still in the log up to and including `seq` lies in the period of
    an exported evidence pack (`reports.models.EvidencePack`, status exported). The one place
    retention asks; without the reports app nothing counts as exported, so nothing is purged."""
    if _evidence_pack_model is None:
        log.info("no evidence pack model is registered: no records count as exported")
        return False
    return _evidence_packs_cover(_evidence_pack_model, seq, using)


def _evidence_packs_cover(pack_model: type, seq: int, using: str) -> bool:
    names = {f.name for f in pack_model._meta.get_fields()}  # type: ignore[attr-defined]
    missing = [name for name in PACK_FIELDS if name not in names]
    if missing:
        raise ImproperlyConfigured(
            f"audit.retention.covered_by_exported_pack expects EvidencePack.{', '.join(missing)}:"
            f" adapt it to the evidence pack model"
        )
    span = (
        AuditRecord.objects.using(using)
        .filter(seq__lte=seq)
        .aggregate(first=Min("at"), last=Max("at"))
    )
    if span["first"] is None:
        return False
    periods = (
        pack_model.objects.using(using)  # type: ignore[attr-defined]
        .filter(
            status=PACK_STATUS_EXPORTED,
            # Only packs that carry the record-level populations count as coverage.
            includes_records=True,
            period_end__gt=span["first"],
            period_start__lte=span["last"],
        )
        .order_by("period_start")
        .values_list("period_start", "period_end")
    )
    # Periods are half-open [start, end): together they must cover [first, last] without a gap.
    covered_until = span["first"]  # every record before this instant is covered
    for start, end in periods:
        if start > covered_until:
            return False
        covered_until = max(covered_until, end)
        if covered_until > span["last"]:
            return True
    return False


# --- legal holds -------------------------------------------------------------------------------


def active_legal_holds(*, using: str = DEFAULT_DB_ALIAS) -> list[LegalHold]:
    return list(LegalHold.objects.using(using).filter(released_at__isnull=True))


def legal_hold_place(*, reason: str, created_by: str, using: str = DEFAULT_DB_ALIAS) -> LegalHold:
    """Stop all purging until released. Recorded in the audit log in the same transaction."""
    if not reason.strip():
        raise ValueError("a legal hold needs a reason")
    with transaction.atomic(using=using):
        hold = LegalHold.objects.using(using).create(reason=reason, created_by=created_by)
        append_records(
            [
                AuditEntry(
                    event=LEGAL_HOLD_PLACED,
                    actor=created_by,
                    decision="info",
                    detail={"legal_hold_id": hold.pk, "reason": reason},
                )
            ],
            using=using,
        )
    return hold


def legal_hold_release(
    hold: LegalHold, *, released_by: str, using: str = DEFAULT_DB_ALIAS
) -> LegalHold:
    with transaction.atomic(using=using):
        hold = LegalHold.objects.using(using).select_for_update().get(pk=hold.pk)
        if hold.released_at is not None:
            return hold
        hold.released_at = timezone.now()
        hold.released_by = released_by
        hold.save(using=using, update_fields=["released_at", "released_by"])
        append_records(
            [
                AuditEntry(
                    event=LEGAL_HOLD_RELEASED,
                    actor=released_by,
                    decision="info",
                    detail={"legal_hold_id": hold.pk, "reason": hold.reason},
                )
            ],
            using=using,
        )
    return hold


# --- the purge ---------------------------------------------------------------------------------


def _hold_reason(using: str) -> str | None:
    holds = active_legal_holds(using=using)
    if not holds:
        return None
    ids = ", ".join(f"#{hold.pk}" for hold in holds)
    return f"legal hold {ids} is active: nothing is purged"


def _purge_limit(cutoff: datetime, using: str) -> tuple[int | None, int | None]:
    """(first kept seq, last seq older than the cutoff). Every record up to the second is
    older than the cutoff even if clocks of several gateway hosts disagreed a little."""
    records = AuditRecord.objects.using(using)
    first = records.aggregate(m=Min("seq"))["m"]
    if first is None:
        return None, None
    young = records.filter(at__gte=cutoff).aggregate(m=Min("seq"))["m"]
    last_old = (young - 1) if young is not None else records.aggregate(m=Max("seq"))["m"]
    return first, last_old


def _purge_checkpoint(first: int, last_old: int, using: str) -> tuple[AuditCheckpoint | None, str]:
    """The newest checkpoint in [first, last_old] that is valid, exported (if export is
    configured) and covered by an exported evidence pack; else None and why not."""
    keys = verify_keys()
    must_be_exported = bool(audit_config().checkpoint_export)
    candidates = AuditCheckpoint.objects.using(using).filter(seq__gte=first, seq__lte=last_old)
    if must_be_exported:
        candidates = candidates.filter(exported_at__isnull=False)
    reason = f"no signed checkpoint covers records {first}..{last_old} yet"
    for checkpoint in candidates.order_by("-seq"):
        if CheckpointData.from_model(checkpoint).verify(keys):
            continue
        if covered_by_exported_pack(checkpoint.seq, using=using):
            return checkpoint, ""
        reason = f"records {first}..{checkpoint.seq} are not (all) in an exported evidence pack yet"
    return None, reason


def retention_purge(
    now: datetime | None = None,
    *,
    retention_days: int | None = None,
    dry_run: bool = False,
    using: str = DEFAULT_DB_ALIAS,
    by: str = "system",
    auth_method: str = "",
) -> PurgeResult:
    """Purge what retention allows (see the module docstring); returns what happened.

    Raises RetentionError if the log does not verify against its checkpoints.
    """
    days = retention_days if retention_days is not None else audit_config().retention_days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    held = _hold_reason(using)
    if held:
        return PurgeResult(0, cutoff=cutoff, skipped=held)
    first, last_old = _purge_limit(cutoff, using)
    if first is None or last_old is None or last_old < first:
        return PurgeResult(0, cutoff=cutoff, skipped="no record is older than the cutoff")
    checkpoint, why_not = _purge_checkpoint(first, last_old, using)
    if checkpoint is None:
        return PurgeResult(0, cutoff=cutoff, skipped=why_not)
    to_seq = checkpoint.seq
    if dry_run:
        return PurgeResult(
            to_seq - first + 1, first, to_seq, cutoff, skipped="dry run: nothing deleted"
        )

    verified = verify_log(using=using)
    if not verified.ok:
        problems = [verified.chain.problem] if not verified.chain.ok else []
        raise RetentionError(
            "refusing to purge a log that does not verify (the purge would destroy the "
            "evidence): " + "; ".join(str(p) for p in [*problems, *verified.problems])
        )

    with purge_window("retention", using=using) as window:
        # Lock the chain head: appends (and so legal_hold_place, which appends) wait for this
        # purge, and a hold committed before the lock is seen by the re-check below.
        AuditChainHead.objects.using(using).select_for_update().filter(pk=HEAD_ID).first()
        held = _hold_reason(using)
        if held:
            # Leaving the block normally commits nothing but the (already removed) window row.
            return PurgeResult(0, cutoff=cutoff, skipped=held)
        with connections[using].cursor() as cursor:
            cursor.execute(
                "DELETE FROM audit_record WHERE seq >= %s AND seq <= %s", [first, to_seq]
            )
            purged = cursor.rowcount
        if purged != to_seq - first + 1:
            raise RetentionError(
                f"expected to purge {to_seq - first + 1} records ({first}..{to_seq}), "
                f"found {purged}: the log changed underneath; nothing was purged"
            )
        [record] = append_records(
            [
                AuditEntry(
                    event=PURGE_EVENT,
                    actor=by,
                    auth_method=auth_method,
                    decision="info",
                    detail={
                        "from_seq": first,
                        "to_seq": to_seq,
                        "count": purged,
                        "anchor_hash": checkpoint.hash,
                        "checkpoint_seq": checkpoint.seq,
                        "checkpoint_at": CheckpointData.from_model(checkpoint).at,
                        "cutoff": cutoff.isoformat(),
                        "retention_days": days,
                        "window": window,
                    },
                )
            ],
            using=using,
        )
        # Signed in the same transaction: verification requires the purge record to be covered
        # by a checkpoint, so the two must never exist apart.
        covering = checkpoint_create(using=using)
    log.warning("audit retention purged records %d..%d (%d)", first, to_seq, purged)

    export_error = None
    if configured_store() is not None:
        try:
            checkpoint_export(using=using)
        except CheckpointError as exc:
            # The purge stands; the next scheduled export retries. verify_log --checkpoints-from
            # reports the purge record as uncovered until then.
            export_error = str(exc)
            log.error("exporting the checkpoint after a purge failed: %s", exc)
    return PurgeResult(
        purged,
        first,
        to_seq,
        cutoff,
        purge_record_seq=record.seq,
        checkpoint_seq=covering.seq if covering else None,
        export_error=export_error,
    )
