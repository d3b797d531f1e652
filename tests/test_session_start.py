"""How a session starts: no round trip before its first model request.

The first request carries the agent definition and stores it; the workspace is prepared beside
that request, and tools wait for it. Everything here is read from the real Temporal history, the
real store and the requests the mock Claude server received.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from managed_agents._activities.model import ModelActivities
from managed_agents._content_hash import content_ref
from managed_agents._models.activity_io import ModelRequestInput, TranscriptMessage
from managed_agents.testing.mock_claude import Turn
from tests.conftest import Harness
from tests.helpers import agent, marker, session_input

MODEL = "managed_agents.model_request"
PROVISION = "managed_agents.sandbox.provision"
REGISTER = "managed_agents.register_session"


def _scheduled(history: Any) -> list[tuple[str, int, dict[str, Any]]]:
    """(activity name, the workflow task that scheduled it, its input) in history order."""
    out = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            out.append((a.activity_type.name, a.workflow_task_completed_event_id, json.loads(a.input.payloads[0].data)))
    return out


def _event_ids(history: Any, event_type: int, name: str) -> list[int]:
    """Event ids of ``event_type`` events of activity ``name`` (scheduled or completed)."""
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == name
    }
    if event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        return sorted(scheduled)
    return [
        e.event_id
        for e in history.events
        if e.event_type == event_type and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
    ]


async def test_first_request_carries_the_agent_and_the_workspace_is_prepared_beside_it(harness: Harness) -> None:
    m = marker()
    harness.mock.script_for(
        m,
        Turn.tool_use("write", {"file_path": "a.txt", "content": "one\n"}),
        Turn.tool_use("bash", {"command": "cat a.txt"}),
        Turn.text("read it back"),
    )
    body = session_input(f"{m} go", agent=agent(system="You start fast."))
    handle = await harness.sessions.create(body)
    result = await handle.result()
    assert result.final_message == "read it back"

    history = await handle._handle.fetch_history()
    scheduled = _scheduled(history)
    names = [name for name, *_ in scheduled]
    assert REGISTER not in names, "no separate activity stores the agent"
    models = [(task, inp) for name, task, inp in scheduled if name == MODEL]
    provision_task = next(task for name, task, _ in scheduled if name == PROVISION)
    assert models[0][0] == provision_task, "the workspace is prepared in the same workflow task as the first request"

    # Only the first request carries the definition; its reference is the definition's content hash,
    # and that request stored it.
    ref = models[0][1]["agent_ref"]
    assert models[0][1]["agent"]["system"] == "You start fast."
    assert all(inp["agent"] is None and inp["agent_ref"] == ref for _, inp in models[1:])
    stored = harness.store.get_agent(ref)
    assert stored["system"] == "You start fast."
    assert content_ref(stored) == ref

    # Every request was built from that agent; the first tool ran after the workspace was ready.
    requests = harness.mock.requests_for(m)
    assert len(requests) == 3
    assert all("You start fast." in json.dumps(r.body["system"]) for r in requests)
    provisioned = _event_ids(history, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, PROVISION)
    first_tool = min(_event_ids(history, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, "managed_agents.tool.write"))
    assert provisioned and provisioned[0] < first_tool
    assert (harness.settings.resolved_workspace_root() / result.id / "a.txt").read_text() == "one\n"


async def _final_message(handle: Any, expected: str) -> str | None:
    for _ in range(400):
        message = (await handle.retrieve()).final_message
        if message == expected:
            return message
        await asyncio.sleep(0.05)
    return message


async def test_a_new_worker_reads_the_agent_the_first_request_stored(temporal_env, settings, mock_claude) -> None:
    """The second turn runs on a worker that never saw the definition: it reads it from the store."""
    m = marker()
    mock_claude.script_for(m, Turn.text("first answer"), Turn.text("second answer"))
    body = session_input(f"{m} go", agent=agent(system="Stored once."), options={"keep_alive": True})
    first = Harness(temporal_env.client, settings, mock_claude)
    async with first.worker():
        handle = await first.sessions.create(body)
        assert await _final_message(handle, "first answer") == "first answer"
    second = Harness(temporal_env.client, settings, mock_claude)  # new activities: nothing cached
    async with second.worker():
        await handle.send_message("again")
        assert await _final_message(handle, "second answer") == "second answer"
        await handle._handle.terminate("test over")
    requests = mock_claude.requests_for(m)
    assert len(requests) == 2
    assert all("Stored once." in json.dumps(r.body["system"]) for r in requests)


async def test_a_definition_that_does_not_match_its_reference_is_refused(harness: Harness) -> None:
    activities = ModelActivities(harness.store, harness.client_factory())
    inp = ModelRequestInput(
        session_id="sesn_mismatch",
        agent_ref="0" * 64,
        agent=agent(),
        model="claude-sonnet-4-6",
        max_tokens=100,
        step=1,
        transcript_len=0,
        new_messages=[TranscriptMessage(role="user", content=[{"type": "text", "text": "hi"}])],
        context_window_tokens=100_000,
        max_attempts=1,
    )
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(activities.model_request, inp)
    assert raised.value.type == "AgentDefinitionMismatch" and raised.value.non_retryable
    assert "0" * 64 in raised.value.message


async def test_no_sandbox_worker_fails_the_session_with_a_clear_message(temporal_env, settings, mock_claude) -> None:
    """The model answered, but no sandbox worker ever took the workspace: the session fails, and says why."""
    m = marker()
    mock_claude.script_for(m, Turn.text("answered without tools"))
    brain = Harness(temporal_env.client, settings.model_copy(update={"roles": frozenset({"brain"})}), mock_claude)
    async with brain.worker():
        handle = await brain.sessions.create(session_input(f"{m} go", options={"sandbox_provision_seconds": 1}))
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
        events = await handle.events()  # a closed session's log is read by replaying it on a worker
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "SandboxUnavailable"
    message = cause.message
    assert "no sandbox worker took this session's workspace within 1s" in message, message
    assert [e.type for e in events][-2:] == ["session.error", "session.status_terminated"]
    assert events[-2].model_extra["error"]["message"] == message
    answers = [e.model_extra["content"][0]["text"] for e in events if e.type == "agent.message"]
    assert answers == ["answered without tools"]
