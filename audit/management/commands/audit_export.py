"""`manage.py audit_export --sink NAME [--once | --follow]`: stream audit records to a SIEM
sink from WARDGATE_SIEM_SINKS, at least once, resuming from the sink's persisted cursor.

--once delivers everything new and exits (non-zero on failure); --follow keeps delivering new
records until SIGTERM/SIGINT, finishing the batch in flight first. --set-cursor SEQ moves the
sink's cursor and records who did it (--by USER, else the OS user).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.actors import CLI_AUTH_METHOD, add_by_argument, command_actor
from audit.export.config import build_exporter, sink_spec
from audit.export.exporter import ExportError
from audit.export.sinks import DeliveryError, describe


class Command(BaseCommand):
    help = "Export audit records to a SIEM sink (JSON lines, syslog, CEF, OCSF), at least once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sink", required=True, help="a name from WARDGATE_SIEM_SINKS")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--once", action="store_true", help="deliver what is new, then exit")
        mode.add_argument(
            "--follow", action="store_true", help="keep delivering until SIGTERM (default)"
        )
        mode.add_argument(
            "--set-cursor",
            type=int,
            metavar="SEQ",
            default=None,
            help="set the sink's cursor (records after SEQ are delivered next) and exit",
        )
        add_by_argument(parser)  # recorded with --set-cursor
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument(
            "--max-batches", type=int, default=None, help="stop after this many batches"
        )
        parser.add_argument("--poll-interval", type=float, default=1.0, help="--follow: seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            spec = sink_spec(options["sink"])
            exporter = build_exporter(spec, batch_size=options["batch_size"])
        except (ImproperlyConfigured, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        try:
            if options["set_cursor"] is not None:
                actor = command_actor(options["by"], "audit_export")
                exporter.set_cursor(options["set_cursor"], by=actor.name,
                                    auth_method=CLI_AUTH_METHOD, user_agent=actor.user_agent)
                self.stdout.write(f"cursor of {spec['name']} set to {options['set_cursor']}")
                return
            if options["once"]:
                stats = exporter.run_once(max_batches=options["max_batches"])
            else:
                stats = self._follow(exporter, options)
        except (DeliveryError, ExportError) as exc:
            raise CommandError(
                f"export to {describe(exporter.sink)} stopped: {exc} (cursor at "
                f"{exporter.stats.cursor}; the next run resumes from there)",
                returncode=1,
            ) from exc
        finally:
            exporter.close()
        self.stdout.write(
            f"exported {stats.records} record(s) in {stats.batches} batch(es) to "
            f"{describe(exporter.sink)}; cursor at {stats.cursor}"
        )

    def _follow(self, exporter: Any, options: dict[str, Any]) -> Any:
        stop = threading.Event()
        previous: dict[int, Any] = {}

        def request_stop(signum: int, frame: object) -> None:
            stop.set()

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, request_stop)
        self.stdout.write(f"following the audit log into {describe(exporter.sink)}")
        self.stdout.flush()
        try:
            return exporter.follow(
                stop=stop,
                poll_interval=options["poll_interval"],
                max_batches=options["max_batches"],
                on_error=lambda exc: self.stderr.write(f"delivery failed, retrying: {exc}"),
            )
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
