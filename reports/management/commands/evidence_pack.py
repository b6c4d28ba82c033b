"""`manage.py evidence_pack --from DATE --to DATE --requested-by USER [--controls AC-2,AU-9]
[--partial] [--out PATH] [--sync]`

Requests an evidence pack for whole UTC days FROM..TO (both included) on behalf of USER (a
portal account, printed on the pack and recorded in the audit log) and waits for it: by default
a Celery worker builds it (the command follows its progress); --sync builds it here. A period
that has not ended is refused unless --partial is given (the pack is then marked PARTIAL).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.services.events import RequestMeta
from reports.models import EvidencePack
from reports.selectors import evidence_pack_path
from reports.services import (
    PackRequestError,
    evidence_pack_build,
    evidence_pack_request,
    period_from_dates,
)


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"not a date (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    help = "Build a signed evidence pack for a period (whole UTC days, both ends included)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD")
        parser.add_argument("--to", dest="last", required=True, help="last day, YYYY-MM-DD")
        parser.add_argument("--requested-by", dest="requested_by", required=True,
                            metavar="USER", help="the portal account this pack is built for "
                                                 "(printed on it, recorded in the audit log)")
        parser.add_argument("--partial", action="store_true",
                            help="allow a period that has not ended (the pack is marked PARTIAL)")
        parser.add_argument("--controls", default="",
                            help="comma-separated control ids (default: every control)")
        parser.add_argument("--out", default="", help="also copy the pack to this path")
        parser.add_argument("--sync", action="store_true",
                            help="build in this process instead of a Celery worker")
        parser.add_argument("--timeout", type=float, default=3600.0,
                            help="seconds to wait for the worker (default 3600)")

    def handle(self, *args: Any, first: str, last: str, requested_by: str, partial: bool,
               controls: str, out: str, sync: bool, timeout: float, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        user = get_user_model()._default_manager.filter(
            **{get_user_model().USERNAME_FIELD: requested_by}).first()
        if user is None or not user.is_active:
            raise CommandError(f"--requested-by {requested_by!r}: no such active account")
        try:
            start, end = period_from_dates(_date(first), _date(last))
            pack = evidence_pack_request(
                period_start=start, period_end=end,
                controls=[c for c in controls.split(",") if c.strip()] or None,
                created_by=user, partial=partial, origin=RequestMeta(auth_method="cli"),
                enqueue=not sync)
        except PackRequestError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"pack {pack.uuid} requested by {requested_by}: {start:%Y-%m-%d} to "
                          f"{last}, {len(pack.controls)} controls"
                          + (" (PARTIAL: the period has not ended)" if pack.partial else ""))
        if sync:
            pack = evidence_pack_build(pack=pack, progress=self._progress)
        else:
            pack = self._wait(pack, timeout)
        if pack.status != EvidencePack.Status.EXPORTED:
            raise CommandError(f"pack {pack.uuid} failed: {pack.error or pack.status}")
        path = evidence_pack_path(pack)
        if path is None:
            raise CommandError(f"pack {pack.uuid} is exported but its file is missing")
        if out:
            target = Path(out)
            if target.is_dir():
                target = target / path.name
            shutil.copyfile(path, target)
            path = target
        gaps = sum(len(c["gaps"]) for c in pack.summary.get("controls", []))
        self.stdout.write(f"pack ready: {path}\n  sha256 {pack.sha256}\n  signed by key "
                          f"{pack.key_id}; {gaps} gaps found")

    def _progress(self, percent: int, stage: str, records: int = 0) -> None:
        if self.verbosity > 1:
            self.stdout.write(f"  {percent:3d}% {stage} ({records} records read)")

    def _wait(self, pack: EvidencePack, timeout: float) -> EvidencePack:
        deadline = time.monotonic() + timeout
        shown = ("", -1)
        while time.monotonic() < deadline:
            pack.refresh_from_db()
            if (pack.stage, pack.progress) != shown:
                shown = (pack.stage, pack.progress)
                self._progress(pack.progress, f"{pack.status}: {pack.stage}",
                               pack.records_processed)
            if pack.is_finished:
                return pack
            time.sleep(0.5)
        raise CommandError(f"pack {pack.uuid} was not built within {timeout:.0f}s (status "
                           f"{pack.status}); is a Celery worker running?")
