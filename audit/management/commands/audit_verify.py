"""`manage.py audit_verify [--full] [--workers N]`: recompute the audit hash chain and check it
against the signed checkpoints; exit 1 naming the first bad record and every checkpoint problem.

By default the recomputation starts after the verified-through marker when it can be trusted
(audit/verified.py); `--full` recomputes every record, which also finds an edit before the
marker that left every stored hash in place."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.verify import MIN_RECORDS_PER_WORKER, default_workers, verify_log


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain, links, gapless sequence and chain head, and check it "
        "against the signed checkpoints (edits, truncation, purges)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=5000, help="records read per query (default 5000)"
        )
        parser.add_argument(
            "--full", action="store_true",
            help="recompute every record instead of starting at the verified-through marker")
        parser.add_argument(
            "--workers", type=int, default=default_workers(),
            help="processes to split the recomputation over (default: the CPU count, max 4)")
        parser.add_argument(
            "--min-range", type=int, default=MIN_RECORDS_PER_WORKER,
            help="fewest records worth a worker process (default %(default)s)")
        parser.add_argument(
            "--checkpoints-from",
            metavar="DIR_OR_GS_URI",
            default=None,
            help="verify against the exported checkpoint copies (a directory or gs://bucket/"
            "prefix) instead of the database's, which someone with database access could rewrite",
        )

    def handle(
        self, *args: Any, batch_size: int, checkpoints_from: str | None, full: bool,
        workers: int, min_range: int, **options: Any
    ) -> None:
        if batch_size < 1 or workers < 1:
            raise CommandError("--batch-size and --workers must be at least 1")
        result = verify_log(batch_size=batch_size, checkpoints_from=checkpoints_from,
                            incremental=not full, workers=workers, min_range=min_range)
        chain = result.chain
        if not result.ok:
            lines: list[str] = []
            if not chain.ok:
                lines.append(
                    f"audit chain BROKEN at record {chain.first_broken_seq}: {chain.problem} "
                    f"({chain.records_checked} records verified before it)"
                )
            if result.problems:
                lines.append(
                    f"audit checkpoints BROKEN ({result.checkpoint_source}):\n- "
                    + "\n- ".join(result.problems)
                )
            # CommandError exits with status 1 and prints to stderr, also under call_command
            # (raised there), which is what schedulers and the tests check.
            raise CommandError("\n".join(lines), returncode=1)
        self.stdout.write(
            f"audit chain OK: {chain.records_checked} records verified, "
            f"head seq {chain.head_seq} hash {chain.head_hash}"
        )
        self.stdout.write(f"mode: {result.mode} ({result.mode_reason}); recomputed by "
                          f"{chain.processes} process{'es' if chain.processes > 1 else ''}")
        latest = result.latest_checkpoint
        summary = (
            f"checkpoints OK: {result.checkpoints_checked} verified from {result.checkpoint_source}"
        )
        if latest is not None:
            summary += f", latest #{latest.seq} signed at {latest.at}"
        if result.anchor is not None:
            summary += (
                f"; records 1..{result.anchor[0]} purged by retention "
                f"(purge record #{result.purge_record_seq})"
            )
        self.stdout.write(summary)
