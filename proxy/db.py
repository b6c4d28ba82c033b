"""Database reads from the async gateway: run in a worker thread, connection closed after.

The gateway touches the database only on cache misses, so a fresh connection per call costs
little and leaves no idle connection behind in a pool thread (which would outlive the call,
hold locks on SQLite and keep a PostgreSQL database from being dropped or failed over).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async

P = ParamSpec("P")
T = TypeVar("T")


def _closing(fn: Callable[P, T]) -> Callable[P, T]:
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        from django.db import connections

        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    return run


async def run_db(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await sync_to_async(_closing(fn), thread_sensitive=False)(*args, **kwargs)
