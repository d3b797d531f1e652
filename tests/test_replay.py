"""Replay: recorded histories must replay against today's workflow code (determinism guard).

``tests/histories/*.json`` were recorded from real runs (tools, a confirmation, a retried model
fault, a custom tool), one per workflow version that sessions may still be running on: the first
recording, and one after each patch that changed what a session schedules. A change to the workflow
that would break running sessions fails here. Record today's version deliberately with
``RECORD_HISTORIES=1 pytest tests/test_replay.py`` (it writes ``RECORDED``; keep the older files).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from managed_agents import ManagedAgentsPlugin, ManagedAgentsSettings
from managed_agents.testing.mock_claude import Fault, Turn
from tests.helpers import agent, marker, session_input

HISTORIES = Path(__file__).parent / "histories"
#: Today's recording (the package as a plugin: its workers, heartbeat timeouts on every activity,
#: names from one module; fast start, batched bookkeeping, pipelined model requests: the request
#: after ``echo hi`` is scheduled with it and retried after a 529); older ones stay, so sessions
#: started on them still replay.
RECORDED = HISTORIES / "session_tools_confirm_retry.plugin-v1.json"
#: Event ids derive from the session (workflow) id, so the recording uses a fixed one.
RECORDED_ID = "sesn_replay_fixture_tools_confirm_retry"


def replayer() -> Replayer:
    """What a team's replay test does: the plugin registers the workflows, converter and sandbox."""
    return Replayer(workflows=[], plugins=[ManagedAgentsPlugin(ManagedAgentsSettings())])


async def record_session(harness) -> WorkflowHistory:
    m = marker()
    ask = agent(
        tools=[
            {
                "type": "agent_toolset_20260401",
                "configs": [{"name": "write", "permission_policy": {"type": "always_ask"}}],
            },
            {"type": "custom", "name": "lookup", "description": "Look up a fact", "input_schema": {"type": "object"}},
        ]
    )
    harness.mock.script_for(
        m,
        Turn.tool_use("bash", {"command": "echo hi"}),
        Fault.overloaded(),
        Turn.tool_use("write", {"file_path": "notes.md", "content": "# notes\n"}),
        Turn.tool_use("lookup", {"q": "x"}),
        Turn.tool_uses([("read", {"file_path": "notes.md"}), ("glob", {"pattern": "*"})]),
        Turn.text("recorded"),
    )
    handle = await harness.sessions.create(session_input(f"{m} record", agent=ask), session_id=RECORDED_ID)
    answered: set[str] = set()
    for _ in range(300):
        session = await handle.retrieve()
        if session.stop_reason and session.stop_reason.type == "requires_action":
            [pending] = session.stop_reason.event_ids
            if pending in answered:
                await asyncio.sleep(0.05)
                continue
            answered.add(pending)
            events = await handle.events()
            kind = next(e.type for e in events if e.id == pending)
            if kind == "agent.tool_use":
                await handle.confirm(pending, allow=True)
            else:
                await handle.custom_tool_result(pending, "forty-two")
        if session.status == "terminated":
            break
        await asyncio.sleep(0.05)
    assert (await handle.result()).final_message == "recorded"
    return await handle._handle.fetch_history()


async def test_fresh_history_replays(harness) -> None:
    history = await record_session(harness)
    if os.environ.get("RECORD_HISTORIES"):
        HISTORIES.mkdir(exist_ok=True)
        RECORDED.write_text(history.to_json())
    await replayer().replay_workflow(history)


def test_todays_version_is_recorded() -> None:
    if not RECORDED.exists():
        pytest.fail(f"{RECORDED} is missing: record it with RECORD_HISTORIES=1 pytest tests/test_replay.py")


@pytest.mark.parametrize("recorded", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.name)
async def test_committed_history_replays(recorded: Path) -> None:
    history = WorkflowHistory.from_json(RECORDED_ID, recorded.read_text())
    await replayer().replay_workflow(history)
