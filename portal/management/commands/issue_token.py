"""`manage.py issue_token USER --connection SLUG [--days N] [--name TEXT] [--by USER]`: a
personal token, recorded with who issued it (--by, else the OS user)."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from audit.actors import add_by_argument, command_actor
from portal.models import Connection
from portal.services.events import meta_from_command
from portal.services.tokens import token_issue


class Command(BaseCommand):
    help = "Issue a personal bearer token for a user, scoped to connections (shown once)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("user")
        parser.add_argument("--connection", action="append", required=True, metavar="SLUG",
                            help="connection the token may be used on (repeatable)")
        parser.add_argument("--days", type=float, default=7.0, help="lifetime in days (<= 365)")
        parser.add_argument("--name", default="issued by manage.py issue_token")
        add_by_argument(parser)

    def handle(self, *args, **opts) -> None:  # type: ignore[no-untyped-def]
        actor = command_actor(opts["by"], "issue_token")
        user = get_user_model().objects.filter(username=opts["user"]).first()
        if user is None:
            raise CommandError(f"No user {opts['user']!r}")
        if not user.is_active:
            raise CommandError(f"User {opts['user']!r} is disabled")
        slugs = opts["connection"]
        connections = list(Connection.objects.filter(slug__in=slugs))
        missing = sorted(set(slugs) - {c.slug for c in connections})
        if missing:
            raise CommandError(f"No connection(s): {', '.join(missing)}")
        try:
            token, plaintext = token_issue(user=user, connections=connections, name=opts["name"],
                                           ttl=dt.timedelta(days=opts["days"]), by=actor.user,
                                           meta=meta_from_command(actor))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"token for {user.get_username()} on {', '.join(slugs)}, "
                          f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC (shown once):")
        self.stdout.write(plaintext)
