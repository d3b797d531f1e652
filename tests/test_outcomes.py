"""Outcomes: rubric-graded revision loops with a grader in its own context."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError

from managed_agents.testing.mock_claude import Fault, Turn
from tests.helpers import marker, session_input

RUBRIC = "1. report.md exists\n2. report.md mentions the number 42"


def grade(verdict: str, *criteria: tuple[str, bool], explanation: str = "see criteria") -> Turn:
    """A grader answer: its forced submit_grade tool call."""
    body: dict[str, Any] = {
        "criteria": [{"criterion": c, "passed": p, "reason": "checked the file"} for c, p in criteria],
        "verdict": verdict,
        "explanation": explanation,
    }
    return Turn.tool_use("submit_grade", body)


PASS = grade("satisfied", ("report.md exists", True), ("mentions 42", True), explanation="all good")
HALF = grade("needs_revision", ("report.md exists", True), ("mentions 42", False), explanation="add the number 42")
NONE = grade("needs_revision", ("report.md exists", False), ("mentions 42", False), explanation="write report.md")


def work(content: str) -> list[Turn]:
    """One pass of agent work: write report.md, then summarise."""
    return [Turn.tool_use("write", {"file_path": "report.md", "content": content}), Turn.text(f"wrote: {content}")]


def outcome_input(m: str, *, max_iterations: int | None = 3, rubric: dict | None = None, **options: Any) -> dict:
    event: dict[str, Any] = {
        "type": "user.define_outcome",
        "description": f"{m} Write report.md with the answer",
        "rubric": rubric or {"type": "text", "content": RUBRIC},
    }
    if max_iterations is not None:
        event["max_iterations"] = max_iterations
    body = session_input("unused")
    body["initial_events"] = [event]
    body["options"].update(options)
    return body


def grader_requests(harness, m: str):
    return [r for r in harness.mock.requests_for(m) if r.body.get("tool_choice", {}).get("name") == "submit_grade"]


def ends(events):
    return [e.model_extra for e in events if e.type == "span.outcome_evaluation_end"]


async def test_converges_at_first_evaluation(harness) -> None:
    m = marker()
    harness.mock.script_for(m, *work("the answer is 42"), PASS)
    handle = await harness.sessions.create(outcome_input(m))
    result = await handle.result()
    [evaluation] = result.outcome_evaluations
    assert evaluation["result"] == "satisfied" and evaluation["iteration"] == 0
    assert evaluation["completed_at"] and evaluation["explanation"] == "all good"
    events = await handle.events()
    kinds = [e.type for e in events]
    assert kinds[0] == "user.define_outcome" and events[0].model_extra["outcome_id"].startswith("outc_")
    assert kinds.index("span.outcome_evaluation_start") < kinds.index("span.outcome_evaluation_end")
    [end] = ends(events)
    start = next(e for e in events if e.type == "span.outcome_evaluation_start")
    assert end["outcome_evaluation_start_id"] == start.id and end["result"] == "satisfied"
    assert end["usage"]["output_tokens"] > 0
    assert result.stop_reason.type == "end_turn" and result.status == "terminated"
    # The agent was briefed with the description and rubric, no user.message needed.
    first = harness.mock.requests_for(m)[0].body["messages"][0]["content"][0]["text"]
    assert "Write report.md with the answer" in first and "mentions the number 42" in first


async def test_converges_after_revisions_with_feedback(harness) -> None:
    m = marker()
    harness.mock.script_for(m, *work("no answer yet"), NONE, *work("still no number"), HALF, *work("it is 42"), PASS)
    handle = await harness.sessions.create(outcome_input(m, max_iterations=5))
    result = await handle.result()
    [evaluation] = result.outcome_evaluations
    assert evaluation["result"] == "satisfied" and evaluation["iteration"] == 2
    assert [r["verdict"] for r in evaluation["iterations"]] == ["needs_revision", "needs_revision", "satisfied"]
    assert [e["result"] for e in ends(await handle.events())] == ["needs_revision", "needs_revision", "satisfied"]
    # The grader's feedback came back to the agent as its next turn's input.
    agent_requests = [r for r in harness.mock.requests_for(m) if "tool_choice" not in r.body]
    feedback = agent_requests[4].body["messages"][-1]["content"][-1]["text"]
    assert "add the number 42" in feedback and "mentions 42" in feedback


async def test_never_converges_reports_best_iteration_and_keeps_it(harness) -> None:
    m = marker()
    harness.mock.script_for(
        m,
        *work("attempt one"),
        NONE,
        *work("attempt two"),
        HALF,
        *work("attempt three"),
        NONE,
        Turn.text("I stop here."),
    )
    handle = await harness.sessions.create(outcome_input(m, max_iterations=3))
    result = await handle.result()
    [evaluation] = result.outcome_evaluations
    assert evaluation["result"] == "max_iterations_reached"
    assert evaluation["best_iteration"] == 1 and evaluation["best_score"] == 0.5
    events = await handle.events()
    assert [e["result"] for e in ends(events)] == ["needs_revision", "needs_revision", "max_iterations_reached"]
    assert ends(events)[-1]["best_iteration"] == 1
    # One final acknowledgment turn, no further evaluation.
    assert result.final_message == "I stop here."
    assert len(grader_requests(harness, m)) == 3
    workspace = harness.settings.resolved_workspace_root() / handle.id
    best = workspace / evaluation["best_snapshot_dir"] / "report.md"
    assert best.read_text() == "attempt two", "the best iteration's deliverables are kept"
    assert (workspace / "report.md").read_text() == "attempt three"


async def test_rubric_not_applicable_is_failed(harness) -> None:
    m = marker()
    harness.mock.script_for(m, *work("x"), grade("rubric_not_applicable", explanation="rubric grades a poem"))
    handle = await harness.sessions.create(outcome_input(m))
    [evaluation] = (await handle.result()).outcome_evaluations
    assert evaluation["result"] == "failed" and evaluation["failure_kind"] == "rubric_not_applicable"
    assert evaluation["explanation"] == "rubric grades a poem"


async def test_malformed_then_valid_grader_output(harness) -> None:
    m = marker()
    malformed = Turn.tool_use("submit_grade", {"verdict": "great", "explanation": ""})
    harness.mock.script_for(m, *work("42"), malformed, Turn.text("I think it is fine"), PASS)
    handle = await harness.sessions.create(outcome_input(m))
    [evaluation] = (await handle.result()).outcome_evaluations
    assert evaluation["result"] == "satisfied"
    [end] = ends(await handle.events())
    assert len(end["grader_corrections"]) == 2
    assert "verdict" in end["grader_corrections"][0] and "no submit_grade" in end["grader_corrections"][1]
    # The corrections went back to the grader in its own conversation.
    third = grader_requests(harness, m)[2].body["messages"]
    assert third[2]["content"][0]["is_error"] is True


async def test_contradictory_verdict_is_not_accepted(harness) -> None:
    m = marker()
    liar = grade("satisfied", ("report.md exists", True), ("mentions 42", False))
    harness.mock.script_for(m, *work("no number"), liar, HALF, *work("42"), PASS)
    handle = await harness.sessions.create(outcome_input(m))
    [evaluation] = (await handle.result()).outcome_evaluations
    results = ends(await handle.events())
    assert [e["result"] for e in results] == ["needs_revision", "satisfied"]
    assert "contradictory" in results[0]["grader_corrections"][0]
    assert evaluation["result"] == "satisfied" and evaluation["iteration"] == 1


async def test_grader_crash_is_distinguished_from_a_bad_rubric(harness) -> None:
    m = marker()
    harness.mock.script_for(m, *work("42"), Fault.bad_request("grader context too long"))
    handle = await harness.sessions.create(outcome_input(m))
    [evaluation] = (await handle.result()).outcome_evaluations
    assert evaluation["result"] == "failed" and evaluation["failure_kind"] == "grader_error"
    assert "grader context too long" in evaluation["explanation"]
    errors = [e.model_extra["error"] for e in await handle.events() if e.type == "session.error"]
    assert any("grader" in e["message"] for e in errors)


async def test_grader_sees_deliverables_never_the_agents_reasoning_or_tools(harness) -> None:
    m = marker()
    secret_reasoning = "SECRET-CHAIN-OF-THOUGHT"
    harness.mock.script_for(
        m,
        Turn(
            content=[
                {"type": "text", "text": f"{secret_reasoning} planning"},
                {
                    "type": "tool_use",
                    "id": "toolu_hidden1",
                    "name": "bash",
                    "input": {"command": "echo TOOL-OUTPUT-XYZ"},
                },
            ],
            thinking="THINKING-ABC",
        ),
        *work("the answer is 42"),
        PASS,
    )
    handle = await harness.sessions.create(outcome_input(m))
    await handle.result()
    [grader] = grader_requests(harness, m)
    body = json.dumps(grader.body)
    for leaked in (secret_reasoning, "THINKING-ABC", "TOOL-OUTPUT-XYZ", "toolu_hidden1", "echo TOOL"):
        assert leaked not in body, f"{leaked} reached the grader"
    assert len(grader.body["messages"]) == 1 and "tools" in grader.body
    prompt = grader.body["messages"][0]["content"][0]["text"]
    assert "the answer is 42" in prompt and 'path="report.md"' in prompt and "mentions the number 42" in prompt


async def test_interrupt_during_evaluation(harness) -> None:
    m = marker()
    harness.mock.script_for(m, *work("42"), Fault.slow(30, then=PASS))
    handle = await harness.sessions.create(outcome_input(m, outcome_ongoing_interval_seconds=0.5))
    for _ in range(200):
        events = await handle.events()
        if any(e.type == "span.outcome_evaluation_ongoing" for e in events):
            break
        await asyncio.sleep(0.1)
    await handle.interrupt()
    result = await asyncio.wait_for(handle.result(), 15)
    [evaluation] = result.outcome_evaluations
    assert evaluation["result"] == "interrupted"
    events = await handle.events()
    assert [e["result"] for e in ends(events)] == ["interrupted"]
    ongoing = [e for e in events if e.type == "span.outcome_evaluation_ongoing"]
    assert ongoing and all(e.model_extra["iteration"] == 0 for e in ongoing)


async def test_rubric_from_a_workspace_file(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Turn.text("ready"), *work("42"), PASS)
    body = session_input(f"{m} get ready", options={"keep_alive": True})
    handle = await harness.sessions.create(body)
    for _ in range(100):
        if (await handle.retrieve()).final_message == "ready":
            break
        await asyncio.sleep(0.1)
    workspace = harness.settings.resolved_workspace_root() / handle.id
    (workspace / "rubric.md").write_text("- report.md must mention FILE-RUBRIC-42\n")
    await handle.send(
        {
            "type": "user.define_outcome",
            "description": f"{m} Write report.md",
            "rubric": {"type": "file", "file_id": "rubric.md"},
        }
    )
    for _ in range(200):
        session = await handle.retrieve()
        if session.outcome_evaluations and session.outcome_evaluations[0]["result"] == "satisfied":
            break
        await asyncio.sleep(0.1)
    assert session.outcome_evaluations[0]["result"] == "satisfied"
    [grader] = grader_requests(harness, m)
    assert "FILE-RUBRIC-42" in grader.body["messages"][0]["content"][0]["text"]
    # A missing rubric file fails the outcome clearly, without grading.
    await handle.send(
        {"type": "user.define_outcome", "description": "again", "rubric": {"type": "file", "file_id": "nope.md"}}
    )
    for _ in range(100):
        session = await handle.retrieve()
        if len(session.outcome_evaluations) == 2 and session.outcome_evaluations[1]["result"] == "failed":
            break
        await asyncio.sleep(0.1)
    second = session.outcome_evaluations[1]
    assert second["failure_kind"] == "rubric_unavailable" and "nope.md" in second["explanation"]
    await handle.interrupt()


async def test_outcomes_chain_and_only_one_at_a_time(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Fault.slow(2, then=work("42")[0]), work("42")[1], PASS, *work("42 again"), PASS)
    body = outcome_input(m, keep_alive=True)
    handle = await harness.sessions.create(body)
    second = {"type": "user.define_outcome", "description": f"{m} second", "rubric": {"type": "text", "content": "r"}}
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.send(second)
    assert "already in progress" in str(info.value.cause)
    for _ in range(200):
        session = await handle.retrieve()
        if session.outcome_evaluations[0]["result"] == "satisfied":
            break
        await asyncio.sleep(0.1)
    await handle.send(second)
    for _ in range(200):
        session = await handle.retrieve()
        if len(session.outcome_evaluations) == 2 and session.outcome_evaluations[1]["result"] == "satisfied":
            break
        await asyncio.sleep(0.1)
    assert [o["result"] for o in session.outcome_evaluations] == ["satisfied", "satisfied"]
    assert session.outcome_evaluations[0]["outcome_id"] != session.outcome_evaluations[1]["outcome_id"]
    await handle.interrupt()


async def test_grader_model_and_usage_count_against_the_budget(harness) -> None:
    m = marker()
    harness.mock.script_for(m, *work("42"), PASS)
    handle = await harness.sessions.create(outcome_input(m, grader_model="claude-haiku-4-5"))
    result = await handle.result()
    [grader] = grader_requests(harness, m)
    assert grader.body["model"] == "claude-haiku-4-5"
    [end] = ends(await handle.events())
    agent_output = sum(
        e.model_extra["model_usage"]["output_tokens"]
        for e in await handle.events()
        if e.type == "span.model_request_end"
    )
    assert result.usage.output_tokens == agent_output + end["usage"]["output_tokens"]


@pytest.mark.parametrize("max_iterations", [0, 21])
async def test_max_iterations_out_of_range_is_rejected(harness, max_iterations) -> None:
    m = marker()
    handle = await harness.client.start_workflow(
        "AgentSession",
        outcome_input(m, max_iterations=max_iterations),
        id=f"sesn_{m[6:16]}_{max_iterations}",
        task_queue=harness.settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    message = str(info.value.cause)
    assert "initial_events.0.user.define_outcome.max_iterations" in message
    assert ("greater than or equal to 1" in message) or ("less than or equal to 20" in message)
