"""A worker lost (SIGKILL) in the middle of any dream stage or of a webhook delivery costs seconds,
not the activity's start-to-close timeout: the attempt heartbeats while its worker lives, so Temporal
notices the loss by a HEARTBEAT timeout and a new worker runs attempt 2 at once.

Proved from Temporal's history, not by timing: the activity's ``ActivityTaskStarted`` event says
attempt 2, its ``last_failure`` is a heartbeat timeout, and its identity is the new worker's. Before
the kill, the stalled attempt outlived its heartbeat timeout while still attempt 1 (and still
heartbeating): only one attempt ran on the killed worker.

Dream stages stall in ``tests/stalling_worker.py`` (worker.py plus an interceptor that runs the real
activity, then does not return); a delivery stalls in a real HTTP receiver that holds the POST open.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from temporalio.api.enums.v1 import EventType, PendingActivityState, TimeoutType
from temporalio.api.history.v1 import ActivityTaskStartedEventAttributes
from temporalio.client import WorkflowHandle

from managed_agents._client import SessionClient
from managed_agents._dreams.client import start_dream
from managed_agents._memory.service import MemoryService
from managed_agents._store import SessionStore
from managed_agents._webhooks.models import EndpointCreate
from managed_agents._webhooks.service import WebhookService
from managed_agents.testing.dreamer import dreamer_responder
from managed_agents.testing.mock_claude import MockClaude, Turn
from tests.helpers import marker, session_input, spawn_worker
from tests.test_dreams import contents, dream_body, seeded_store
from tests.test_webhooks import Receiver

#: The dreams' heartbeat timeout (``options.heartbeat_timeout_seconds``).
DREAM_HEARTBEAT = 2.0
#: ``workflows/webhook_event.py``: a delivery's heartbeat timeout.
DELIVERY_HEARTBEAT = 10.0
#: ``activities/webhooks.py``: a delivery's own HTTP timeout, which must not be what ends the attempt.
DELIVERY_REQUEST_TIMEOUT = 15.0

STAGES = ["prepare", "extract", "plan_consolidation", "consolidate", "finish"]


@pytest.fixture(scope="module")
def dreamer() -> Iterator[MockClaude]:
    with MockClaude(default=dreamer_responder) as mock:
        yield mock


def model_env(mock: MockClaude) -> dict[str, str]:
    return {"ANTHROPIC_API_KEY": "sk-test-not-a-secret", "ANTHROPIC_BASE_URL": mock.base_url}


def replacement_worker(client: Any, settings: Any, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """The worker that takes over: a process that imports now (seconds here) but connects to
    Temporal only once the returned file exists, i.e. once the test killed the worker it replaces.
    It runs worker.py's workers (``tests/stalling_worker.py`` with nothing to stall)."""
    start = settings.data_dir / f"start-{uuid.uuid4().hex[:8]}"
    worker = spawn_worker(
        client,
        settings,
        env={**env, "WORKER_START_FILE": str(start), "STALL_ACTIVITIES": ""},
        log="worker2.log",
        script="tests/stalling_worker.py",
    )
    return worker, start


def kill(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait()


async def wait_until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def stall_markers(data_dir: Path, activity_type: str) -> list[str]:
    """``tests/stalling_worker.py``'s markers: one per stalled attempt (``...-<attempt>``)."""
    return sorted(p.name for p in data_dir.glob(f"stalled-{activity_type}-*"))


async def pending(handle: WorkflowHandle[Any, Any], activity_type: str) -> Any:
    description = await handle.describe()
    [activity] = [a for a in description.raw_description.pending_activities if a.activity_type.name == activity_type]
    return activity


async def started_events(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, ActivityTaskStartedEventAttributes]]:
    """(activity type, ``ActivityTaskStarted`` attributes) of every activity in the history. With
    server-side retries, an activity's started event is written when it closes: it says which
    attempt that was, and how the attempt before it failed."""
    history = await handle.fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    timed_out = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT]
    assert not timed_out, "no activity ran out of attempts or time"
    return [
        (
            scheduled[e.activity_task_started_event_attributes.scheduled_event_id],
            e.activity_task_started_event_attributes,
        )
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]


