"""Deliver the audit log to one sink, in seq order, at least once.

Loop: read up to `batch_size` records with seq > cursor (and <= the chain head), deliver them,
then save the cursor. The cursor is saved only after the sink accepted the batch, so a crash
or a failed delivery never skips a record; a crash *between* delivery and the cursor save sends
that batch again after the restart: the duplicate window is at most one batch (`batch_size`
records). Each message carries the record's seq, which a SIEM can deduplicate on (the
Elasticsearch bulk format does it by itself).

A lease on the cursor row keeps a second exporter of the same sink (say the Celery task and a
`--follow` process) out, since two of them would each deliver the same records.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections, transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from ..control_models import ExportCursor
from ..models import AuditChainHead, AuditRecord
from ..services import HEAD_ID, AuditEntry, append_records
from .records import EXPORT_FIELDS, export_record
from .sinks import DeliveryError, Sink, describe

log = logging.getLogger(__name__)


CURSOR_SET_EVENT = "audit.export_cursor_set"


class ExportError(Exception):
    """The export cannot continue (e.g. a record is missing from the log)."""


class ExportBusy(ExportError):
    """Another exporter holds this sink's cursor."""


class LeaseLost(ExportError):
    """The lease expired and another exporter took the cursor over; stop delivering."""


@dataclass(slots=True)
class ExportStats:
    batches: int = 0
    records: int = 0
    cursor: int = 0
    purged_before_export: int = 0  # records retention removed before this sink got them
    failures: int = 0


