"""`/readyz`: may this process take traffic? The database answers, and the broker/Redis when set.

A plain ASGI endpoint, outside Django's request handling, so a load balancer or Kubernetes probe
reaches it with any Host header (a pod IP is not in WARDGATE_ALLOWED_HOSTS) and without the
portal's middleware. 200 when everything configured answers; 503 with a JSON body naming what
is down otherwise. Only an error's class name is shown: the endpoint is public, and a driver's
message can carry host names or user names.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import connections
from django.http import HttpRequest, HttpResponseBase

# Each check must answer within this many seconds or it counts as down.
CHECK_TIMEOUT_SECONDS = 3.0

Check = Callable[[], Awaitable[None]]


def _database_select_one() -> None:
    # A connection of its own, opened and closed here: the probe runs in a thread pool, where
    # Django's per-thread connections would otherwise stay open after each check.
    conn = connections.create_connection("default")
    conn.settings_dict = copy.deepcopy(conn.settings_dict)
    if conn.vendor == "postgresql":
        conn.settings_dict.setdefault("OPTIONS", {})["connect_timeout"] = int(CHECK_TIMEOUT_SECONDS)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        conn.close()


async def database_ready() -> None:
    await asyncio.to_thread(_database_select_one)


async def _redis_ping(url: str) -> None:
    import redis.asyncio as redis

    client = redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
                            socket_timeout=CHECK_TIMEOUT_SECONDS)
    try:
        await client.ping()
    finally:
        await client.aclose()


def _kombu_connect(url: str) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


def _is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def configured_checks() -> dict[str, Check]:
    """The checks for this configuration: the database always; the Celery broker unless it is
    the embedded filesystem queue; the shared cache when REDIS_URL is set."""
    checks: dict[str, Check] = {"database": database_ready}
    broker = settings.CELERY_BROKER_URL
    if broker and not broker.startswith("filesystem://"):
        if _is_redis(broker):
            checks["broker"] = lambda: _redis_ping(broker)
        else:
            checks["broker"] = lambda: asyncio.to_thread(_kombu_connect, broker)
    redis_url = settings.REDIS_URL
    if redis_url and redis_url != broker:
        checks["redis"] = lambda: _redis_ping(redis_url)
    return checks


async def _outcome(check: Check) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS + 1):
            await check()
    except TimeoutError:
        return "down: timeout"
    except Exception as exc:  # any failure means not ready; the probe itself must answer
        return f"down: {type(exc).__name__}"
    return "ok"


async def readiness_report(checks: dict[str, Check] | None = None) -> tuple[int, dict[str, Any]]:
    checks = configured_checks() if checks is None else checks
    names = list(checks)
    outcomes = await asyncio.gather(*(_outcome(checks[name]) for name in names))
    results = dict(zip(names, outcomes, strict=True))
    down = [name for name, outcome in results.items() if outcome != "ok"]
    body = {"status": "unavailable" if down else "ready", "down": down, "checks": results}
    return (503 if down else 200), body


async def readiness_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI endpoint for GET/HEAD /readyz."""
    if scope["method"] not in ("GET", "HEAD"):
        status, body = 405, {"status": "method not allowed"}
    else:
        status, body = await readiness_report()
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"cache-control", b"no-store"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body",
                "body": b"" if scope["method"] == "HEAD" else payload})


# ---------------------------------------------------------------- `manage.py serve --only`

async def _not_found(send: Any) -> None:
    payload = b'{"detail": "Not served by this process"}'
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


async def _lifespan_without_work(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def not_served(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Stands in for the gateway in a portal-only process: /mcp/ answers 404, and start-up
    starts nothing (no SQL analysis workers, no audit writer)."""
    if scope["type"] == "lifespan":
        await _lifespan_without_work(receive, send)
    elif scope["type"] == "http":
        await _not_found(send)


class _HealthzHandler(ASGIHandler):
    """Django's ASGI handler (the same middleware, host check and response as in any process),
    resolving in wardgate.urls_healthz: see that module for why."""

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        request.urlconf = "wardgate.urls_healthz"
        return await super().get_response_async(request)


def health_only() -> Any:
    """The portal in a gateway-only process: /healthz still answers; every other URL is 404."""
    portal = _HealthzHandler()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") == "/healthz":
            await portal(scope, receive, send)
        elif scope["type"] == "http":
            await _not_found(send)

    return app
