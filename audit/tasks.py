"""Celery tasks (thin wrappers; the work is in the services). Scheduled by CELERY_BEAT_SCHEDULE
entries in wardgate/settings: checkpoint every WARDGATE_CHECKPOINT_INTERVAL_MINUTES, SIEM export
every WARDGATE_SIEM_EXPORT_INTERVAL_SECONDS, retention daily."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

import wardgate.celery  # noqa: F401  (configures the app shared_task binds to; see wardgate/__init__)

log = logging.getLogger(__name__)


@shared_task(name="audit.checkpoint")
def checkpoint() -> dict[str, Any]:
    """Sign the chain head, then export every checkpoint not yet exported (if configured)."""
    from .checkpoints import checkpoint_create, checkpoint_export, configured_store

    made = checkpoint_create()
    exported = checkpoint_export() if configured_store() is not None else []
    return {"seq": made.seq if made else None, "exported": [c.seq for c in exported]}


@shared_task(name="audit.siem_export")
def siem_export(sink: str | None = None, max_batches: int | None = None) -> dict[str, Any]:
    """Deliver what is new to every configured sink (or one). A sink another exporter is
    serving is skipped; a failing sink does not stop the others, and is retried next run."""
    from .export.config import build_exporter, sink_spec, sink_specs
    from .export.exporter import ExportBusy

    specs = [sink_spec(sink)] if sink else sink_specs()
    summary: dict[str, Any] = {}
    for spec in specs:
        exporter = build_exporter(spec)
        try:
            stats = exporter.run_once(max_batches=max_batches)
            summary[spec["name"]] = {"records": stats.records, "cursor": stats.cursor}
        except ExportBusy as exc:
            summary[spec["name"]] = {"skipped": str(exc)}
        except Exception as exc:  # noqa: BLE001 - report per sink, keep serving the others
            log.error("SIEM export to %s failed: %s", spec["name"], exc)
            summary[spec["name"]] = {"error": str(exc)}
        finally:
            exporter.close()
    return summary


@shared_task(name="audit.retention_purge")
def retention_purge() -> dict[str, Any]:
    from .retention import retention_purge as purge

    result = purge()
    return {
        "purged": result.purged,
        "from_seq": result.from_seq,
        "to_seq": result.to_seq,
        "skipped": result.skipped,
        "export_error": result.export_error,
    }
