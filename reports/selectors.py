"""Evidence-pack selectors (reads): packs, their progress, their files, who may see them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from reports.catalog import CONTROLS
from reports.models import EvidencePack
from reports.nist import nist_catalog_load

PACK_ROLES = ("auditor", "admin")


def pack_viewer(user: Any) -> bool:
    """Auditors and admins (portal roles) see, request and download packs."""
    from portal.permissions import has_role

    return has_role(user, *PACK_ROLES)


def evidence_pack_list(*, limit: int = 50) -> QuerySet[EvidencePack]:
    return EvidencePack.objects.select_related("created_by").order_by("-created_at", "-id")[:limit]


def evidence_pack_get(*, pk: int) -> EvidencePack | None:
    return EvidencePack.objects.select_related("created_by").filter(pk=pk).first()


def evidence_pack_path(pack: EvidencePack) -> Path | None:
    """The pack's zip, if it is exported and the file is still there (and inside the pack
    directory: the stored name is never trusted as a path)."""
    if pack.status != EvidencePack.Status.EXPORTED or not pack.file_name:
        return None
    root = Path(settings.WARDGATE_PACK_DIR).resolve()
    path = (root / pack.file_name).resolve()
    if path.parent != root or not path.is_file():
        return None
    return path


def evidence_pack_progress(pack: EvidencePack) -> dict[str, Any]:
    """What a progress page or poller shows: state, percent, stage, result or error."""
    return {
        "id": pack.pk,
        "uuid": str(pack.uuid),
        "status": pack.status,
        "progress": pack.progress,
        "stage": pack.stage,
        "finished": pack.is_finished,
        "period_start": pack.period_start.isoformat(),
        "period_end": pack.period_end.isoformat(),
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


def control_choices() -> list[tuple[str, str]]:
    """(label, "AC-2 Account Management") for a form's control picker, in catalog order."""
    nist = nist_catalog_load()
    return [(c.label, f"{c.label} {nist.get(c.label).title}") for c in CONTROLS]
