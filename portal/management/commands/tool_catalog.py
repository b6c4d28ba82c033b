"""`manage.py tool_catalog SLUG [--refresh] [--accept [NAME ...]] [--by USER]`: review a
connection's tools. Accepting is recorded with who ran it (--by, else the OS user)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.actors import add_by_argument, command_actor
from portal.models import Connection
from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
from portal.services.events import meta_from_command


class Command(BaseCommand):
    help = "List, refresh from the upstream, and accept a connection's tool catalogue."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("connection")
        parser.add_argument("--refresh", action="store_true", help="ask the upstream for its tools")
        parser.add_argument("--accept", nargs="*", metavar="NAME",
                            help="accept pending versions (all, or the named tools)")
        add_by_argument(parser)

    def handle(self, *args, **opts) -> None:  # type: ignore[no-untyped-def]
        actor = command_actor(opts["by"], "tool_catalog")
        conn = Connection.objects.filter(slug=opts["connection"]).first()
        if conn is None:
            raise CommandError(f"No connection {opts['connection']!r}")
        if opts["refresh"]:
            try:
                new = tool_catalog_refresh(connection=conn, by=actor.user,
                                           meta=meta_from_command(actor))
            except Exception as exc:
                raise CommandError(f"Could not list the upstream's tools: {exc}") from exc
            self.stdout.write(f"{len(new)} new tool version(s) pending review")
        if opts["accept"] is not None:
            accepted = tool_catalog_accept(connection=conn, by=actor.user,
                                           meta=meta_from_command(actor),
                                           names=opts["accept"] or None)
            self.stdout.write(f"accepted {len(accepted)} tool version(s)")
        for entry in conn.tool_catalog.order_by("name", "-first_seen_at"):
            self.stdout.write(f"{entry.status:<10} {entry.name:<30} {entry.digest[:12]}")
