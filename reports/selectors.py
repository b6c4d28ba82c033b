"""Evidence-pack selectors (reads): packs, their progress, their files, who may see them."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from django.db.models import QuerySet

from portal.roles import Role
from reports.catalog import BY_LABEL, CONTROLS
from reports.config import reports_config
from reports.keys import key_id, load_private_key, public_pem
from reports.models import EvidencePack
from reports.nist import nist_catalog_load
from reports.pack.provenance import SCHEDULE_TASK

log = logging.getLogger(__name__)

# Who sees, requests and downloads packs (the Evidence pages and the packs API).
PACK_ROLES = (Role.AUDITOR, Role.ADMIN)


def evidence_pack_list(*, limit: int = 50) -> QuerySet[EvidencePack]:
    return EvidencePack.objects.select_related("created_by").order_by("-created_at", "-id")[:limit]


def evidence_pack_get(*, pk: int) -> EvidencePack | None:
    return EvidencePack.objects.select_related("created_by").filter(pk=pk).first()


def evidence_pack_path(pack: EvidencePack) -> Path | None:
    """The pack's zip, if it is exported and the file is still there (and inside the pack
    directory: the stored name is never trusted as a path)."""
    if pack.status != EvidencePack.Status.EXPORTED or not pack.file_name:
        return None
    root = reports_config().pack_dir.resolve()
    path = (root / pack.file_name).resolve()
    if path.parent != root or not path.is_file():
        return None
    return path


def pack_requested_by(pack: EvidencePack) -> str:
    """Who asked for the pack: a username, or the schedule."""
    if pack.trigger == EvidencePack.Trigger.SCHEDULE:
        return f"schedule ({SCHEDULE_TASK})"
    return pack.created_by.get_username() if pack.created_by else "(deleted account)"


def _task_progress(pack: EvidencePack) -> dict[str, Any] | None:
    """The Celery task's own progress report (state PROGRESS), if the result backend has one.
    Read-only and best effort: without it the pack row's progress (written by the same
    callback) is shown."""
    if pack.is_finished or not pack.task_id:
        return None
    try:
        from celery.result import AsyncResult

        import wardgate.celery  # noqa: F401  (the configured result backend, as the current app)

        result = AsyncResult(pack.task_id)
        if result.state == "PROGRESS" and isinstance(result.info, dict):
            return result.info
    except Exception:  # noqa: BLE001 - a result backend outage only hides the live figure
        log.warning("no task progress for pack %s", pack.uuid, exc_info=True)
    return None


def evidence_pack_progress(pack: EvidencePack) -> dict[str, Any]:
    """What a progress bar or poller shows: state, percent, stage, records read, result or
    error. While the build runs, the Celery task's progress report is preferred."""
    percent, stage, records = pack.progress, pack.stage, pack.records_processed
    task = _task_progress(pack)
    if task is not None and pack.status == EvidencePack.Status.RUNNING:
        percent = min(int(task.get("percent", percent)), 99)
        stage = str(task.get("stage", stage))
        records = int(task.get("records", records))
    return {
        "id": pack.pk,
        "uuid": str(pack.uuid),
        "status": pack.status,
        "progress": percent,
        "stage": stage,
        "records_processed": records,
        "finished": pack.is_finished,
        "partial": pack.partial,
        "requested_by": pack_requested_by(pack),
        "chain_head_seq": (pack.parameters or {}).get("head_seq"),
        "manifest_sha256": pack.manifest_sha256 or None,
        "period_start": pack.period_start.isoformat(),
        "period_end": pack.period_end.isoformat(),
        "last_day": (pack.period_end - dt.timedelta(microseconds=1)).date().isoformat(),
        "controls": pack.controls,
        "trigger": pack.trigger,
        "created_by": pack.created_by.get_username() if pack.created_by else None,
        "created_at": pack.created_at.isoformat(),
        "started_at": pack.started_at.isoformat() if pack.started_at else None,
        "finished_at": pack.finished_at.isoformat() if pack.finished_at else None,
        "file_name": pack.file_name or None,
        "file_size": pack.file_size,
        "sha256": pack.sha256 or None,
        "key_id": pack.key_id or None,
        "summary": [{"control": c["control"], "status": c["status"], "gaps": len(c["gaps"])}
                    for c in (pack.summary or {}).get("controls", [])],
        "error": pack.error or None,
    }


def pack_public_key() -> tuple[str, str]:
    """(PEM, key id) of the key that verifies this system's packs."""
    public = load_private_key(reports_config().signing_key).public_key()
    return public_pem(public), key_id(public)


def evidence_pack_controls(pack: EvidencePack) -> list[dict[str, Any]]:
    """The per-control summary of a built pack (as in its PDF), each with its title, counts,
    gaps, what is organisational, and the audit-browser filter for the records behind it."""
    nist = nist_catalog_load()
    out = []
    for item in (pack.summary or {}).get("controls", []):
        spec = BY_LABEL.get(item["control"])
        query = {"since": pack.period_start.strftime("%Y-%m-%dT%H:%M"),
                 "until": pack.period_end.strftime("%Y-%m-%dT%H:%M")}
        if spec is not None:
            query.update(dict(spec.records))
        out.append({"control": item["control"],
                    "title": nist.get(item["control"]).title if item["control"] in
                    nist.controls else "",
                    "status": item["status"], "gaps": item.get("gaps", []),
                    "counts": item.get("counts", []),
                    "organisational": spec.organisational if spec else "",
                    "audit_query": query})
    return out


def control_choices() -> list[tuple[str, str]]:
    """(label, "AC-2 Account Management") for a form's control picker, in catalog order."""
    nist = nist_catalog_load()
    return [(c.label, f"{c.label} {nist.get(c.label).title}") for c in CONTROLS]