class Exporter:
    def __init__(
        self,
        sink: Sink,
        *,
        cursor_name: str | None = None,
        batch_size: int = 500,
        include_response_body: bool = False,
        lease_seconds: float = 120.0,
        using: str = DEFAULT_DB_ALIAS,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.sink = sink
        self.cursor_name = cursor_name or sink.name
        self.batch_size = batch_size
        self.include_response_body = include_response_body
        # Must outlast one delivery attempt (sinks time out after 30 s by default).
        self.lease = timedelta(seconds=lease_seconds)
        self.using = using
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(6)}"
        self.stats = ExportStats()

    # --- the cursor and its lease --------------------------------------------------------------

    def _cursors(self):  # type: ignore[no-untyped-def]
        return ExportCursor.objects.using(self.using).filter(name=self.cursor_name)

    def acquire(self) -> int:
        """Take (or renew) the lease; returns the cursor. Raises ExportBusy."""
        now = timezone.now()
        if not self._cursors().exists():
            try:
                with transaction.atomic(using=self.using):
                    ExportCursor.objects.using(self.using).create(name=self.cursor_name)
            except IntegrityError:
                pass  # created by a concurrent exporter; the lease below decides
        taken = (
            self._cursors()
            .filter(Q(leased_by="") | Q(leased_by=self.owner) | Q(lease_expires__lt=now))
            .update(leased_by=self.owner, lease_expires=now + self.lease)
        )
        cursor = self._cursors().values("seq", "leased_by", "lease_expires").get()
        if not taken:
            raise ExportBusy(
                f"sink {self.cursor_name} is being exported by {cursor['leased_by']} "
                f"(lease until {cursor['lease_expires']:%H:%M:%S})"
            )
        self.stats.cursor = cursor["seq"]
        return cursor["seq"]

    def set_cursor(self, seq: int, *, by: str, auth_method: str = "", user_agent: str = "") -> None:
        """Operator override (after a restore, or to skip history a new SIEM should not get).
        Recorded with who did it (AU-3): moving the cursor forward keeps records from the SIEM,
        so the move itself is an audit record (and is delivered to the SIEM next)."""
        previous = self.acquire()
        try:
            with transaction.atomic(using=self.using):
                self._cursors().filter(leased_by=self.owner).update(
                    seq=seq, updated_at=timezone.now())
                append_records([AuditEntry(
                    event=CURSOR_SET_EVENT, actor=by[:150], auth_method=auth_method,
                    user_agent=user_agent[:512], decision="info",
                    detail={"sink": self.cursor_name, "from_seq": previous, "to_seq": seq})],
                    using=self.using)
        finally:
            self.release()

    def release(self) -> None:
        self._cursors().filter(leased_by=self.owner).update(leased_by="", lease_expires=None)

    def _save_cursor(self, seq: int, count: int) -> None:
        now = timezone.now()
        saved = (
            self._cursors()
            .filter(leased_by=self.owner)
            .update(
                seq=seq,
                delivered=F("delivered") + count,
                updated_at=now,
                lease_expires=now + self.lease,
            )
        )
        if not saved:
            raise LeaseLost(
                f"lost the lease on sink {self.cursor_name}: another exporter took over; "
                f"records up to {seq} may be delivered twice"
            )

    # --- one batch -----------------------------------------------------------------------------

    def _read_batch(self, cursor: int) -> list[dict[str, object]]:
        head = AuditChainHead.objects.using(self.using).filter(pk=HEAD_ID).first()
        head_seq = head.seq if head is not None else 0
        if head_seq < cursor:
            # The log was truncated or restored from an older backup: refuse to guess.
            raise ExportError(
                f"sink {self.cursor_name} was delivered up to record {cursor} but the chain "
                f"head is at {head_seq}: run audit_verify, then audit_export --set-cursor"
            )
        if head_seq == cursor:
            return []
        rows = list(
            AuditRecord.objects.using(self.using)
            .filter(seq__gt=cursor, seq__lte=head_seq)
            .order_by("seq")
            .values(*EXPORT_FIELDS)[: self.batch_size]
        )
        if not rows:
            return []
        expected = cursor + 1
        if rows[0]["seq"] != expected:
            first_kept = AuditRecord.objects.using(self.using).aggregate(m=Min("seq"))["m"]
            if rows[0]["seq"] != first_kept:
                raise ExportError(
                    f"record {expected} is missing from the audit log (next is "
                    f"{rows[0]['seq']}): run audit_verify; export stopped"
                )
            # Retention purged these before this sink got them: nothing left to send.
            skipped = rows[0]["seq"] - expected
            self.stats.purged_before_export += skipped
            log.warning(
                "sink %s: records %d..%d were purged before they were exported",
                self.cursor_name,
                expected,
                rows[0]["seq"] - 1,
            )
            expected = rows[0]["seq"]
        contiguous = []
        for row in rows:
            if row["seq"] != expected:
                break  # a gap: delivered up to it, the next batch reports it
            contiguous.append(row)
            expected += 1
        return contiguous

    def export_batch(self) -> int:
        """Deliver the next batch and save the cursor; returns the number of records."""
        cursor = self.acquire()
        rows = self._read_batch(cursor)
        if not rows:
            return 0
        records = [
            export_record(row, include_response_body=self.include_response_body) for row in rows
        ]
        self.sink.deliver(records)
        last = int(records[-1]["seq"])
        self._save_cursor(last, len(records))
        self.stats.batches += 1
        self.stats.records += len(records)
        self.stats.cursor = last
        return len(records)

    # --- loops ---------------------------------------------------------------------------------

    def run_once(self, *, max_batches: int | None = None) -> ExportStats:
        """Deliver until caught up with the head (or `max_batches`). Raises DeliveryError,
        ExportBusy, ExportError; the cursor then stays at the last delivered batch."""
        try:
            done = 0
            while max_batches is None or done < max_batches:
                if not self.export_batch():
                    break
                done += 1
        finally:
            self._release_quietly()
        return self.stats

    def follow(
        self,
        *,
        stop: threading.Event | None = None,
        poll_interval: float = 1.0,
        max_batches: int | None = None,
        max_backoff: float = 30.0,
        on_error: Callable[[Exception], None] | None = None,
    ) -> ExportStats:
        """Deliver new records as they are appended, until `stop` is set (or `max_batches`).

        Delivery and database failures are retried with exponential backoff; losing the lease
        or a record missing from the log ends the loop (raised).
        """
        stop = stop or threading.Event()
        backoff = poll_interval
        done = 0
        try:
            while not stop.is_set() and (max_batches is None or done < max_batches):
                try:
                    delivered = self.export_batch()
                except (DeliveryError, DatabaseError, ExportBusy) as exc:
                    self.stats.failures += 1
                    log.warning("sink %s: %s; retrying in %.1fs", describe(self.sink), exc, backoff)
                    if on_error is not None:
                        on_error(exc)
                    if isinstance(exc, DatabaseError):
                        connections[self.using].close()  # reconnect on the next attempt
                    stop.wait(backoff)
                    backoff = min(backoff * 2, max_backoff)
                    continue
                backoff = poll_interval
                if delivered:
                    done += 1
                else:
                    stop.wait(poll_interval)
        finally:
            self._release_quietly()
        return self.stats

    def _release_quietly(self) -> None:
        try:
            self.release()
        except DatabaseError as exc:  # the lease expires on its own
            log.warning("sink %s: could not release the export lease: %s", self.cursor_name, exc)

    def close(self) -> None:
        self.sink.close()
