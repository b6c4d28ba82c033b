"""Evidence-pack services (writes): request a pack, build it, schedule the monthly one, record
downloads. Celery tasks and views call these; selectors.py reads."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import AuditEntry, append_records
from portal.services.events import SYSTEM, RequestMeta
from reports.catalog import controls_resolve
from reports.config import reports_config
from reports.models import EvidencePack
from reports.pack.builder import PackBuilder
from reports.pack.provenance import Requester

log = logging.getLogger(__name__)

# progress(percent, stage, audit records read so far)
Progress = Callable[[int, str, int], None]


class PackRequestError(ValueError):
    """The pack cannot be requested as asked (bad period or controls)."""


def period_from_dates(first_day: dt.date, last_day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Whole UTC days: [first_day 00:00, day after last_day 00:00)."""
    if last_day < first_day:
        raise PackRequestError(f"the period ends ({last_day}) before it starts ({first_day})")
    start = dt.datetime.combine(first_day, dt.time.min, tzinfo=dt.UTC)
    end = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    return start, end


def previous_month(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    first_this = now.astimezone(dt.UTC).date().replace(day=1)
    first_previous = (first_this - dt.timedelta(days=1)).replace(day=1)
    return period_from_dates(first_previous, first_this - dt.timedelta(days=1))


def _actor(user: Any) -> str:
    return user.get_username() if user is not None else "system"


def pack_requester(pack: EvidencePack) -> Requester:
    return Requester.of(user=pack.created_by,
                        scheduled=pack.trigger == EvidencePack.Trigger.SCHEDULE)


@transaction.atomic
def evidence_pack_request(
    *,
    period_start: dt.datetime,
    period_end: dt.datetime,
    controls: list[str] | tuple[str, ...] | None = None,
    created_by: Any = None,
    trigger: str = EvidencePack.Trigger.MANUAL,
    partial: bool = False,
    origin: RequestMeta = SYSTEM,
    enqueue: bool = True,
) -> EvidencePack:
    """Create a queued pack, record the request (who, from where) and, after commit, send it to
    a Celery worker. A period that has not ended is refused unless `partial` is asked for; the
    pack is then marked PARTIAL. A pack not built by the schedule must name its requester."""
    if period_start.tzinfo is None or period_end.tzinfo is None:
        raise PackRequestError("the period must be given in UTC (timezone-aware)")
    if period_end <= period_start:
        raise PackRequestError("the period must end after it starts")
    now = timezone.now()
    if period_start >= now:
        raise PackRequestError("the period starts in the future: there is nothing to report")
    ongoing = period_end > now
    if ongoing and not partial:
        last_day = (period_end - dt.timedelta(microseconds=1)).date()
        raise PackRequestError(
            f"the period has not ended yet (it runs to {last_day} inclusive): choose a period "
            "that has ended, or ask for a partial period and the pack will be marked PARTIAL")
    if trigger != EvidencePack.Trigger.SCHEDULE and created_by is None:
        raise PackRequestError("say who is requesting the pack (a portal account): it is "
                               "printed on the pack and recorded in the audit log")
    try:
        specs = controls_resolve(list(controls) if controls else None)
    except ValueError as exc:
        raise PackRequestError(str(exc)) from None
    pack = EvidencePack.objects.create(
        period_start=period_start, period_end=period_end, controls=[s.label for s in specs],
        trigger=trigger, created_by=created_by, task_id=uuid.uuid4().hex,
        stage="waiting for a worker", partial=ongoing,
    )
    append_records([AuditEntry(
        event="reports.pack_requested", actor=pack_requester(pack).name,
        auth_method=origin.auth_method, source_ip=origin.source_ip[:64],
        user_agent=origin.user_agent[:512], decision="info",
        detail={"pack": str(pack.uuid), "pack_id": pack.pk,
                "period_start": period_start.isoformat(), "period_end": period_end.isoformat(),
                "controls": pack.controls, "partial": ongoing, "trigger": trigger},
    )])
    if enqueue:
        from reports.tasks import evidence_pack_build_task

        task_id = pack.task_id
        transaction.on_commit(
            lambda: evidence_pack_build_task.apply_async(args=[pack.pk], task_id=task_id))
    return pack


# A build still "running" after this long is taken to have died with its worker.
STALE_BUILD = dt.timedelta(hours=2)


def evidence_pack_build(*, pack: EvidencePack, progress: Progress | None = None) -> EvidencePack:
    """Build `pack` now, in this process; its row follows the progress.

    The pack is claimed first, atomically: a pack already exported, or being built elsewhere
    (a redelivered task while the first worker still runs), is returned as is, so no work is
    done twice and no two builds race for one file. A failed pack, or one whose build went
    silent for STALE_BUILD, is built again."""
    now = timezone.now()
    claimed = EvidencePack.objects.filter(pk=pack.pk).filter(
        Q(status__in=[EvidencePack.Status.QUEUED, EvidencePack.Status.FAILED])
        | Q(status=EvidencePack.Status.RUNNING, started_at__lt=now - STALE_BUILD)
    ).update(status=EvidencePack.Status.RUNNING, started_at=now, progress=0, stage="starting",
             error="")
    pack.refresh_from_db()
    if not claimed:
        return pack
    last_write = [0.0, ""]

    def report(percent: int, stage: str, records: int) -> None:
        now = time.monotonic()
        if stage != last_write[1] or now - last_write[0] >= 0.5 or percent >= 100:
            EvidencePack.objects.filter(pk=pack.pk).update(
                progress=min(percent, 99), stage=stage, records_processed=records)
            last_write[0], last_write[1] = now, stage
        if progress is not None:
            progress(percent, stage, records)

    try:
        built = PackBuilder(
            pack_uuid=pack.uuid, period_start=pack.period_start, period_end=pack.period_end,
            controls=controls_resolve(pack.controls), out_dir=reports_config().pack_dir,
            requester=pack_requester(pack), progress=report,
        ).build()
    except Exception as exc:
        log.exception("evidence pack %s failed", pack.uuid)
        EvidencePack.objects.filter(pk=pack.pk).update(
            status=EvidencePack.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000],
            finished_at=timezone.now(), stage="failed")
        pack.refresh_from_db()
        raise
    with transaction.atomic():
        EvidencePack.objects.filter(pk=pack.pk).update(
            status=EvidencePack.Status.EXPORTED, progress=100, stage="done",
            file_name=built.path.name, file_size=built.size, sha256=built.sha256,
            manifest_sha256=built.manifest_sha256, signature=built.signature,
            key_id=built.key_id, summary=built.summary, finished_at=timezone.now(),
            includes_records=built.summary.get("includes_records", False),
            partial=built.summary.get("partial", False),
            records_processed=built.summary.get("records", 0),
            parameters={"sample_size": reports_config().sample_size,
                        "head_seq": built.summary.get("head_seq")})
        append_records([AuditEntry(
            event="reports.pack_built", actor=pack_requester(pack).name, decision="info",
            detail={"pack": str(pack.uuid), "period_start": pack.period_start.isoformat(),
                    "period_end": pack.period_end.isoformat(), "controls": pack.controls,
                    "sha256": built.sha256, "key_id": built.key_id, "trigger": pack.trigger,
                    "partial": built.summary.get("partial", False),
                    "gaps": sum(len(c["gaps"]) for c in built.summary["controls"])},
        )])
    pack.refresh_from_db()
    return pack


