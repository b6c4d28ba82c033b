"""Recompute the audit chain from the stored rows (NIST AU-9: protection of audit information).

Rows are streamed in seq order by keyset pagination (`seq > last ORDER BY seq LIMIT n`), so
memory stays flat however long the chain is, and no long transaction is held: on SQLite a
transaction would take the write lock (IMMEDIATE mode) and stall every appender.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Max

from .chain import GENESIS_HASH, HASHED_FIELDS, compute_hash
from .models import AuditChainHead, AuditRecord
from .services import HEAD_ID


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records_checked: int
    first_broken_seq: int | None
    problem: str | None
    head_seq: int
    head_hash: str


def verify_chain(
    *,
    batch_size: int = 5000,
    anchor: tuple[int, str] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> VerifyResult:
    """Check every record's hash, every link, gapless seq and the chain head.

    `anchor` = (seq, hash) of the last record before the first one kept, for a chain whose
    prefix was purged under a signed checkpoint; by default the chain must start at seq 1 from
    the genesis hash. Appends may continue while this runs: the head is read first and only
    records up to it are checked.
    """
    head = AuditChainHead.objects.using(using).filter(pk=HEAD_ID).first()
    head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS_HASH)
    expected_seq, prev_hash = (anchor[0] + 1, anchor[1]) if anchor else (1, GENESIS_HASH)
    checked = 0

    def broken(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, problem, head_seq, head_hash)

    rows = AuditRecord.objects.using(using).order_by("seq").values(*HASHED_FIELDS, "hash")
    last_seq = expected_seq - 1
    while True:
        batch = list(rows.filter(seq__gt=last_seq, seq__lte=head_seq)[:batch_size])
        for row in batch:
            seq = row["seq"]
            if seq != expected_seq:
                return broken(
                    expected_seq,
                    f"record {expected_seq} is missing (the next record is {seq})"
                    if seq > expected_seq
                    else f"record {seq} is out of order (expected {expected_seq})",
                )
            if row["prev_hash"] != prev_hash:
                return broken(
                    seq,
                    f"record {seq} does not link to record {seq - 1}: its prev_hash is not "
                    f"that record's hash (one of the two was rewritten)",
                )
            if compute_hash(prev_hash, row) != row["hash"]:
                return broken(seq, f"record {seq} was altered: its content does not match its hash")
            prev_hash = row["hash"]
            expected_seq += 1
            checked += 1
        if len(batch) < batch_size:
            break
        last_seq = batch[-1]["seq"]

    if head is None and checked == 0:
        if AuditRecord.objects.using(using).exists():
            return broken(1, "the chain head is missing but records exist")
        return VerifyResult(True, 0, None, None, head_seq, head_hash)
    if expected_seq - 1 < head_seq:
        return broken(
            expected_seq,
            f"records {expected_seq}..{head_seq} are missing: the chain head is at {head_seq} "
            f"but the last record is {expected_seq - 1} (a deleted tail)",
        )
    if prev_hash != head_hash:
        return broken(head_seq, f"the chain head's hash does not match record {head_seq}")
    # Read max(seq) before the head again: a legitimate append commits its rows and the head
    # together, so any row beyond the re-read head was inserted around the chain.
    max_seq = AuditRecord.objects.using(using).aggregate(m=Max("seq"))["m"] or 0
    current_head = AuditChainHead.objects.using(using).filter(pk=HEAD_ID).first()
    if current_head is None or max_seq > current_head.seq:
        beyond = (current_head.seq if current_head else head_seq) + 1
        return broken(beyond, f"record {beyond} lies beyond the chain head (inserted around it)")
    return VerifyResult(True, checked, None, None, head_seq, head_hash)
