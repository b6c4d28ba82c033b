"""Recompute the audit chain from the stored rows (NIST AU-9: protection of audit information).

Rows are streamed in seq order by keyset pagination (`seq > last ORDER BY seq LIMIT n`), so
memory stays flat however long the chain is, and no long transaction is held: on SQLite a
transaction would take the write lock (IMMEDIATE mode) and stall every appender.

`verify_log` adds the signed checkpoints (audit/checkpoints.py): the chain alone cannot see a
tail that was cut off together with the head, nor a tail recomputed from an edited record.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models import Max, Min

from .chain import GENESIS_HASH
from .chain_scan import RangeScan, RangeScanner, legacy_after_keyed, scan_cursor, select_sql
from .checkpoints import (
    CheckpointData,
    CheckpointError,
    CheckpointStore,
    load_checkpoints,
    signing_key,
    verify_keys,
)
from .config import audit_config
from .models import AuditChainHead, AuditRecord
from .services import HEAD_ID, chain_key, chain_legacy_keys
from .signing import SigningKeyError, key_id
from .verified import VerifiedThrough, verified_through_load, verified_through_record

log = logging.getLogger(__name__)

# The event retention appends after a purge (audit/retention.py); verification reads its detail
# to accept the purged prefix.
PURGE_EVENT = "audit.purged"


def default_workers() -> int:
    """Processes a verification splits its recomputation over: the CPU count, at most 4 (the
    database's read rate caps what more would gain)."""
    return max(1, min(4, os.cpu_count() or 1))


# Records per range worth a worker process of its own (forking and connecting cost ~50 ms).
MIN_RECORDS_PER_WORKER = 50_000


def _shareable(using: str) -> bool:
    """Whether range workers may be forked here and see what this connection sees: not an
    in-memory SQLite database, not inside a transaction (its uncommitted rows would be
    invisible)."""
    conn = connections[using]
    if conn.in_atomic_block:
        return False
    # Forking is only safe from a single-threaded, non-daemonic process (a Celery prefork child
    # may not have children; a threaded server's locks would be copied held).
    if multiprocessing.current_process().daemon or threading.active_count() > 1:
        return False
    name = str(conn.settings_dict.get("NAME") or "")
    return not (conn.vendor == "sqlite" and (not name or name == ":memory:"
                                              or "mode=memory" in name))


def _placeholder(conn: Any) -> str:
    return "?" if conn.vendor == "sqlite" else "%s"


def _scan_one(first_seq: int, prev_hash: str, last_seq: int, key: bytes | None,
              legacy_keys: tuple[bytes, ...], batch_size: int, cursor: Any,
              vendor_conn: Any, keyed_since: int | None = None) -> RangeScan:
    scanner = RangeScanner(first_seq, prev_hash, key, legacy_keys)
    scanner.result.first_keyed = keyed_since  # records before the range were keyed from here
    sql = select_sql(AuditRecord._meta.db_table, _placeholder(vendor_conn),
                     at_as_text=vendor_conn.vendor == "sqlite")
    return scan_cursor(cursor, sql, scanner, last_seq, batch_size)


def _scan_here(first_seq: int, prev_hash: str, last_seq: int, key: bytes | None,
               legacy_keys: tuple[bytes, ...], batch_size: int, conn: Any,
               keyed_since: int | None = None) -> RangeScan:
    """On this process's connection, through the driver's own cursor: Django's wrapper adds
    per-query bookkeeping (and the query log under DEBUG) that a 200-query scan does not need."""
    conn.ensure_connection()
    cursor = conn.connection.cursor()
    try:
        return _scan_one(first_seq, prev_hash, last_seq, key, legacy_keys, batch_size, cursor,
                         conn, keyed_since)
    finally:
        cursor.close()


def _scan_in_child(job: tuple[Any, ...]) -> RangeScan:
    """A forked worker: a connection of its own (never the parent's, whose socket it shares),
    left by os._exit without closing anything of the parent's."""
    using, first_seq, prev_hash, last_seq, key, legacy_keys, batch_size = job
    wrapper = connections[using]
    raw = wrapper.get_new_connection(wrapper.get_connection_params())
    try:
        cursor = raw.cursor()
        return _scan_one(first_seq, prev_hash, last_seq, key, legacy_keys, batch_size, cursor,
                         wrapper)
    finally:
        raw.close()


def _combine(scans: list[RangeScan], boundary: dict[int, str | None]) -> RangeScan:
    """One pass's verdict from consecutive ranges: the earliest problem wins, a legacy record in
    a later range after a keyed one in an earlier range is the same rewrite one pass reports,
    and each range must start from the hash its predecessor ended on (re-checked: the boundary
    hash read up front must be the one the previous range read as it scanned)."""
    total = RangeScan(first_seq=scans[0].first_seq, next_seq=scans[0].first_seq,
                      last_hash=scans[0].last_hash)
    keyed_since: int | None = None
    for index, scan in enumerate(scans):
        if index:
            previous = scans[index - 1]
            if boundary.get(scan.first_seq) != previous.last_hash:
                seq = scan.first_seq - 1
                total.broken_seq, total.problem = seq, (
                    f"record {seq} changed while it was being verified (its hash differs "
                    f"between two reads): it was rewritten during verification")
                total.checked = seq - total.first_seq
                return total
        problems: list[tuple[int, str]] = []
        if scan.broken_seq is not None:
            problems.append((scan.broken_seq, scan.problem or ""))
        if keyed_since is not None and scan.first_legacy is not None:
            problems.append((scan.first_legacy,
                             legacy_after_keyed(scan.first_legacy, keyed_since)))
        if problems:
            total.broken_seq, total.problem = min(problems)
            total.checked = total.broken_seq - total.first_seq
            return total
        if keyed_since is None:
            keyed_since = scan.first_keyed
        total.first_keyed = keyed_since
        total.first_legacy = total.first_legacy or scan.first_legacy
        total.checked += scan.checked
        total.next_seq, total.last_hash = scan.next_seq, scan.last_hash
    return total


def _scan_ranges(first_seq: int, prev_hash: str, last_seq: int, key: bytes | None,
                 legacy_keys: tuple[bytes, ...], *, batch_size: int, workers: int,
                 keyed_since: int | None = None, min_range: int = 0,
                 using: str) -> tuple[RangeScan, int]:
    """Scan records first_seq..last_seq, split over `workers` processes when the range is long
    enough and the database can be opened by them; else in this process. Returns the combined
    scan and the number of processes used."""
    count = last_seq - first_seq + 1
    workers = max(1, min(workers, count // max(1, min_range or MIN_RECORDS_PER_WORKER)))
    conn = connections[using]
    if workers == 1 or not _shareable(using):
        return _scan_here(first_seq, prev_hash, last_seq, key, legacy_keys, batch_size, conn,
                          keyed_since), 1
    starts = [first_seq + count * i // workers for i in range(workers)]
    ends = [*(s - 1 for s in starts[1:]), last_seq]
    # Each range after the first starts from the stored hash of the record before it; the range
    # before re-reads that record as it scans, and `_combine` checks both reads agree.
    boundary: dict[int, str | None] = {first_seq: prev_hash}
    found = _record_hashes([s - 1 for s in starts[1:]], using)
    for start in starts[1:]:
        boundary[start] = found.get(start - 1)
    jobs = [(using, start, boundary[start] or "(missing)", end, key, legacy_keys, batch_size)
            for start, end in zip(starts, ends, strict=True)]
    # A worker that dies raises BrokenProcessPool here (multiprocessing.Pool would wait forever):
    # the verification fails rather than passing without its range.
    with ProcessPoolExecutor(max_workers=len(jobs) - 1,
                             mp_context=multiprocessing.get_context("fork")) as pool:
        pending = [pool.submit(_scan_in_child, job) for job in jobs[1:]]
        # This process takes the first range itself.
        first = _scan_here(*jobs[0][1:], conn, keyed_since)
        rest = [future.result() for future in pending]
    return _combine([first, *rest], boundary), len(jobs)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records_checked: int
    first_broken_seq: int | None
    problem: str | None
    head_seq: int
    head_hash: str
    keyed_since: int | None = None  # the first record under the chain key, if any was seen
    processes: int = 1  # the recomputation was split over this many processes


def verify_chain(
    *,
    batch_size: int = 5000,
    anchor: tuple[int, str] | None = None,
    keyed_since: int | None = None,
    workers: int = 1,
    min_range: int = MIN_RECORDS_PER_WORKER,
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
    key = chain_key()
    legacy_keys = chain_legacy_keys() if key else ()
    scan, processes = _scan_ranges(expected_seq, prev_hash, head_seq, key, legacy_keys, batch_size=batch_size,
                        workers=workers, keyed_since=keyed_since, min_range=min_range,
                        using=using)
    checked = scan.checked
    keyed_since = scan.first_keyed

    def broken(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, problem, head_seq, head_hash, keyed_since,
                            processes)

    if scan.broken_seq is not None:
        return broken(scan.broken_seq, scan.problem or "")
    expected_seq, prev_hash = scan.next_seq, scan.last_hash

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
    if key and checked and keyed_since is None:
        # Every deployment with a key has appended a keyed record (migration 0005 does so for
        # chains that predate keying), so a chain without one was rewritten without the key.
        return broken(
            expected_seq - checked,
            "no record is keyed although a chain key is configured: the chain was recomputed "
            "without the key (or WARDGATE_AUDIT_CHAIN_KEY is not the key it was written with)")
    # Read max(seq) before the head again: a legitimate append commits its rows and the head
    # together, so any row beyond the re-read head was inserted around the chain.
    max_seq = AuditRecord.objects.using(using).aggregate(m=Max("seq"))["m"] or 0
    current_head = AuditChainHead.objects.using(using).filter(pk=HEAD_ID).first()
    if current_head is None or max_seq > current_head.seq:
        beyond = (current_head.seq if current_head else head_seq) + 1
        return broken(beyond, f"record {beyond} lies beyond the chain head (inserted around it)")
    return VerifyResult(True, checked, None, None, head_seq, head_hash, keyed_since, processes)


@dataclass(frozen=True, slots=True)
class LogVerifyResult:
    """The chain's verdict plus the checkpoints': `ok` only if both hold."""

    chain: VerifyResult
    problems: tuple[str, ...]
    checkpoints_checked: int
    checkpoint_source: str
    latest_checkpoint: CheckpointData | None = None
    anchor: tuple[int, str] | None = None
    purge_record_seq: int | None = None
    # "full": every kept record was recomputed; "incremental": only those after
    # `verified_through`, the records up to it having been recomputed by an earlier verification.
    mode: str = "full"
    mode_reason: str = ""
    verified_through: VerifiedThrough | None = None
    marker_written: VerifiedThrough | None = None

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problems


def _record_hashes(seqs: list[int], using: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for start in range(0, len(seqs), 500):  # stay under every backend's parameter limit
        chunk = seqs[start : start + 500]
        rows = AuditRecord.objects.using(using).filter(seq__in=chunk).values_list("seq", "hash")
        found.update(rows)
    return found


def _compare_with_database(exported: list[CheckpointData], using: str) -> list[str]:
    """Exported copies are the trusted ones: a database checkpoint that differs from its copy
    was rewritten, one that is missing was deleted (migration 0004's triggers make both take
    dropped triggers or a forged maintenance window; retention never deletes checkpoints)."""
    database, _ = load_checkpoints(using=using)
    by_seq = {c.seq: c for c in database}
    problems: list[str] = []
    for copy in exported:
        mine = by_seq.get(copy.seq)
        if mine is None:
            problems.append(
                f"checkpoint #{copy.seq} is in the export ({copy.source}) but missing from the "
                f"database (deleted)"
            )
        elif mine.signed_fields() != copy.signed_fields():
            problems.append(
                f"checkpoint #{copy.seq} in the database differs from its exported copy "
                f"({copy.source}): the database copy was rewritten"
            )
    return problems


def _configured_export(using: str) -> tuple[list[CheckpointData], str, list[str]]:
    """The checkpoints in WARDGATE_CHECKPOINT_EXPORT (none when it is not configured or nothing
    was exported yet), where they came from, and the problems met reading them."""
    from .checkpoints import configured_store
    from .control_models import AuditCheckpoint

    try:
        configured = configured_store()
    except CheckpointError as exc:
        return [], "", [str(exc)]
    if configured is None:
        return [], "", []
    try:
        exported, problems = load_checkpoints(store=configured, using=using)
    except CheckpointError as exc:
        claimed = AuditCheckpoint.objects.using(using).filter(exported_at__isnull=False).exists()
        return [], configured.location, [str(exc)] if claimed else []
    return exported, configured.location, problems


def _unexplained_windows(first_seq: int | None, using: str) -> list[str]:
    """Maintenance windows opened while the kept chain existed that no purge record names:
    rows (records, checkpoints, legal holds) may have been deleted under them."""
    from .maintenance import windows_opened_since

    if first_seq is None:
        return []
    first_at = AuditRecord.objects.using(using).filter(seq=first_seq).values_list(
        "at", flat=True).first()
    if first_at is None:
        return []
    purges = AuditRecord.objects.using(using).filter(event=PURGE_EVENT).values_list(
        "detail", flat=True)
    explained = {d.get("window") for d in purges if isinstance(d, dict)}
    return [f"maintenance window {token[:8]}… ({reason or 'no reason'}) was opened and no purge "
            f"record accounts for it: rows may have been deleted under it"
            for token, reason in windows_opened_since(first_at, using=using)
            if token not in explained]


def _purge_record_problem(
    anchor: tuple[int, str], latest_valid_seq: int, using: str
) -> tuple[str | None, int | None]:
    """The prefix up to `anchor` may be missing only because retention purged it: the newest
    purge record must name exactly that range end and hash, and a signed checkpoint must cover
    the purge record (else anyone with database access could delete a prefix and append a
    purge record of their own: the chain is unkeyed)."""
    record = (
        AuditRecord.objects.using(using)
        .filter(event=PURGE_EVENT)
        .order_by("-seq")
        .values("seq", "detail")
        .first()
    )
    if record is None:
        return (
            f"records 1..{anchor[0]} are missing but no {PURGE_EVENT} record accounts for them",
            None,
        )
    detail = record["detail"] if isinstance(record["detail"], dict) else {}
    if detail.get("to_seq") != anchor[0] or detail.get("anchor_hash") != anchor[1]:
        return (
            f"records 1..{anchor[0]} are missing but the latest purge record "
            f"#{record['seq']} covers up to record {detail.get('to_seq')}",
            record["seq"],
        )
    if latest_valid_seq < record["seq"]:
        return (
            f"the purge record #{record['seq']} is not covered by a signed checkpoint "
            f"(latest: #{latest_valid_seq}); run audit_checkpoint --export",
            record["seq"],
        )
    return None, record["seq"]


def _retired_keys_after_successor(valid: dict[int, CheckpointData]) -> list[str]:
    """A key from WARDGATE_CHECKPOINT_VERIFY_KEYS vouches only for what was signed before the
    current signing key's first checkpoint: after that, nothing is signed with it any more (the
    demo's old key is public, so anyone could). Later ones are dropped from `valid`."""
    if not audit_config().checkpoint_signing_key:
        return []  # a verifier without the private key: no key is known to be the current one
    current = key_id(signing_key().public_key())
    first = min((seq for seq, c in valid.items() if c.key_id == current), default=None)
    if first is None:
        return []
    problems = []
    for seq in sorted(seq for seq, c in valid.items() if seq > first and c.key_id != current):
        checkpoint = valid.pop(seq)
        problems.append(
            f"checkpoint #{seq} ({checkpoint.source}) is signed by retired key "
            f"{checkpoint.key_id} after the current key signed checkpoint #{first}: it was "
            f"forged"
        )
    return problems


def _marker_unusable(marker: VerifiedThrough, valid: dict[int, CheckpointData],
                     exported: dict[int, CheckpointData] | None,
                     anchor: tuple[int, str] | None, using: str) -> str | None:
    """Why records up to the marker may not be skipped (None: they may)."""
    checkpoint = valid.get(marker.seq)
    if checkpoint is None or checkpoint.hash != marker.hash:
        return f"no validly signed checkpoint #{marker.seq} matches the verified-through marker"
    if exported is None:
        return "no write-once checkpoint export is configured to confirm the checkpoint"
    copy = exported.get(marker.seq)
    if copy is None or copy.signed_fields() != checkpoint.signed_fields():
        return f"checkpoint #{marker.seq} does not match a copy in the write-once export"
    if anchor is not None and marker.seq < anchor[0]:
        return f"the marker (record {marker.seq}) predates the purge up to record {anchor[0]}"
    if _record_hashes([marker.seq], using).get(marker.seq) != marker.hash:
        return (f"record {marker.seq} no longer has the hash checkpoint #{marker.seq} signed "
                f"(verified in full to name the first changed record)")
    return None


def verify_log(
    *,
    batch_size: int = 5000,
    checkpoints_from: str | None = None,
    store: CheckpointStore | None = None,
    incremental: bool = False,
    workers: int = 1,
    min_range: int = MIN_RECORDS_PER_WORKER,
    record_marker: bool = True,
    using: str = DEFAULT_DB_ALIAS,
) -> LogVerifyResult:
    """Verify the chain and every checkpoint (NIST AU-9, AU-10).

    Checkpoints come from the database, or (`checkpoints_from` / `store`) from the write-once
    export, which someone with database access cannot rewrite; those are then also compared
    with the database's. Checks: each checkpoint's signature; that the record at its seq still
    has its hash (an edit, even with every later hash recomputed); that the chain still reaches
    its seq (a truncation, even with the chain head rewound); and, after a retention purge, that
    the chain starts right after a signed checkpoint named by the newest purge record, which
    becomes the anchor for `verify_chain`.

    `incremental`: start the chain recomputation after the verified-through marker when it can
    be trusted (audit/verified.py lists the conditions), else verify in full; every checkpoint
    check above still covers the whole log. A successful verification then signs a marker at
    the newest exported checkpoint it confirmed (`record_marker`). `workers`: processes the
    recomputation is split over (see `verify_chain`).
    """
    external = bool(checkpoints_from or store)
    source = (store.location if store else checkpoints_from) or "database"
    try:
        checkpoints, read_problems = load_checkpoints(checkpoints_from, store=store, using=using)
    except CheckpointError as exc:
        checkpoints, read_problems = [], [str(exc)]
    problems = list(read_problems)
    exported_by_seq: dict[int, CheckpointData] | None = (
        {c.seq: c for c in checkpoints} if external else None)
    if not external:
        # By default the database's checkpoints and the configured write-once export's are both
        # checked: a checkpoint deleted or rewritten in the database is caught by its copy.
        exported, export_source, export_problems = _configured_export(using)
        problems.extend(export_problems)
        if export_source or exported:
            exported_by_seq = {c.seq: c for c in exported}
        if exported:
            problems.extend(_compare_with_database(exported, using))
            checkpoints = sorted([*exported, *checkpoints], key=lambda c: c.seq)
            source = f"database and {export_source}"
    keys = verify_keys()
    valid: dict[int, CheckpointData] = {}
    for checkpoint in checkpoints:
        problem = checkpoint.verify(keys)
        if problem:
            problems.append(problem)
            continue
        seen = valid.get(checkpoint.seq)
        if seen is not None and seen.hash != checkpoint.hash:
            problems.append(
                f"two validly signed checkpoints disagree about record {checkpoint.seq}: "
                f"the chain was forked"
            )
        valid[checkpoint.seq] = checkpoint
    problems.extend(_retired_keys_after_successor(valid))
    if external:
        problems.extend(_compare_with_database(checkpoints, using))

    records = AuditRecord.objects.using(using).aggregate(first=Min("seq"), last=Max("seq"))
    first_seq, last_seq = records["first"], records["last"]
    anchor: tuple[int, str] | None = None
    purge_seq: int | None = None
    latest_valid = max(valid) if valid else 0
    if first_seq is not None and first_seq > 1:
        anchor_checkpoint = valid.get(first_seq - 1)
        if anchor_checkpoint is None:
            problems.append(
                f"records 1..{first_seq - 1} are missing and no signed checkpoint at record "
                f"{first_seq - 1} anchors a retention purge there"
            )
        else:
            anchor = (anchor_checkpoint.seq, anchor_checkpoint.hash)
            problem, purge_seq = _purge_record_problem(anchor, latest_valid, using)
            if problem:
                problems.append(problem)

    mode, mode_reason, marker = "full", "full verification requested", None
    if incremental:
        marker, marker_problem, why_not = verified_through_load(using=using)
        if marker_problem:
            problems.append(marker_problem)
        if marker is None:
            mode_reason = why_not
        else:
            unusable = _marker_unusable(marker, valid, exported_by_seq, anchor, using)
            if unusable:
                mode_reason, marker = unusable, None
            else:
                mode, mode_reason = "incremental", (
                    f"records 1..{marker.seq} were recomputed at {marker.verified_at} up to "
                    f"signed, exported checkpoint #{marker.seq}, whose record still has its hash")
    if marker is not None:
        chain = verify_chain(batch_size=batch_size, anchor=(marker.seq, marker.hash),
                             keyed_since=marker.keyed_since, workers=workers,
                             min_range=min_range, using=using)
    else:
        chain = verify_chain(batch_size=batch_size, anchor=anchor, workers=workers,
                             min_range=min_range, using=using)
    problems.extend(_unexplained_windows(first_seq, using))

    # Every valid checkpoint at or after the first kept record must still match the log.
    reachable = min(chain.head_seq, last_seq or 0)
    keep_from = first_seq if first_seq is not None else chain.head_seq + 1
    to_check = [seq for seq in sorted(valid) if keep_from <= seq <= reachable]
    stored = _record_hashes(to_check, using)
    matched_up_to = anchor[0] if anchor else 0  # the last record a checkpoint still vouches for
    for seq in to_check:
        checkpoint = valid[seq]
        if seq not in stored:
            problems.append(f"record {seq}, signed by checkpoint #{seq}, is missing")
        elif stored[seq] != checkpoint.hash:
            problems.append(
                f"record {seq} no longer has the hash that checkpoint #{seq} signed at "
                f"{checkpoint.at} ({checkpoint.source}): records {matched_up_to + 1}..{seq} "
                f"were edited or rewritten"
            )
        else:
            matched_up_to = seq
    if latest_valid > reachable and latest_valid >= keep_from:
        newest = valid[latest_valid]
        problems.append(
            f"the log was truncated: checkpoint #{latest_valid} (signed at {newest.at}, "
            f"{newest.source}) covers records up to {latest_valid} but the chain ends at record "
            f"{reachable} (head seq {chain.head_seq})"
        )
    written = None
    if record_marker and chain.ok and not problems and exported_by_seq:
        confirmed = [seq for seq in to_check if stored.get(seq) == valid[seq].hash
                     and seq in exported_by_seq
                     and exported_by_seq[seq].signed_fields() == valid[seq].signed_fields()]
        newest = max(confirmed, default=0)
        if newest > (marker.seq if marker else 0):
            keyed = chain.keyed_since if chain.keyed_since and chain.keyed_since <= newest else None
            try:
                written = verified_through_record(newest, valid[newest].hash, keyed, using=using)
            except (DatabaseError, SigningKeyError) as exc:  # only an optimisation is lost
                log.warning("could not record the verified-through marker: %s", exc)
    return LogVerifyResult(
        chain=chain,
        problems=tuple(problems),
        checkpoints_checked=len(checkpoints),
        checkpoint_source=source,
        latest_checkpoint=valid[latest_valid] if valid else None,
        anchor=anchor,
        purge_record_seq=purge_seq,
        mode=mode,
        mode_reason=mode_reason,
        verified_through=marker,
        marker_written=written,
    )
