"""`manage.py seed_demo_data --endpoint URL`: (re)create the demo dataset in BigQuery."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from bigquery_mcp.client import make_bigquery_client
from bigquery_mcp.seed import seed_demo_dataset
from wardgate.config import demo_config


class Command(BaseCommand):
    help = "Create the demo dataset with synthetic PII (deterministic) in BigQuery or the emulator."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--endpoint", default=demo_config().bigquery_endpoint,
                            help="BigQuery API endpoint, e.g. the emulator's http://127.0.0.1:9050")
        parser.add_argument("--project", default=demo_config().bigquery_project)
        parser.add_argument("--dataset", default=demo_config().dataset)
        parser.add_argument("--customers", type=int, default=demo_config().customers)
        parser.add_argument("--seed", type=int, default=20241)

    def handle(self, *args, **opts) -> None:  # type: ignore[no-untyped-def]
        if not opts["endpoint"] and not demo_config().production:
            raise CommandError("Give --endpoint (the emulator) or set WARDGATE_BIGQUERY_ENDPOINT.")
        client = make_bigquery_client(opts["project"], opts["endpoint"] or None)
        try:
            report = seed_demo_dataset(client, opts["dataset"], customers=opts["customers"],
                                       seed=opts["seed"])
        except Exception as exc:
            raise CommandError(f"seeding failed: {exc}") from exc
        for table, n in report.rows.items():
            self.stdout.write(f"{report.dataset}.{table}: {n} rows")
