"""The options of every activity the workflows schedule, in one place (their names are in
``managed_agents._contract``).

The rules they follow: Temporal owns retries (the model client never retries by itself); every
non-local activity carries a heartbeat timeout, and every worker heartbeats for it
(``HeartbeatInterceptor``), so a lost worker is noticed in seconds, whatever the start-to-close
timeout; an activity that runs in the sandbox waits for its sandbox worker at most
``sandbox_schedule_to_start_seconds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

#: Bash may run up to 600 s (its own cap); the activity allows that plus margin.
TOOL_START_TO_CLOSE_SECONDS = 660
#: Webhook activities have no per-session options: a lost worker is noticed within this.
WEBHOOK_HEARTBEAT_SECONDS = 10


def model_call(
    timeout_seconds: float,
    heartbeat_seconds: float,
    max_attempts: int,
    *,
    non_retryable: Sequence[str] = (),
) -> dict[str, Any]:
    """A request to Claude (agent turns, the grader, dream stages): backoff 1 s → 60 s, the
    ``retry-after`` the API sends honoured through ``next_retry_delay``."""
    return {
        "start_to_close_timeout": timedelta(seconds=timeout_seconds),
        "heartbeat_timeout": timedelta(seconds=heartbeat_seconds),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=60),
            maximum_attempts=max_attempts,
            non_retryable_error_types=list(non_retryable) or None,
        ),
    }


def store_call(heartbeat_seconds: float, *, timeout_seconds: float = 120) -> dict[str, Any]:
    """An activity that only reads and writes the database (registering a session, dream stages
    that call no model): retried up to 10 times, 30 s apart at most."""
    return {
        "start_to_close_timeout": timedelta(seconds=timeout_seconds),
        "heartbeat_timeout": timedelta(seconds=heartbeat_seconds),
        "retry_policy": RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(seconds=30)),
    }


def sandbox_call(timeout_seconds: float, heartbeat_seconds: float, schedule_to_start_seconds: float) -> dict[str, Any]:
    """An activity on a sandbox worker's queue (a workspace, a rubric file, deliverables)."""
    return {
        "start_to_close_timeout": timedelta(seconds=timeout_seconds),
        "heartbeat_timeout": timedelta(seconds=heartbeat_seconds),
        "schedule_to_start_timeout": timedelta(seconds=schedule_to_start_seconds),
    }


def tool_call(heartbeat_seconds: float, schedule_to_start_seconds: float, max_attempts: int) -> dict[str, Any]:
    """One of the agent's tool calls, on the sandbox worker that holds its session's workspace."""
    return {
        **sandbox_call(TOOL_START_TO_CLOSE_SECONDS, heartbeat_seconds, schedule_to_start_seconds),
        "retry_policy": RetryPolicy(maximum_attempts=max_attempts),
    }


def webhook_call(timeout_seconds: float) -> dict[str, Any]:
    return {
        "start_to_close_timeout": timedelta(seconds=timeout_seconds),
        "heartbeat_timeout": timedelta(seconds=WEBHOOK_HEARTBEAT_SECONDS),
    }


def bookkeeping_local() -> dict[str, Any]:
    """A local activity that records what a session did (webhook events, the dream index): quick,
    in the workflow's own worker, and never allowed to break the session."""
    return {"start_to_close_timeout": timedelta(seconds=30), "retry_policy": RetryPolicy(maximum_attempts=5)}
