"""Celery tasks: thin wrappers over reports.services that report progress."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

import wardgate.celery  # noqa: F401  (configures the app shared_task binds to; see wardgate/__init__)
from reports.models import EvidencePack
from reports.services import evidence_pack_build, evidence_pack_schedule_monthly


def _build(task: Task, pack: EvidencePack) -> dict[str, Any]:
    def progress(percent: int, stage: str, records: int) -> None:
        if task.request.id:  # not when called directly (tests, --sync)
            task.update_state(state="PROGRESS", meta={"pack": pack.pk, "percent": percent,
                                                      "stage": stage, "records": records})

    built = evidence_pack_build(pack=pack, progress=progress)
    return {"pack": built.pk, "uuid": str(built.uuid), "status": built.status,
            "file_name": built.file_name, "sha256": built.sha256}


@shared_task(bind=True, name="reports.evidence_pack_build")
def evidence_pack_build_task(self: Task, pack_id: int) -> dict[str, Any]:
    return _build(self, EvidencePack.objects.get(pk=pack_id))


@shared_task(bind=True, name="reports.evidence_pack_monthly")
def evidence_pack_monthly_task(self: Task) -> dict[str, Any] | None:
    """Beat: the previous calendar month's pack, built here (this is already a worker)."""
    pack = evidence_pack_schedule_monthly()
    if pack is None:
        return None
    if self.request.id:  # the progress a poller reads is this task's
        EvidencePack.objects.filter(pk=pack.pk).update(task_id=self.request.id)
        pack.task_id = self.request.id
    return _build(self, pack)
