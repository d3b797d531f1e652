from __future__ import annotations

from managed_agents.testing.mock_claude import Turn
from tests.helpers import marker, session_input, types


async def test_text_only_session_completes(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Turn.text("Hello there."))
    handle = await harness.sessions.create(session_input(f"{m} say hello"))
    result = await handle.result()
    assert result.status == "terminated"
    assert result.final_message == "Hello there."
    assert result.stop_reason is not None and result.stop_reason.type == "end_turn"
    events = await handle.events()
    assert types(events)[0] == "user.message"
    assert "agent.message" in types(events)
    assert types(events)[-2:] == ["session.status_idle", "session.status_terminated"]


async def test_tool_session(harness) -> None:
    m = marker()
    harness.mock.script_for(
        m,
        Turn.tool_use("write", {"file_path": "hello.txt", "content": "hi\n"}),
        Turn.tool_use("bash", {"command": "cat hello.txt"}),
        Turn.text("The file says hi."),
    )
    handle = await harness.sessions.create(session_input(f"{m} write a file"))
    result = await handle.result()
    assert result.final_message == "The file says hi."
    events = await handle.events()
    results = [e for e in events if e.type == "agent.tool_result"]
    assert len(results) == 2
    assert results[1].model_extra["content"][0]["text"].strip() == "hi"
