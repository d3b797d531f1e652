"""Long sessions: continue-as-new in the middle of a turn, nothing lost or duplicated, and history
that grows with each step's new content rather than with the conversation.

The test dev server suggests continue-as-new after 400 history events (see conftest), so a turn
of 45 tool steps crosses at least one run boundary.
"""

from __future__ import annotations

import json

from temporalio.api.enums.v1 import EventType

from managed_agents.testing.mock_claude import Turn
from tests.helpers import marker, session_input

STEPS = 45


async def test_continue_as_new_mid_turn_loses_nothing(harness) -> None:
    m = marker()
    harness.mock.script_for(
        m, *[Turn.tool_use("bash", {"command": f"echo step {i}"}) for i in range(STEPS)], Turn.text("all steps done")
    )
    handle = await harness.sessions.create(session_input(f"{m} grind"))
    result = await handle.result()
    assert result.final_message == "all steps done"

    first_page = await handle.events_page()
    assert first_page.first_seq > 0 and first_page.previous_run_id, "the session continued as new"
    events = await handle.events()
    assert [e.seq for e in events] == list(range(len(events))), "one gap-free log across runs"
    assert len({e.id for e in events}) == len(events)
    outputs = [e.model_extra["content"][0]["text"] for e in events if e.type == "agent.tool_result"]
    assert outputs == [f"step {i}\n" for i in range(STEPS)]
    assert [e.type for e in events].count("session.status_running") == 1, "one turn, uninterrupted"
    # Every request the model saw was a valid, growing transcript (the mock rejects broken ones).
    requests = harness.mock.requests_for(m)
    assert [len(r.body["messages"]) for r in requests] == [1 + 2 * i for i in range(STEPS + 1)]
    assert result.event_count == len(events)


async def test_model_activity_input_does_not_carry_the_transcript(harness) -> None:
    m = marker()
    big = "y" * 20_000
    harness.mock.script_for(
        m, *[Turn.tool_use("bash", {"command": f"printf '{big}' # {i}"}) for i in range(6)], Turn.text("done")
    )
    handle = await harness.sessions.create(session_input(f"{m} big outputs"))
    await handle.result()
    history = await handle._handle.fetch_history()
    inputs = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "managed_agents.model_request"
    ]
    sizes = [sum(len(p.data) for p in a.input.payloads) for a in inputs]
    assert len(sizes) == 7
    # Constant-size inputs: references and new items only, never the 20 KB tool outputs.
    assert max(sizes) < 2_000, sizes
    assert max(sizes) - min(sizes) < 300, sizes
    payload = json.loads(inputs[-1].input.payloads[0].data)
    assert payload["new_messages"][0]["content"][0]["type"] == "tool_result_ref"


async def test_old_tool_results_are_cleared_when_the_context_window_fills(harness) -> None:
    m = marker()
    harness.mock.script_for(
        m,
        *[Turn.tool_use("bash", {"command": f"python3 -c \"print('{c}' * 8000, end='')\""}) for c in "abcdef"],
        Turn.text("ok"),
    )
    handle = await harness.sessions.create(session_input(f"{m} fill", options={"context_window_tokens": 5000}))
    await handle.result()
    events = await handle.events()
    assert any(e.type == "agent.thread_context_compacted" for e in events)
    last = harness.mock.requests_for(m)[-1].body["messages"]
    results = [b for msg in last for b in msg["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
    assert "cleared" in results[0]["content"][0]["text"], "the oldest result was cleared"
    assert results[-1]["content"][0]["text"] == "f" * 8000, "the newest result is intact"
    sizes = [len(json.dumps(r.body)) for r in harness.mock.requests_for(m)]
    assert max(sizes) < 5000 * 4 * 1.5, "requests stay near the window"
