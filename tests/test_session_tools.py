"""Multi-turn sessions with every built-in tool, permissions, custom tools, interrupts."""

from __future__ import annotations

import asyncio

from managed_agents.testing.mock_claude import Fault, Turn
from tests.helpers import agent, marker, session_input, types


async def wait_for(handle, predicate, timeout: float = 20.0):
    """Poll the event log until predicate(events) is truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = await handle.events()
        found = predicate(events)
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out; events so far: {types(events)}")
        await asyncio.sleep(0.1)


def idle_with(reason: str, nth: int = 1):
    def check(events):
        idles = [
            e for e in events if e.type == "session.status_idle" and e.model_extra["stop_reason"]["type"] == reason
        ]
        return idles[nth - 1] if len(idles) >= nth else None

    return check


async def test_every_builtin_tool_over_two_turns(harness) -> None:
    m = marker()
    harness.mock.script_for(
        m,
        Turn.tool_use("write", {"file_path": "src/app.py", "content": "print('hello')\n"}),
        Turn.tool_use("edit", {"file_path": "src/app.py", "old_string": "hello", "new_string": "world"}),
        Turn.tool_use("read", {"file_path": "src/app.py"}),
        Turn.tool_uses([("glob", {"pattern": "**/*.py"}), ("grep", {"pattern": "world"})]),
        Turn.tool_use("bash", {"command": "python3 src/app.py"}),
        Turn.text("It prints world."),
        Turn.tool_use("bash", {"command": "ls src"}),
        Turn.text("Second turn done."),
    )
    body = session_input(f"{m} build it", options={"keep_alive": True, "heartbeat_timeout_seconds": 5})
    handle = await harness.sessions.create(body)
    await wait_for(handle, idle_with("end_turn"))
    await handle.send_message("now list the files")
    await wait_for(handle, idle_with("end_turn", 2))
    events = await handle.events()
    uses = {e.id: e for e in events if e.type == "agent.tool_use"}
    assert [u.model_extra["name"] for u in uses.values()] == ["write", "edit", "read", "glob", "grep", "bash", "bash"]
    results = {e.model_extra["tool_use_id"]: e for e in events if e.type == "agent.tool_result"}
    assert set(results) == set(uses), "every tool call has exactly one result"
    texts = {
        uses[k].model_extra["name"] + str(i): r.model_extra["content"][0]["text"]
        for i, (k, r) in enumerate(results.items())
    }
    assert not any(r.model_extra["is_error"] for r in results.values()), texts
    by_name = [(uses[k].model_extra["name"], r.model_extra["content"][0]["text"]) for k, r in results.items()]
    assert ("read", "print('world')\n") in by_name
    assert any(n == "glob" and "src/app.py" in t for n, t in by_name)
    assert any(n == "grep" and "src/app.py:1:" in t for n, t in by_name)
    assert any(n == "bash" and t.strip() == "world" for n, t in by_name)
    # The second turn's first request carries the whole first turn: one conversation.
    second_turn = next(
        r
        for r in harness.mock.requests_for(m)
        if any(
            b.get("text") == "now list the files"
            for msg in r.body["messages"]
            for b in msg["content"]
            if isinstance(b, dict)
        )
    )
    assert len(second_turn.body["messages"]) == 13
    session = await handle.retrieve()
    assert session.status == "idle" and session.final_message == "Second turn done."
    assert session.usage.cache_read_input_tokens > 0 and session.usage.output_tokens > 0
    # Prompt caching: each step reads the previous step's prefix from the cache.
    ends = [e.model_extra["model_usage"] for e in events if e.type == "span.model_request_end"]
    assert all(u["cache_read_input_tokens"] > 0 for u in ends[1:])
    await handle.interrupt()


async def test_always_ask_allowed_and_denied(harness) -> None:
    m = marker()
    ask = agent(
        tools=[
            {
                "type": "agent_toolset_20260401",
                "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}],
            }
        ]
    )
    harness.mock.script_for(
        m,
        Turn.tool_use("bash", {"command": "echo allowed > proof.txt && cat proof.txt"}),
        Turn.tool_use("bash", {"command": "rm -rf /tmp/important"}),
        Turn.text("Understood."),
    )
    handle = await harness.sessions.create(session_input(f"{m} go", agent=ask))
    idle = await wait_for(handle, idle_with("requires_action"))
    [first] = idle.model_extra["stop_reason"]["event_ids"]
    session = await handle.retrieve()
    assert session.status == "idle"
    await handle.confirm(first, allow=True)
    idle2 = await wait_for(handle, idle_with("requires_action", 2))
    [second] = idle2.model_extra["stop_reason"]["event_ids"]
    await handle.confirm(second, allow=False, deny_message="too dangerous")
    result = await handle.result()
    assert result.final_message == "Understood."
    events = await handle.events()
    results = {e.model_extra["tool_use_id"]: e.model_extra for e in events if e.type == "agent.tool_result"}
    assert results[first]["content"][0]["text"].strip() == "allowed"
    assert results[second]["is_error"] and "too dangerous" in results[second]["content"][0]["text"]
    uses = [e.model_extra for e in events if e.type == "agent.tool_use"]
    assert all(u["evaluated_permission"] == "ask" and u["evaluation"] == {"type": "always_ask"} for u in uses)
    # Claude saw the denial as an error tool result.
    last_request = harness.mock.requests_for(m)[-1].body["messages"][-1]["content"][0]
    assert last_request["type"] == "tool_result" and last_request["is_error"] is True


async def test_custom_tool_round_trip(harness) -> None:
    m = marker()
    weather = {
        "type": "custom",
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    harness.mock.script_for(m, Turn.tool_use("get_weather", {"city": "Paris"}), Turn.text("It is sunny in Paris."))
    handle = await harness.sessions.create(session_input(f"{m} weather?", agent=agent(tools=[weather])))
    idle = await wait_for(handle, idle_with("requires_action"))
    [use_id] = idle.model_extra["stop_reason"]["event_ids"]
    events = await handle.events()
    custom = [e for e in events if e.type == "agent.custom_tool_use"]
    assert custom[0].id == use_id and custom[0].model_extra["input"] == {"city": "Paris"}
    await handle.custom_tool_result(use_id, "sunny, 24C")
    result = await handle.result()
    assert result.final_message == "It is sunny in Paris."
    tool_defs = harness.mock.requests_for(m)[0].body["tools"]
    assert [t["name"] for t in tool_defs] == ["get_weather"]
    sent = harness.mock.requests_for(m)[-1].body["messages"][-1]["content"][0]
    assert sent["content"][0]["text"] == "sunny, 24C"


async def test_interrupt_mid_turn_then_continue(harness) -> None:
    m = marker()
    harness.mock.script_for(
        m,
        Turn.tool_use("bash", {"command": "echo step1"}),
        Fault.slow(30, then=Turn.text("too late")),
        Turn.text("Resumed after the interrupt."),
    )
    body = session_input(f"{m} long job", options={"keep_alive": True, "heartbeat_timeout_seconds": 5})
    handle = await harness.sessions.create(body)
    await wait_for(handle, lambda ev: len([e for e in ev if e.type == "span.model_request_start"]) >= 2)
    started = asyncio.get_running_loop().time()
    await handle.interrupt()
    await wait_for(handle, idle_with("end_turn"))
    assert asyncio.get_running_loop().time() - started < 10, "interrupt cancels the in-flight model request"
    await handle.send_message("carry on")
    await wait_for(handle, idle_with("end_turn", 2))
    session = await handle.retrieve()
    assert session.final_message == "Resumed after the interrupt."
    # The mock validates the transcript: the follow-up request was well formed, and it holds the
    # interrupted step's tool result followed by the new text.
    last = harness.mock.requests_for(m)[-1].body["messages"]
    assert last[-1]["content"][-1]["text"] == "carry on"
    await handle.interrupt()


async def test_second_message_while_running_joins_the_turn(harness) -> None:
    m = marker()
    harness.mock.script_for(
        m,
        Fault.slow(1.5, then=Turn.tool_use("bash", {"command": "echo working"})),
        Turn.text("Done, and I saw your note."),
    )
    handle = await harness.sessions.create(session_input(f"{m} start"))
    await wait_for(handle, lambda ev: any(e.type == "span.model_request_start" for e in ev))
    await handle.send_message("also: be brief")
    result = await handle.result()
    assert result.final_message == "Done, and I saw your note."
    content = harness.mock.requests_for(m)[-1].body["messages"][-1]["content"]
    assert content[0]["type"] == "tool_result" and content[-1]["text"] == "also: be brief"


async def test_path_escapes_are_refused_as_tool_errors(harness) -> None:
    m = marker()
    harness.mock.script_for(
        m,
        Turn.tool_uses(
            [
                ("read", {"file_path": "../../../../etc/passwd"}),
                ("read", {"file_path": "/etc/passwd"}),
                ("write", {"file_path": "../outside.txt", "content": "x"}),
            ]
        ),
        Turn.tool_use("bash", {"command": "ln -s / escape"}),
        Turn.tool_use("read", {"file_path": "escape/etc/passwd"}),
        Turn.text("I could not escape."),
    )
    handle = await harness.sessions.create(session_input(f"{m} try to escape"))
    result = await handle.result()
    assert result.final_message == "I could not escape."
    events = await handle.events()
    results = [e.model_extra for e in events if e.type == "agent.tool_result"]
    escapes = [r for r in results if r["is_error"]]
    assert len(escapes) == 4
    assert all("escapes the workspace" in r["content"][0]["text"] for r in escapes)
    assert not (harness.settings.resolved_workspace_root() / "outside.txt").exists()


async def test_disabled_tool_is_refused(harness) -> None:
    m = marker()
    no_bash = agent(tools=[{"type": "agent_toolset_20260401", "configs": [{"name": "bash", "enabled": False}]}])
    harness.mock.script_for(m, Turn.tool_use("bash", {"command": "id"}), Turn.text("ok"))
    handle = await harness.sessions.create(session_input(f"{m} x", agent=no_bash))
    await handle.result()
    assert "bash" not in [t["name"] for t in harness.mock.requests_for(m)[0].body["tools"]]
    events = await handle.events()
    use = next(e for e in events if e.type == "agent.tool_use")
    assert use.model_extra["evaluated_permission"] == "deny"
    res = next(e for e in events if e.type == "agent.tool_result")
    assert res.model_extra["is_error"] and "not available" in res.model_extra["content"][0]["text"]
