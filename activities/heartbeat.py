"""A background heartbeat, so a worker lost mid-request is noticed within the heartbeat timeout
(not after the request's whole start-to-close timeout), and cancellation reaches the activity."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity


@contextlib.asynccontextmanager
async def heartbeating(*details: object) -> AsyncIterator[None]:
    timeout = activity.info().heartbeat_timeout
    interval = max(timeout.total_seconds() / 3, 0.2) if timeout else 5.0

    async def beat() -> None:
        while True:
            activity.heartbeat(*details)
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
