"""`manage.py generate_audit_load N [--start DATE] [--days DAYS]`: append N synthetic audit
records through the gateway's record path and the real chain code (for tests and benchmarks
only). Without --start the records cover last calendar month (UTC), every day of it and nothing
after it, so the demo's "Last month" evidence pack has a full month to report on."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from reports.synthetic import audit_load_generate
from wardgate.config import demo_config


def last_month(today: dt.date) -> tuple[dt.date, int]:
    """The first day of the calendar month before `today`'s, and how many days it has."""
    first_this = today.replace(day=1)
    first = (first_this - dt.timedelta(days=1)).replace(day=1)
    return first, (first_this - first).days


class Command(BaseCommand):
    help = ("Append N synthetic audit records (simulated gateway and portal traffic spread over "
            "DAYS days from START) through the real record and chain code. Refused in "
            "production mode.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("records", type=int)
        parser.add_argument("--start", default="", help="first day, YYYY-MM-DD (default: the "
                                                        "first day of last month)")
        parser.add_argument("--days", type=int, default=None,
                            help="days to spread the records over (default: to the end of "
                                 "last month without --start, else 30)")
        parser.add_argument("--seed", type=int, default=20260301)
        parser.add_argument("--batch-size", type=int, default=2000)

    def handle(self, *args: Any, records: int, start: str, days: int | None, seed: int,
               batch_size: int, **options: Any) -> None:
        if demo_config().production:
            raise CommandError("generate_audit_load writes synthetic records: refused in "
                               "production mode")
        if start:
            try:
                first = dt.date.fromisoformat(start)
            except ValueError:
                raise CommandError(f"--start is not a date (YYYY-MM-DD): {start!r}") from None
            days = 30 if days is None else days
        else:
            first, last_month_days = last_month(timezone.now().date())
            # A fixed 30 would leave the 31st of a long month without records (an AU-12 gap in
            # the demo pack) and spill a February's load into this month, even into the future.
            days = last_month_days if days is None else days
        if records < 1 or days < 1 or batch_size < 1:
            raise CommandError("records, --days and --batch-size must be at least 1")
        began = time.monotonic()
        result = audit_load_generate(
            records=records, start=dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC),
            days=days, seed=seed, batch_size=batch_size)
        took = time.monotonic() - began
        self.stdout.write(
            f"appended {result.records} records (seq {result.first_seq}..{result.last_seq}) "
            f"from {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d} (exclusive) in {took:.1f}s")
