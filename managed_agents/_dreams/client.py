"""Start, watch and cancel dreams, and manage their schedules, from any Temporal client.

A dream is a ``Dream`` workflow whose id is the dream id (``drm_...``); a dream schedule is a
Temporal Schedule whose action starts a ``ScheduledDream`` workflow. The equivalent plain
``temporal`` commands are in the README.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.service import RPCError

from managed_agents._contract import DREAM, DREAM_QUERY, SCHEDULED_DREAM
from managed_agents._dreams.models import (
    TERMINAL_STATUSES,
    Dream,
    DreamCreateParams,
    DreamOptions,
    ScheduledDreamInput,
)
from managed_agents._settings import DEFAULT_TASK_QUEUE

DREAM_WORKFLOW = DREAM
SCHEDULED_DREAM_WORKFLOW = SCHEDULED_DREAM


class DreamNotCancelable(ValueError):
    """Canceling a completed or failed dream (Managed Agents answers 400)."""


def new_dream_id() -> str:
    return f"drm_{uuid.uuid4().hex[:24]}"


async def start_dream(
    client: Client,
    params: DreamCreateParams | dict[str, Any],
    *,
    dream_id: str | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
) -> WorkflowHandle[Any, Any]:
    """Validate here (a clear error before anything starts), then start the workflow."""
    body = DreamCreateParams.model_validate(params).model_dump(mode="json", exclude_none=True)
    return await client.start_workflow(DREAM_WORKFLOW, body, id=dream_id or new_dream_id(), task_queue=task_queue)


async def get_dream(client: Client, dream_id: str) -> Dream:
    """The dream as it is now: its result once it ended, else the live ``dream`` query."""
    handle = client.get_workflow_handle(dream_id)
    description = await handle.describe()
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return Dream.model_validate(await handle.result())
    return Dream.model_validate(await handle.query(DREAM_QUERY))


async def cancel_dream(client: Client, dream_id: str) -> Dream:
    """Managed Agents' rules: pending/running -> canceled; canceled -> unchanged;
    completed/failed -> an error."""
    dream = await get_dream(client, dream_id)
    if dream.status in ("completed", "failed"):
        raise DreamNotCancelable(f"dream {dream_id} is {dream.status}: only a pending or running dream can be canceled")
    if dream.status in TERMINAL_STATUSES:
        return dream
    handle = client.get_workflow_handle(dream_id)
    await handle.cancel()
    return Dream.model_validate(await handle.result())


# --- schedules ---------------------------------------------------------------------------------------


def check_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {name!r} is not an IANA time zone name (e.g. Europe/Paris, UTC)") from None
    return name


def dream_schedule(
    inp: ScheduledDreamInput,
    *,
    cron: str,
    time_zone: str = "UTC",
    task_queue: str = DEFAULT_TASK_QUEUE,
    catchup_window: timedelta = timedelta(days=1),
) -> Schedule:
    """Overlapping runs are skipped; after an outage the runs missed within ``catchup_window`` are
    due at once, and with ``SKIP`` only the first of them starts: a missed run is caught up once."""
    if len(cron.split()) != 5:
        raise ValueError(f"cron {cron!r}: give five fields (minute hour day-of-month month day-of-week)")
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SCHEDULED_DREAM_WORKFLOW,
            inp.model_dump(mode="json", exclude_none=True),
            id=f"{inp.schedule_id}-run",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(cron_expressions=[cron], time_zone_name=check_time_zone(time_zone)),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=catchup_window),
    )


async def create_dream_schedule(
    client: Client,
    *,
    schedule_id: str,
    memory_store_id: str,
    model: str,
    cron: str,
    time_zone: str = "UTC",
    instructions: str | None = None,
    options: DreamOptions | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
) -> ScheduleHandle:
    inp = ScheduledDreamInput(
        schedule_id=schedule_id,
        memory_store_id=memory_store_id,
        model=model,  # type: ignore[arg-type]
        instructions=instructions,
        options=options or DreamOptions(),
    )
    schedule = dream_schedule(inp, cron=cron, time_zone=time_zone, task_queue=task_queue)
    try:
        return await client.create_schedule(schedule_id, schedule)
    except RPCError as err:
        raise ValueError(f"schedule {schedule_id!r} was not created: {err.message}") from err
