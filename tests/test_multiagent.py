"""Multiagent orchestration: a coordinator fans work out to specialist threads."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError

from managed_agents.testing.mock_claude import Fault, Turn
from tests.helpers import marker, session_input


def specialist(name: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "model": "claude-sonnet-4-6",
        "description": f"the {name}",
        "system": f"You are the {name}.",
        "tools": [{"type": "agent_toolset_20260401"}],
    }
    body.update(overrides)
    return body


def coordinator_input(m: str, roster: list[dict[str, Any]], text: str = "coordinate", **options: Any) -> dict:
    body = session_input(f"{m} {text}")
    body["agent"] = {
        "name": "lead",
        "model": "claude-sonnet-4-6",
        "system": "You coordinate specialists.",
        "tools": [{"type": "agent_toolset_20260401"}],
        "multiagent": {"type": "coordinator", "agents": roster},
    }
    body["options"].update(options)
    return body


def create(agent: str, task: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("create_agent", {"agent": agent, "task": task, **extra})


async def wait_until(predicate, timeout: float = 30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


def tool_result_texts(request) -> list[str]:
    blocks = request.body["messages"][-1]["content"]
    return [b["content"][0]["text"] for b in blocks if b.get("type") == "tool_result"]


async def test_fan_out_to_three_specialists_in_parallel_and_merge(harness) -> None:
    m = marker()
    tasks = {name: f"{marker()} part for {name}" for name in ("alpha", "beta", "gamma")}
    harness.mock.script_for(
        m,
        Turn.tool_uses([create(name, task) for name, task in tasks.items()]),
        Turn.tool_use("wait_for_agents", {}),
        Turn.text("merged all three"),
    )
    for name, task in tasks.items():
        harness.mock.script_for(
            task,
            Fault.slow(1.0, then=Turn.tool_use("write", {"file_path": f"{name}.txt", "content": name})),
            Turn.text(f"{name} done"),
        )
    roster = [specialist(n) for n in tasks]
    handle = await harness.sessions.create(coordinator_input(m, roster))
    result = await handle.result()
    assert result.final_message == "merged all three"
    # In parallel: every specialist had asked the model before the first answer (1 s away) came back.
    firsts = [harness.mock.requests_for(task)[0].received_at for task in tasks.values()]
    assert max(firsts) - min(firsts) < 1.0, "a specialist only started after another one had finished"
    # The specialists' results came back into the coordinator's context through wait_for_agents.
    merged = tool_result_texts(harness.mock.requests_for(m)[2])
    assert len(merged) == 1 and all(f"{n} done" in merged[0] for n in tasks)
    events = await handle.events()
    kinds = [e.type for e in events]
    assert kinds.count("session.thread_created") == 3
    assert kinds.count("session.thread_status_idle") == 3
    assert kinds.count("agent.thread_message_sent") == 3 and kinds.count("agent.thread_message_received") == 3
    workspace = harness.settings.resolved_workspace_root() / handle.id
    assert sorted(p.name for p in workspace.glob("*.txt")) == ["alpha.txt", "beta.txt", "gamma.txt"], (
        "one shared workspace"
    )
    # Each thread's own event log is readable; usage is reported per thread and in total.
    threads = result.threads
    assert {t["agent_name"] for t in threads} == set(tasks) and all(t["status"] == "terminated" for t in threads)
    thread_events = await harness.sessions.get(threads[0]["workflow_id"]).events()
    assert next(e.type for e in thread_events) == "user.message"
    total_out = result.usage.output_tokens
    assert total_out > sum(t["usage"]["output_tokens"] for t in threads) > 0


async def test_follow_up_to_an_idle_thread_keeps_its_history(harness) -> None:
    m, task = marker(), f"{marker()} count files"
    harness.mock.script_for(
        m,
        Turn.tool_use(*create("counter", task)),
        Turn.tool_use("wait_for_agents", {}),
        Turn.tool_use("send_to_agent", {"thread_id": "PLACEHOLDER", "message": "now double it"}),
        Turn.tool_use("wait_for_agents", {}),
        Turn.text("done"),
    )
    # The thread's first answer takes a while, so the coordinator is still waiting for it when the
    # test reads the new thread's id (it can run through its whole script in well under a second).
    harness.mock.script_for(task, Fault.slow(1.5, Turn.text("there are 3")), Turn.text("doubled: 6"))
    # The coordinator learns the thread id from create_agent's result; patch it into the script.
    send_turn = next(t for t in harness.mock._keyed[m] if t.content[0].get("name") == "send_to_agent")
    handle = await harness.sessions.create(coordinator_input(m, [specialist("counter")]))

    async def thread_id() -> str | None:
        session = await handle.retrieve()
        return session.threads[0]["id"] if session.threads else None

    tid = await wait_until(thread_id)
    send_turn.content[0]["input"]["thread_id"] = tid
    result = await handle.result()
    assert result.final_message == "done"
    second = harness.mock.requests_for(task)[1].body["messages"]
    assert [b["text"] for b in second[1]["content"]] == ["there are 3"], "the thread kept its first exchange"
    assert second[-1]["content"][-1]["text"] == "now double it"
    assert "doubled: 6" in tool_result_texts(harness.mock.requests_for(m)[4])[0]


async def test_thirty_threads_run_at_most_25_at_a_time_and_all_finish(harness) -> None:
    m = marker()
    tasks = [f"{marker()} job {i}" for i in range(30)]
    harness.mock.script_for(
        m,
        Turn.tool_uses([create("worker", t) for t in tasks]),
        Turn.tool_use("wait_for_agents", {}),
        Turn.text("all thirty done"),
    )
    for i, task in enumerate(tasks):
        harness.mock.script_for(task, Fault.slow(0.5, then=Turn.text(f"job {i} ok")))
    handle = await harness.sessions.create(coordinator_input(m, [specialist("worker")]))
    result = await asyncio.wait_for(handle.result(), 120)
    assert result.final_message == "all thirty done"
    events = await handle.events()
    running: set[str] = set()
    peak = 0
    for e in events:
        if e.type == "session.thread_status_running":
            running.add(e.model_extra["session_thread_id"])
            peak = max(peak, len(running))
        elif e.type == "session.thread_status_idle":
            running.discard(e.model_extra["session_thread_id"])
    assert peak <= 25
    assert [e.type for e in events].count("session.thread_status_idle") == 30
    # Every result reached the coordinator exactly once: in wait_for_agents' result, or (for a
    # thread that finished before the coordinator asked) with its next request.
    last = harness.mock.requests_for(m)[-1].body["messages"]
    seen = json.dumps(last[2:])
    assert all(seen.count(f"job {i} ok") == 1 for i in range(30))
    queued = [r for r in tool_result_texts(harness.mock.requests_for(m)[1]) if "queued" in r]
    assert len(queued) == 5, "the 5 over the limit were queued, not dropped"


async def test_depth_two_roster_is_rejected(harness) -> None:
    m = marker()
    nested = specialist("sub", multiagent={"type": "coordinator", "agents": [{"type": "self"}]})
    handle = await harness.client.start_workflow(
        "AgentSession",
        coordinator_input(m, [nested]),
        id=f"sesn_depth_{m[6:16]}",
        task_queue=harness.settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert "one level of delegation only" in str(info.value.cause)


async def test_specialist_always_ask_is_confirmed_through_the_coordinator(harness) -> None:
    m, task = marker(), f"{marker()} clean up"
    harness.mock.script_for(
        m, Turn.tool_use(*create("janitor", task)), Turn.tool_use("wait_for_agents", {}), Turn.text("cleaned")
    )
    harness.mock.script_for(task, Turn.tool_use("bash", {"command": "echo swept"}), Turn.text("swept the floor"))
    careful = specialist(
        "janitor",
        tools=[
            {
                "type": "agent_toolset_20260401",
                "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}],
            }
        ],
    )
    handle = await harness.sessions.create(coordinator_input(m, [careful]))

    async def cross_posted():
        events = await handle.events()
        return next((e for e in events if e.type == "agent.tool_use" and e.model_extra.get("session_thread_id")), None)

    ask = await wait_until(cross_posted)
    assert ask.model_extra["name"] == "bash" and ask.model_extra["evaluated_permission"] == "ask"
    [echo] = await handle.confirm(ask.id, allow=True)
    assert echo["session_thread_id"] == ask.model_extra["session_thread_id"]
    result = await handle.result()
    assert result.final_message == "cleaned"
    assert "swept the floor" in tool_result_texts(harness.mock.requests_for(m)[2])[0]
    thread_log = await harness.sessions.get(result.threads[0]["workflow_id"]).events()
    [tool_result] = [e.model_extra for e in thread_log if e.type == "agent.tool_result"]
    assert tool_result["content"][0]["text"].strip() == "swept"


async def test_interrupt_one_thread(harness) -> None:
    m, slow_task, fast_task = marker(), f"{marker()} slow", f"{marker()} fast"
    harness.mock.script_for(
        m,
        Turn.tool_uses([create("worker", slow_task), create("worker", fast_task)]),
        Turn.tool_use("wait_for_agents", {}),
        Turn.text("one was interrupted"),
    )
    harness.mock.script_for(slow_task, Fault.slow(60, then=Turn.text("never")))
    harness.mock.script_for(fast_task, Fault.slow(1.5, then=Turn.text("fast done")))
    handle = await harness.sessions.create(coordinator_input(m, [specialist("worker")]))

    await wait_until(lambda: _requests(harness, slow_task))
    session = await handle.retrieve()
    slow_id = session.threads[0]["id"]  # created first, from slow_task
    started = time.monotonic()
    await handle.send({"type": "user.interrupt", "session_thread_id": slow_id})
    result = await asyncio.wait_for(handle.result(), 20)
    assert time.monotonic() - started < 10
    assert result.final_message == "one was interrupted"
    merged = tool_result_texts(harness.mock.requests_for(m)[2])[0]
    assert "fast done" in merged and "never" not in merged


async def test_shared_budget_reached_across_threads(harness) -> None:
    m = marker()
    tasks = [f"{marker()} spend {i}" for i in range(2)]
    harness.mock.script_for(
        m, Turn.tool_uses([create("spender", t) for t in tasks]), Turn.tool_use("wait_for_agents", {}), Turn.text("x")
    )
    big = "y" * 40_000  # ~10k output tokens, ~15 cents each at $15/MTok
    for t in tasks:
        harness.mock.script_for(
            t,
            Turn(
                content=[
                    {"type": "text", "text": big},
                    {"type": "tool_use", "id": f"toolu_{t[7:15]}", "name": "bash", "input": {"command": "sleep 1"}},
                ]
            ),
            Turn.text("should not be requested"),
        )
    body = coordinator_input(m, [specialist("spender")])
    body["budget"] = {"type": "limit", "max_list_cost": {"amount": "20", "currency": "USD"}}
    handle = await harness.sessions.create(body)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.stop_reason.type == "budget_reached"
    assert int(result.usage.list_cost.amount) >= 20
    for t in tasks:
        assert len(harness.mock.requests_for(t)) == 1, "no thread asked the model again once the budget was spent"
    per_thread = [int(t["usage"]["list_cost"]["amount"]) for t in result.threads]
    assert all(c > 0 for c in per_thread)


async def test_two_threads_editing_one_file_do_not_clobber(harness) -> None:
    m, a_task, b_task = marker(), f"{marker()} A", f"{marker()} B"
    harness.mock.script_for(
        m,
        Turn.tool_use("write", {"file_path": "shared.txt", "content": "base\n"}),
        Turn.tool_use(*create("editor", a_task)),
        Turn.tool_use("wait_for_agents", {}),
        Turn.tool_use(*create("editor", b_task)),
        Turn.tool_use("wait_for_agents", {}),
        Turn.tool_use("send_to_agent", {"thread_id": "PLACEHOLDER", "message": "now add your line"}),
        Turn.tool_use("wait_for_agents", {}),
        Turn.text("both edits are in"),
    )
    harness.mock.script_for(
        a_task,
        Turn.tool_use("read", {"file_path": "shared.txt"}),
        Turn.text("A has read it"),
        # follow-up: A's view is stale after B's edit
        Turn.tool_use("edit", {"file_path": "shared.txt", "old_string": "base\n", "new_string": "base\nA\n"}),
        Turn.tool_use("read", {"file_path": "shared.txt"}),
        Turn.tool_use("edit", {"file_path": "shared.txt", "old_string": "B\n", "new_string": "B\nA\n"}),
        Turn.text("A added its line"),
    )
    harness.mock.script_for(
        b_task,
        Turn.tool_use("write", {"file_path": "shared.txt", "content": "B only\n"}),  # never read: refused
        Turn.tool_use("read", {"file_path": "shared.txt"}),
        Turn.tool_use("edit", {"file_path": "shared.txt", "old_string": "base\n", "new_string": "base\nB\n"}),
        Turn.text("B added its line"),
    )
    send_turn = next(t for t in harness.mock._keyed[m] if t.content[0].get("name") == "send_to_agent")
    handle = await harness.sessions.create(coordinator_input(m, [specialist("editor")]))

    async def first_thread() -> str | None:
        session = await handle.retrieve()
        return session.threads[0]["id"] if session.threads else None

    send_turn.content[0]["input"]["thread_id"] = await wait_until(first_thread)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.final_message == "both edits are in"
    workspace = harness.settings.resolved_workspace_root() / handle.id
    assert (workspace / "shared.txt").read_text() == "base\nB\nA\n"
    logs = {t["agent_name"] + t["id"]: await harness.sessions.get(t["workflow_id"]).events() for t in result.threads}
    errors = [
        e.model_extra["content"][0]["text"]
        for log in logs.values()
        for e in log
        if e.type == "agent.tool_result" and e.model_extra["is_error"]
    ]
    assert any("have not read it" in e for e in errors)
    assert any("changed since you last read" in e for e in errors)


async def test_outcome_on_a_coordinator_and_a_graded_specialist(harness) -> None:
    from tests.test_outcomes import PASS

    m, task = marker(), f"{marker()} write report.md"
    harness.mock.script_for(
        m,
        Turn.tool_use(*create("writer", task, rubric="report.md mentions 42")),
        Turn.tool_use("wait_for_agents", {}),
        Turn.text("the writer's report passed"),
        PASS,  # the coordinator's own outcome
    )
    harness.mock.script_for(
        task,
        Turn.tool_use("write", {"file_path": "report.md", "content": "42"}),
        Turn.text("wrote it"),
        PASS,  # the specialist's grader
    )
    body = coordinator_input(m, [specialist("writer")])
    body["initial_events"] = [
        {
            "type": "user.define_outcome",
            "description": f"{m} get a report written",
            "rubric": {"type": "text", "content": "a report exists"},
        }
    ]
    handle = await harness.sessions.create(body)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome_evaluations[0]["result"] == "satisfied"
    [thread] = result.threads
    assert thread["outcome"]["result"] == "satisfied"
    assert "outcome: satisfied" in tool_result_texts(harness.mock.requests_for(m)[2])[0]


async def _requests(harness, key: str) -> bool:
    return len(harness.mock.requests_for(key)) >= 1