def assert_retried_once_after_heartbeat_timeout(
    started: list[tuple[str, ActivityTaskStartedEventAttributes]], activity_type: str, new_worker_pid: int
) -> None:
    """Exactly one activity of ``activity_type`` needed a second attempt, because the first timed
    out by heartbeat, and the new worker ran it; every other activity needed one attempt."""
    retried = [(name, a) for name, a in started if a.attempt != 1]
    assert [name for name, _ in retried] == [activity_type], [(n, a.attempt) for n, a in started]
    [(_, attempt)] = retried
    assert attempt.attempt == 2
    assert attempt.last_failure.WhichOneof("failure_info") == "timeout_failure_info", attempt.last_failure
    timeout_type = attempt.last_failure.timeout_failure_info.timeout_type
    assert timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT, TimeoutType.Name(timeout_type)
    assert attempt.identity.startswith(f"{new_worker_pid}@"), attempt.identity


# --- dream stages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
async def test_worker_killed_during_dream_stage_resumes_after_a_heartbeat_timeout(
    temporal_env: Any, settings: Any, dreamer: MockClaude, stage: str
) -> None:
    activity_type = f"managed_agents.dream.{stage}"
    client = temporal_env.client
    store = SessionStore(settings.resolved_store_url())
    memory = MemoryService(store.engine)
    store_id = seeded_store(memory)
    tag = uuid.uuid4().hex[:8]
    sessions = [f"sesn_{tag}_0", f"sesn_{tag}_1"]
    for i, sid in enumerate(sessions):
        lines = [f"remember: k{i} = v{i}\nremember: language = {['rust', 'go'][i]}", "noted"]
        store.write_messages(
            sid,
            0,
            [
                {"role": ["user", "assistant"][j % 2], "content": [{"type": "text", "text": t}]}
                for j, t in enumerate(lines)
            ],
            step=0,
            attempt=1,
        )
    env = {**model_env(dreamer), "STALL_ACTIVITIES": activity_type}
    with contextlib.ExitStack() as cleanup:
        worker = spawn_worker(client, settings, env=env, log="stalling-worker.log", script="tests/stalling_worker.py")
        cleanup.callback(kill, worker)
        killed_pid = worker.pid
        replacement, start_replacement = replacement_worker(client, settings, model_env(dreamer))
        cleanup.callback(kill, replacement)
        handle = await start_dream(
            client,
            dream_body(store_id, sessions, max_parallel_sessions=1, heartbeat_timeout_seconds=DREAM_HEARTBEAT),
            task_queue=settings.task_queue,
        )
        # The stage's first attempt did its work and now does not return ...
        await wait_until(lambda: stall_markers(settings.data_dir, activity_type))
        [first] = stall_markers(settings.data_dir, activity_type)
        assert first.endswith("-1")
        stalled_at = datetime.fromtimestamp((settings.data_dir / first).stat().st_mtime, UTC)
        # ... for four heartbeat timeouts, and it is still attempt 1 on this worker: its heartbeats
        # kept it alive (without them attempt 2 would have started here after about 1.5 of them).
        # (Stalling this long also lets Temporal give up the killed worker's sticky queue, about
        # 10 s after its last poll, by the time attempt 2 completes: the workflow task after it
        # then goes straight to the new worker instead of waiting out a sticky timeout.)
        await asyncio.sleep(DREAM_HEARTBEAT * 4)
        assert stall_markers(settings.data_dir, activity_type) == [first]
        alive = await pending(handle, activity_type)
        assert alive.attempt == 1 and alive.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        assert alive.last_heartbeat_time.ToDatetime(UTC) > stalled_at + timedelta(seconds=DREAM_HEARTBEAT)
        assert alive.last_worker_identity.startswith(f"{killed_pid}@")
        kill(worker)
        start_replacement.touch()
        result = await asyncio.wait_for(handle.result(), 90)
    assert result["status"] == "completed", result
    assert_retried_once_after_heartbeat_timeout(await started_events(handle), activity_type, replacement.pid)
    assert stall_markers(settings.data_dir, activity_type) == [first], "the new worker does not stall"
    # The work done by the lost attempt is reused, not repeated: one model request per session
    # and one consolidation, one output store.
    requests = [r for r in dreamer.requests if any(sid in r.first_user_text for sid in sessions)]
    assert len(requests) == 3, [r.first_user_text[:80] for r in requests]
    assert result["progress"]["model_requests"] == 3
    assert result["progress"]["sessions_read"] == 2 and result["progress"]["batches_done"] == 1
    output = result["outputs"][0]["memory_store_id"]
    assert {s.id for s in memory.list_stores(limit=100).data} == {store_id, output}
    assert contents(memory, output) == {
        "/facts.md": "deploy: friday\neditor: vim\nk0: v0\nk1: v1\nlanguage: go\n",
        "/notes.md": "Keep answers short.\n",
        "/patterns.md": f"- language: mentioned in sessions {', '.join(sessions)}\n",
    }


