"""Watching for the client leaving while a call or stream runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from proxy.asgi_io import Receive


def cancelling() -> bool:
    """Whether the current task is being cancelled (e.g. the server itself is stopping)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def until_client_leaves(receive: Receive, work: Awaitable[None],
                              answered: Callable[[], bool] | None = None) -> bool:
    """Run `work` until it ends or the client disconnects, whichever comes first; True if the
    client left (`work` is then cancelled). Exceptions from `work` propagate, and so does a
    cancellation of `work` from elsewhere (the live registry cutting a call off).
    `answered`: once it is true the response is complete (the server then reports a
    disconnect too), and only `work` ending counts."""
    async def client_left() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if answered is not None and answered():
            await asyncio.Event().wait()

    job = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(client_left())
    try:
        await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
        left = watcher.done() and not watcher.cancelled() and watcher.exception() is None
    finally:
        for task in (job, watcher):
            task.cancel()
        await asyncio.gather(job, watcher, return_exceptions=True)
    if job.cancelled():
        if left:
            return True
        raise asyncio.CancelledError()
    job.result()  # re-raise what the relay raised
    return False
