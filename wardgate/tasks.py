"""Worker health: a task the portal's deep health check sends to prove the queue is served."""

from __future__ import annotations

import datetime as dt
import socket

from celery import shared_task

import wardgate.celery  # noqa: F401  (configures the app shared_task binds to; see wardgate/__init__)


@shared_task(name="wardgate.worker_ping")
def worker_ping(payload: str) -> dict[str, str]:
    return {"echo": payload, "worker": socket.gethostname(),
            "at": dt.datetime.now(dt.UTC).isoformat()}
