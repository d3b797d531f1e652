"""Heartbeats, so a worker lost mid-activity is noticed within the heartbeat timeout (seconds), not
after the activity's whole start-to-close timeout (minutes), and cancellation reaches the activity.

Every activity a workflow here schedules carries a heartbeat timeout. ``HeartbeatInterceptor``
(on every worker) heartbeats for any running activity that has one, in the background, so an
activity cannot forget to: a store call, a webhook POST or a memory download that outlives a few
seconds keeps its attempt alive while the worker lives, and loses it within the timeout when the
worker dies. ``heartbeating`` is the same loop for a part of an activity, with details.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)


@contextlib.asynccontextmanager
async def heartbeating(*details: object) -> AsyncIterator[None]:
    info = activity.info()
    if info.is_local:  # local activities have no heartbeats: the workflow task's timeout covers them
        yield
        return
    timeout = info.heartbeat_timeout
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


class HeartbeatInterceptor(Interceptor):
    """Heartbeats for every running (non-local, async) activity that has a heartbeat timeout."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _HeartbeatInbound(next)


class _HeartbeatInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if info.is_local or info.heartbeat_timeout is None:
            return await super().execute_activity(input)
        async with heartbeating():
            return await super().execute_activity(input)
