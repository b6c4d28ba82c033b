"""`manage.py generate_audit_load N [--start DATE] [--days 30]`: append N synthetic audit records
through the gateway's record path and the real chain code (for tests and benchmarks only)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports.synthetic import audit_load_generate
from wardgate.config import demo_config


class Command(BaseCommand):
    help = ("Append N synthetic audit records (simulated gateway and portal traffic spread over "
            "DAYS days from START) through the real record and chain code. Refused in "
            "production mode.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("records", type=int)
        parser.add_argument("--start", default="", help="first day, YYYY-MM-DD (default: the "
                                                        "first day of last month)")
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--seed", type=int, default=20260301)
        parser.add_argument("--batch-size", type=int, default=2000)

    def handle(self, *args: Any, records: int, start: str, days: int, seed: int,
               batch_size: int, **options: Any) -> None:
        if demo_config().production:
            raise CommandError("generate_audit_load writes synthetic records: refused in "
                               "production mode")
        if records < 1 or days < 1 or batch_size < 1:
            raise CommandError("records, --days and --batch-size must be at least 1")
        if start:
            try:
                first = dt.date.fromisoformat(start)
            except ValueError:
                raise CommandError(f"--start is not a date (YYYY-MM-DD): {start!r}") from None
        else:
            first = (dt.date.today().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
        began = time.monotonic()
        result = audit_load_generate(
            records=records, start=dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC),
            days=days, seed=seed, batch_size=batch_size)
        took = time.monotonic() - began
        self.stdout.write(
            f"appended {result.records} records (seq {result.first_seq}..{result.last_seq}) "
            f"from {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d} (exclusive) in {took:.1f}s")