# --- a webhook delivery ----------------------------------------------------------------------------


class HoldingReceiver(Receiver):
    """A real HTTP receiver that holds the first POST open (no answer) until ``release()``, then
    answers it 200; every later POST is answered 200 at once."""

    def __init__(self) -> None:
        super().__init__()
        self._released = asyncio.Event()  # used on the receiver's own loop
        self.arrived: list[float] = []  # time.monotonic() of each POST
        self.arrived_at: list[datetime] = []  # and the wall clock's

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._released.set)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.arrived.append(time.monotonic())
        self.arrived_at.append(datetime.now(UTC))
        self.requests.append(({k.lower(): v for k, v in request.headers.items()}, body))
        if len(self.requests) == 1:
            await self._released.wait()
        return web.Response(status=200)


async def test_worker_killed_during_webhook_delivery_retries_after_a_heartbeat_timeout(
    temporal_env: Any, settings: Any, mock_claude: MockClaude
) -> None:
    client = temporal_env.client
    webhooks = WebhookService(SessionStore(settings.resolved_store_url()).engine)
    m = marker()
    mock_claude.script_for(m, Turn.text("done"))
    with contextlib.ExitStack() as cleanup:
        receiver = HoldingReceiver().start()
        cleanup.callback(receiver.stop)
        ep = webhooks.create_endpoint(
            EndpointCreate(
                url=receiver.url,
                enabled_events=["session.status_terminated"],
                initial_retry_seconds=0.5,
                max_retry_seconds=1,
            )
        )
        worker = spawn_worker(client, settings, env=model_env(mock_claude))
        cleanup.callback(kill, worker)
        killed_pid = worker.pid
        replacement, start_replacement = replacement_worker(client, settings, model_env(mock_claude))
        cleanup.callback(kill, replacement)
        session = await SessionClient(client, settings.task_queue).create(session_input(f"{m} hi"))
        await session.result()
        await wait_until(lambda: receiver.requests)
        event_id = receiver.requests[0][0]["webhook-id"]
        delivery = client.get_workflow_handle(f"webhook-{event_id}")
        # The POST is held past the delivery's heartbeat timeout (but short of its own HTTP
        # timeout): still attempt 1, nothing logged, no second POST.
        await asyncio.sleep(receiver.arrived[0] + DELIVERY_HEARTBEAT + 2 - time.monotonic())
        assert time.monotonic() - receiver.arrived[0] < DELIVERY_REQUEST_TIMEOUT
        assert len(receiver.requests) == 1
        assert webhooks.deliveries(ep.id) == []
        alive = await pending(delivery, "managed_agents.webhooks.deliver")
        assert alive.attempt == 1 and alive.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        assert alive.last_heartbeat_time.ToDatetime(UTC) > receiver.arrived_at[0], "it heartbeat while held"
        assert alive.last_worker_identity.startswith(f"{killed_pid}@")
        kill(worker)
        receiver.release()  # the held POST is answered now, to a worker that is gone
        start_replacement.touch()
        outcome = await asyncio.wait_for(delivery.result(), 90)
    assert outcome == {ep.id: "delivered"}
    assert_retried_once_after_heartbeat_timeout(
        await started_events(delivery), "managed_agents.webhooks.deliver", replacement.pid
    )
    # The receiver saw the retry: the same event id and body again; the log has the attempt
    # that answered (attempt 2) and nothing from the lost one.
    assert len(receiver.requests) == 2
    assert len({h["webhook-id"] for h, _ in receiver.requests}) == 1
    assert len({b for _, b in receiver.requests}) == 1
    log = webhooks.deliveries(ep.id)
    assert [(d.attempt, d.outcome, d.status_code) for d in log] == [(2, "delivered", 200)]
