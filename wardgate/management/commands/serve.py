"""`manage.py serve` (`wardgate serve`): the production server.

uvicorn with N worker processes (its own supervisor: it binds the socket once, restarts a worker
that dies, and on SIGTERM/SIGINT passes the signal to every worker and waits for them). Each
worker, on SIGTERM, stops accepting connections, lets requests in flight finish for up to
`--grace-seconds`, then cancels what is left and stops the gateway (lifespan shutdown).

uvicorn rather than gunicorn: the header timeout is a uvicorn protocol class
(proxy.http_protocol.GuardedH11Protocol), which uvicorn's `http=` hands to every worker as is;
gunicorn would be one more dependency and need a worker subclass to carry it, for the same
uvicorn event loop in each worker. Body timeouts are the gateway's own
(WARDGATE_GATEWAY_BODY_TIMEOUT, 408).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from uvicorn.supervisors import Multiprocess

from wardgate.config import ServeConfig, serve_config

APPLICATION = "wardgate.asgi:application"
HTTP_PROTOCOL = "proxy.http_protocol:GuardedH11Protocol"


class Command(BaseCommand):
    help = ("Serve the gateway (/mcp/<slug>) and the portal with N worker processes; "
            "/readyz checks the database and the broker.")

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default="127.0.0.1",
                            help="address to listen on (0.0.0.0 in a container)")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1, help="worker processes")
        parser.add_argument("--only", choices=["gateway", "portal"], default=None,
                            help="serve only the gateway (portal URLs answer 404) or only the "
                                 "portal (/mcp/ answers 404); default both")
        parser.add_argument("--grace-seconds", type=int, default=30,
                            help="on SIGTERM, how long requests in flight may take to finish")
        parser.add_argument("--keep-alive-seconds", type=int, default=5,
                            help="idle keep-alive connections are closed after this long")
        parser.add_argument("--forwarded-allow-ips", default=None,
                            help="load balancers whose X-Forwarded-For/-Proto are trusted "
                                 "(default: $FORWARDED_ALLOW_IPS or 127.0.0.1)")
        parser.add_argument("--access-log", action="store_true", help="log every request")
        parser.add_argument("--log-level", default="info")

    def handle(self, *args, **opts) -> None:  # type: ignore[no-untyped-def]
        import uvicorn

        if opts["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        only = opts["only"] or ""
        # Workers are fresh processes (spawned) that read the environment; a single worker runs
        # here, where the settings are already read.
        os.environ["WARDGATE_SERVE_ONLY"] = only
        serve_config.replace(ServeConfig(only=only))
        metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        if metrics_dir:
            # Figures of workers from an earlier run would be added to this run's (the
            # multiprocess collector sums every file it finds): start from an empty directory.
            directory = Path(metrics_dir)
            directory.mkdir(parents=True, exist_ok=True)
            for stale in directory.glob("*.db"):
                stale.unlink()
        what = {"": "gateway + portal", "gateway": "gateway only", "portal": "portal only"}[only]
        self.stdout.write(f"Wardgate ({what}) on http://{opts['host']}:{opts['port']} with "
                          f"{opts['workers']} worker(s); mode {settings.WARDGATE_MODE}")
        config = uvicorn.Config(
            APPLICATION,
            host=opts["host"],
            port=opts["port"],
            workers=opts["workers"],
            http=HTTP_PROTOCOL,
            lifespan="on",
            timeout_graceful_shutdown=opts["grace_seconds"],
            timeout_keep_alive=opts["keep_alive_seconds"],
            forwarded_allow_ips=opts["forwarded_allow_ips"],
            proxy_headers=True,
            server_header=False,
            access_log=opts["access_log"],
            log_level=opts["log_level"],
        )
        if config.workers == 1:
            uvicorn.Server(config).run()
            return
        listening = config.bind_socket()
        try:
            DrainingSupervisor(config, sockets=[listening]).run()
        finally:
            listening.close()


class DrainingSupervisor(Multiprocess):
    """uvicorn's worker supervisor, but on SIGTERM it closes its own copy of the listening
    socket before stopping the workers: once every worker has closed its copy too, new
    connections are refused at once instead of queueing, unanswered, in the kernel's backlog
    until the supervisor exits."""

    def terminate_all(self) -> None:
        for listening in self.sockets:
            listening.close()
        super().terminate_all()
