"""`manage.py demo`: the whole Wardgate demo in one command (embedded SQLite + in-process queue)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import threading
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from audit.actors import command_actor
from audit.config import audit_config
from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
from portal.services.demo import (
    DEMO_CONNECTION_SLUG,
    demo_connection_ensure,
    demo_login_notes,
    demo_policy_ensure,
    demo_users_ensure,
)
from portal.services.events import meta_from_command
from portal.services.tokens import token_issue
from wardgate.config import demo_config
from wardgate.demo_stack import DemoError, DemoStack, running
from wardgate.mcp_client import SNIPPET, call_tool


class Command(BaseCommand):
    help = "Run the Wardgate demo: BigQuery emulator with seed data, MCP server, gateway, portal."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--port", type=int, default=8000, help="portal + gateway port")
        parser.add_argument("--check", action="store_true",
                            help="start everything, make one real tool call, print it, exit")
        parser.add_argument("--customers", type=int, default=demo_config().customers)

    def handle(self, *args, **opts) -> None:  # type: ignore[no-untyped-def]
        config = demo_config()
        if config.production:
            raise CommandError("The demo does not run in production mode (WARDGATE_MODE=production).")
        started = time.monotonic()
        # SIGTERM (a service manager, `kill`) stops everything the demo started, as Ctrl-C does.
        stop = threading.Event()

        def on_sigterm(signum: int, frame: object) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
            stop.set()
            # An exception raised while a finalizer runs is dropped ("Exception ignored in"),
            # and the demo ran on: stack.watch() also stops on `stop`.
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_sigterm)
        workdir = config.var_dir / "demo"
        workdir.mkdir(parents=True, exist_ok=True)
        say = self.stdout.write
        say("Migrating the database ...")
        call_command("migrate", interactive=False, verbosity=0)
        demo_meta = meta_from_command(command_actor("", "demo"))
        logins = demo_users_ensure(meta=demo_meta)
        stack = DemoStack(workdir=workdir, port=opts["port"], project=config.bigquery_project,
                          dataset=config.dataset, customers=opts["customers"],
                          progress=say)
        try:
            with running(stack):
                stack.start_bigquery()
                stack.start_mcp_server()
                assert stack.emulator is not None
                connection = demo_connection_ensure(
                    upstream_url=stack.mcp_url, bigquery_project=stack.project,
                    bigquery_endpoint=stack.emulator.endpoint, dataset=stack.dataset,
                    meta=demo_meta,
                )
                demo_policy_ensure(connection, meta=demo_meta)
                # The demo trusts its own bundled MCP server: its current tools are reviewed
                # and accepted on start, as an admin would do for a new connection.
                tool_catalog_refresh(connection=connection, meta=demo_meta)
                accepted = tool_catalog_accept(connection=connection, by=None, meta=demo_meta)
                say(f"  tool catalogue: {len(accepted)} new tool version(s) accepted")
                stack.start_worker()
                stack.start_web()
                engineer = get_user_model().objects.get(username="engineer")
                _, token = token_issue(user=engineer, connections=[connection], by=None,
                                       meta=demo_meta, name="demo token",
                                       ttl=dt.timedelta(days=1))
                self._checkpoint(say)
                gateway_url = f"{stack.base_url}/mcp/{DEMO_CONNECTION_SLUG}"
                say(self.style.SUCCESS(f"Ready in {time.monotonic() - started:.1f}s"))
                if opts["check"]:
                    self._check(gateway_url, token, stack.dataset)
                    return
                self._banner(stack, gateway_url, token, logins)
                try:
                    stack.watch(stop)
                except KeyboardInterrupt:
                    say("\nStopping ...")
        except KeyboardInterrupt:
            say("\nStopped while starting.")
        except DemoError as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def _checkpoint(say: Any) -> None:
        """Sign the chain head now and export it (Celery beat repeats this every
        WARDGATE_CHECKPOINT_INTERVAL_MINUTES)."""
        from audit.checkpoints import CheckpointError
        from audit.tasks import checkpoint

        try:
            signed = checkpoint()
        except CheckpointError as exc:
            say(f"  audit checkpoint FAILED: {exc} (run manage.py audit_verify)")
            return
        say(f"  audit checkpoint #{signed['seq']} signed; exported to "
            f"{audit_config().checkpoint_export}")

    def _check(self, gateway_url: str, token: str, dataset: str) -> None:
        sql = f"SELECT customer_id, full_name, email, country FROM {dataset}.customers ORDER BY customer_id LIMIT 1"
        t0 = time.perf_counter()
        try:
            result = asyncio.run(call_tool(gateway_url, token, "execute_sql", {"sql": sql}))
        except Exception as exc:
            raise CommandError(f"demo check failed: the tool call through {gateway_url} raised {exc!r}") from exc
        elapsed = (time.perf_counter() - t0) * 1000
        if result.is_error:
            raise CommandError(f"demo check failed: tool error: {result.content}")
        rows = (result.structured_content or {}).get("rows") or []
        if not rows:
            raise CommandError(f"demo check failed: no rows came back: {result}")
        self.stdout.write(f"execute_sql through {gateway_url} ({elapsed:.0f} ms, incl. MCP session set-up):")
        self.stdout.write(json.dumps(rows[0]))
        self.stdout.write(self.style.SUCCESS("demo check passed"))

    def _banner(self, stack: DemoStack, gateway_url: str, token: str, logins) -> None:  # type: ignore[no-untyped-def]
        say = self.stdout.write
        say("")
        say(f"  Portal:   {stack.base_url}/")
        say(f"  Gateway:  {gateway_url}")
        say(f"  Upstream: {stack.mcp_url} (BigQuery MCP server -> emulator {stack.emulator.endpoint})")
        say("")
        say("  Logins:")
        for login in logins:
            say(f"    {login.username:<9} / {login.password}   ({login.role.value})")
        say("")
        say("  Engineer's personal token (shown once; `manage.py issue_token engineer "
            f"--connection {DEMO_CONNECTION_SLUG}` makes another):")
        say(f"    {token}")
        say("")
        say("  Call a tool with the official MCP client:")
        say("")
        say(SNIPPET.format(token=token, url=gateway_url, dataset=stack.dataset))
        for note in demo_login_notes():
            say(f"  {note}")
        say("")
        say("Press Ctrl-C to stop.")
