"""`manage.py evidence_pack --from DATE --to DATE [--controls AC-2,AU-9] [--out PATH] [--sync]
[--by USER]` (recorded with who ran it: --by, else the OS user)

Requests an evidence pack for whole UTC days FROM..TO (both included) and waits for it: by
default a Celery worker builds it (the command follows its progress); --sync builds it here.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.actors import add_by_argument, command_actor
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
        parser.add_argument("--controls", default="",
                            help="comma-separated control ids (default: every control)")
        parser.add_argument("--out", default="", help="also copy the pack to this path")
        parser.add_argument("--sync", action="store_true",
                            help="build in this process instead of a Celery worker")
        parser.add_argument("--timeout", type=float, default=3600.0,
                            help="seconds to wait for the worker (default 3600)")
        add_by_argument(parser)

    def handle(self, *args: Any, first: str, last: str, controls: str, out: str, sync: bool,
               timeout: float, by: str, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        actor = command_actor(by, "evidence_pack")
        try:
            start, end = period_from_dates(_date(first), _date(last))
            pack = evidence_pack_request(
                period_start=start, period_end=end,
                controls=[c for c in controls.split(",") if c.strip()] or None,
                enqueue=not sync, created_by=actor.user, actor=actor.name, auth_method="cli")
        except PackRequestError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"pack {pack.uuid} requested: {start:%Y-%m-%d} to {last}, "
                          f"{len(pack.controls)} controls")
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

    def _progress(self, percent: int, stage: str) -> None:
        if self.verbosity > 1:
            self.stdout.write(f"  {percent:3d}% {stage}")

    def _wait(self, pack: EvidencePack, timeout: float) -> EvidencePack:
        deadline = time.monotonic() + timeout
        shown = ("", -1)
        while time.monotonic() < deadline:
            pack.refresh_from_db()
            if (pack.stage, pack.progress) != shown:
                shown = (pack.stage, pack.progress)
                self._progress(pack.progress, f"{pack.status}: {pack.stage}")
            if pack.is_finished:
                return pack
            time.sleep(0.5)
        raise CommandError(f"pack {pack.uuid} was not built within {timeout:.0f}s (status "
                           f"{pack.status}); is a Celery worker running?")