def evidence_pack_schedule_monthly(*, now: dt.datetime | None = None) -> EvidencePack | None:
    """The previous calendar month, all controls; None if such a pack is already queued, running
    or exported (the beat schedule may fire twice, a worker may retry)."""
    start, end = previous_month(now or timezone.now())
    existing = EvidencePack.objects.filter(
        period_start=start, period_end=end, trigger=EvidencePack.Trigger.SCHEDULE,
        status__in=[EvidencePack.Status.QUEUED, EvidencePack.Status.RUNNING,
                    EvidencePack.Status.EXPORTED])
    if existing.exists():
        return None
    return evidence_pack_request(period_start=start, period_end=end, controls=None,
                                 trigger=EvidencePack.Trigger.SCHEDULE, enqueue=False)


def evidence_pack_record_download(*, pack: EvidencePack, user: Any,
                                  origin: RequestMeta = SYSTEM) -> None:
    """Downloading a pack is an audit export (AU-6): record who took which pack, from where.
    Called before the first byte leaves; if the record cannot be written, nothing is sent."""
    append_records([AuditEntry(
        event="reports.pack_downloaded", actor=_actor(user), auth_method=origin.auth_method,
        source_ip=origin.source_ip[:64], user_agent=origin.user_agent[:512], decision="info",
        detail={"pack": str(pack.uuid), "pack_id": pack.pk, "sha256": pack.sha256,
                "period_start": pack.period_start.isoformat(),
                "period_end": pack.period_end.isoformat()},
    )])
