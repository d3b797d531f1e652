"""A worker killed with SIGKILL mid-turn, restarted: the session resumes within seconds (heartbeats
detect the lost worker) and finishes with no event lost or duplicated."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

from managed_agents._client import SessionClient
from managed_agents.testing.mock_claude import Fault, Turn
from tests.helpers import marker, session_input, spawn_worker

ROOT = Path(__file__).resolve().parents[1]


def start_worker(env_client, mock, settings) -> subprocess.Popen[bytes]:
    return spawn_worker(
        env_client,
        settings,
        env={"ANTHROPIC_API_KEY": "sk-test-not-a-secret", "ANTHROPIC_BASE_URL": mock.base_url},
    )


async def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


def assert_log_is_clean(events) -> None:
    seqs = [e.seq for e in events]
    assert seqs == list(range(len(seqs))), "no gaps, no duplicates, in order"
    assert len({e.id for e in events}) == len(events)


async def test_sigkill_mid_model_request_then_restart(temporal_env, mock_claude, settings) -> None:
    m = marker()
    mock_claude.script_for(
        m,
        Turn.tool_use("write", {"file_path": "a.txt", "content": "one"}),
        Fault.slow(60, then=Turn.text("lost with the worker")),  # the request the kill interrupts
        Turn.tool_use("bash", {"command": "cat a.txt"}),  # the retry on the new worker
        Turn.text("finished after the crash"),
    )
    sessions = SessionClient(temporal_env.client, settings.task_queue)
    worker = start_worker(temporal_env.client, mock_claude, settings)
    try:
        handle = await sessions.create(session_input(f"{m} survive", options={"heartbeat_timeout_seconds": 3}))
        await wait_until(lambda: _requests(mock_claude, m, 2))
        await asyncio.sleep(0.5)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        killed_at = asyncio.get_running_loop().time()
        worker = start_worker(temporal_env.client, mock_claude, settings)
        await wait_until(lambda: _requests(mock_claude, m, 3), timeout=30)
        resumed_after = asyncio.get_running_loop().time() - killed_at
        assert resumed_after < 15, f"the lost request was retried {resumed_after:.1f}s after the kill"
        result = await asyncio.wait_for(handle.result(), 60)
        assert result.final_message == "finished after the crash"
        events = await handle.events()
        assert_log_is_clean(events)
        messages = [e.model_extra["content"][0]["text"] for e in events if e.type == "agent.message"]
        assert messages == ["finished after the crash"], "the lost response never reached the log"
        results = [e.model_extra["content"][0]["text"] for e in events if e.type == "agent.tool_result"]
        assert results == ["wrote 3 bytes to a.txt", "one"]
        assert [e.type for e in events].count("agent.tool_use") == 2
        # JSON logs: every activity line says which session, turn and activity wrote it.
        lines = [
            json.loads(line)
            for line in (settings.data_dir / "worker.log").read_text().splitlines()
            if line.startswith("{")
        ]
        activity_lines = [
            line for line in lines if line.get("logger", "").startswith("managed_agents.") and "activity" in line
        ]
        assert {line["activity"] for line in activity_lines} >= {"model_request", "tool.write", "tool.bash"}
        assert all(line["session_id"] == handle.id and line["turn"] == 1 for line in activity_lines)
        assert any(line.get("event") == "worker started" for line in lines)
    finally:
        worker.kill()
        worker.wait()


async def test_sigkill_mid_tool_call_then_restart(temporal_env, mock_claude, settings) -> None:
    m = marker()
    mock_claude.script_for(
        m,
        Turn.tool_use(
            "bash",
            {"command": "if [ -e once ]; then echo again; else touch once; echo started > log.txt; sleep 30; fi"},
        ),
        Turn.text("done"),
    )
    sessions = SessionClient(temporal_env.client, settings.task_queue)
    worker = start_worker(temporal_env.client, mock_claude, settings)
    workspace = settings.data_dir / "workspaces"
    try:
        body = session_input(f"{m} survive", options={"heartbeat_timeout_seconds": 3})
        body["agent"]["tools"] = [{"type": "agent_toolset_20260401"}]
        handle = await sessions.create(body)

        async def tool_started() -> bool:
            return any(p.read_text().startswith("started") for p in workspace.glob("*/log.txt"))

        await wait_until(tool_started)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = start_worker(temporal_env.client, mock_claude, settings)
        # The retried command runs again on the restarted worker (tools are at-least-once).
        result = await asyncio.wait_for(handle.result(), 90)
        assert result.final_message == "done"
        events = await handle.events()
        assert_log_is_clean(events)
        [tool_result] = [e.model_extra for e in events if e.type == "agent.tool_result"]
        assert tool_result["content"][0]["text"].strip() == "again"
    finally:
        worker.kill()
        worker.wait()


async def _requests(mock, m, n) -> bool:
    return len(mock.requests_for(m)) >= n


async def test_sigkill_during_grading_resumes_the_same_iteration(temporal_env, mock_claude, settings) -> None:
    from temporalio.api.enums.v1 import EventType

    from tests.test_outcomes import HALF, PASS, outcome_input, work

    m = marker()
    mock_claude.script_for(
        m,
        *work("draft"),
        HALF,  # iteration 0: needs revision
        *work("the answer is 42"),
        Fault.slow(60, then=PASS),  # iteration 1: the grading the kill interrupts
        PASS,  # iteration 1 again, on the restarted worker
    )
    sessions = SessionClient(temporal_env.client, settings.task_queue)
    worker = start_worker(temporal_env.client, mock_claude, settings)
    try:
        handle = await sessions.create(outcome_input(m, heartbeat_timeout_seconds=3))

        async def grading_iteration_1() -> bool:
            return sum("tool_choice" in r.body for r in mock_claude.requests_for(m)) >= 2

        await wait_until(grading_iteration_1)
        await asyncio.sleep(0.5)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = start_worker(temporal_env.client, mock_claude, settings)
        result = await asyncio.wait_for(handle.result(), 60)
        [evaluation] = result.outcome_evaluations
        assert evaluation["result"] == "satisfied" and evaluation["iteration"] == 1
        events = await handle.events()
        assert_log_is_clean(events)
        starts = [e.model_extra["iteration"] for e in events if e.type == "span.outcome_evaluation_start"]
        assert starts == [0, 1], "finished passes are not re-run"
        history = await handle._handle.fetch_history()
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        assert scheduled.count("managed_agents.outcome.collect_deliverables") == 2
        assert scheduled.count("managed_agents.outcome.grade") == 2
        assert sum("tool_choice" in r.body for r in mock_claude.requests_for(m)) == 3
    finally:
        worker.kill()
        worker.wait()


async def test_sigkill_mid_fan_out_every_thread_finishes_exactly_once(temporal_env, mock_claude, settings) -> None:
    from tests.test_multiagent import coordinator_input, create, specialist, tool_result_texts

    m = marker()
    tasks = [f"{marker()} part {i}" for i in range(3)]
    mock_claude.script_for(
        m,
        Turn.tool_uses([create("worker", t) for t in tasks]),
        Turn.tool_use("wait_for_agents", {}),
        Turn.text("merged after the crash"),
    )
    for i, t in enumerate(tasks):
        # The first answer is slow: the kill lands while every thread waits on the model.
        mock_claude.script_for(t, Fault.slow(60, then=Turn.text("lost")), Turn.text(f"part {i} done"))
    sessions = SessionClient(temporal_env.client, settings.task_queue)
    worker = start_worker(temporal_env.client, mock_claude, settings)
    try:
        handle = await sessions.create(coordinator_input(m, [specialist("worker")], heartbeat_timeout_seconds=3))

        async def all_threads_asking() -> bool:
            return all(mock_claude.requests_for(t) for t in tasks)

        await wait_until(all_threads_asking)
        await asyncio.sleep(0.5)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = start_worker(temporal_env.client, mock_claude, settings)
        result = await asyncio.wait_for(handle.result(), 90)
        assert result.final_message == "merged after the crash"
        events = await handle.events()
        assert_log_is_clean(events)
        kinds = [e.type for e in events]
        assert kinds.count("session.thread_created") == 3
        assert kinds.count("session.thread_status_idle") == 3, "each thread finished exactly once"
        merged = tool_result_texts(mock_claude.requests_for(m)[2])[0]
        assert all(merged.count(f"part {i} done") == 1 for i in range(3)) and "lost" not in merged
        for t in tasks:
            assert len(mock_claude.requests_for(t)) == 2, "one lost request, one retry, nothing more"
    finally:
        worker.kill()
        worker.wait()


async def test_sigkill_between_webhook_attempts_delivery_still_completes(temporal_env, mock_claude, settings) -> None:
    from managed_agents._store import SessionStore
    from managed_agents._webhooks.models import EndpointCreate
    from managed_agents._webhooks.service import WebhookService
    from tests.test_webhooks import Receiver

    receiver = Receiver().start()
    receiver.statuses = [500]
    webhooks = WebhookService(SessionStore(settings.resolved_store_url()).engine)
    ep = webhooks.create_endpoint(
        EndpointCreate(
            url=receiver.url, enabled_events=["session.status_terminated"], initial_retry_seconds=4, max_retry_seconds=4
        )
    )
    m = marker()
    mock_claude.script_for(m, Turn.text("done"))
    sessions = SessionClient(temporal_env.client, settings.task_queue)
    worker = start_worker(temporal_env.client, mock_claude, settings)
    try:
        handle = await sessions.create(session_input(f"{m} hi"))
        await handle.result()

        async def first_attempt_failed() -> bool:
            return any(d.outcome == "failed" for d in webhooks.deliveries(ep.id))

        await wait_until(first_attempt_failed)
        worker.send_signal(signal.SIGKILL)  # between attempts: the retry timer is Temporal's
        worker.wait()
        worker = start_worker(temporal_env.client, mock_claude, settings)

        async def delivered() -> bool:
            return any(d.outcome == "delivered" for d in webhooks.deliveries(ep.id))

        await wait_until(delivered, timeout=60)
        assert len({h["webhook-id"] for h, _ in receiver.requests}) == 1
    finally:
        worker.kill()
        worker.wait()
        receiver.stop()
