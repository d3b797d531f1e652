"""Pipelined model requests: the next model request is scheduled with the tool calls it answers.

The request waits in its activity for the tools' stored results and starts the moment they are
stored. To the user and to the model this must be indistinguishable from scheduling it after the
tools, including when a tool call fails outright, or when an attempt's result is stored but
Temporal then rejects that attempt's completion and a later attempt's result is the one accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

from temporalio import activity
from temporalio import client as client_interceptors
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from managed_agents._client import SessionClient
from managed_agents._worker import build_workers, run_workers
from managed_agents.testing.mock_claude import Turn
from tests.helpers import marker, session_input, types

MODEL_ACTIVITY = "managed_agents.model_request"


async def activity_order(handle: Any) -> list[tuple[str, str, int]]:
    """(activity kind, "scheduled"/"completed"/"failed"/"cancel_requested", event id) in history order.
    (A cancelled activity may never report back: the session does not wait for it.)"""
    history = await handle._handle.fetch_history()
    kinds: dict[int, str] = {}
    out = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            kinds[event.event_id] = "model" if name == MODEL_ACTIVITY else "tool" if ".tool." in name else "other"
            out.append((kinds[event.event_id], "scheduled", event.event_id))
        for field, what in (
            ("activity_task_completed_event_attributes", "completed"),
            ("activity_task_cancel_requested_event_attributes", "cancel_requested"),
            ("activity_task_failed_event_attributes", "failed"),
        ):
            if event.HasField(field):
                scheduled = getattr(event, field).scheduled_event_id
                out.append((kinds.get(scheduled, "other"), what, event.event_id))
    return [o for o in out if o[0] != "other"]


def tool_results_sent(request: Any) -> list[dict[str, Any]]:
    last = request.body["messages"][-1]
    return [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


async def run_session(harness: Any, m: str, pipeline: bool) -> tuple[Any, list[Any]]:
    harness.mock.script_for(
        m,
        Turn.tool_use("bash", {"command": "echo one"}),
        Turn.tool_uses([("bash", {"command": "echo two"}), ("write", {"file_path": "f.txt", "content": "x"})]),
        Turn.text("done"),
    )
    body = session_input(f"{m} go", options={"pipeline_model_requests": pipeline, "heartbeat_timeout_seconds": 5})
    handle = await harness.sessions.create(body)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.final_message == "done"
    return handle, await handle.events()


async def test_next_request_is_scheduled_with_the_tools_and_sees_the_same_results(harness) -> None:
    pipelined_marker, sequential_marker = marker(), marker()
    pipelined, pipelined_events = await run_session(harness, pipelined_marker, pipeline=True)
    sequential, sequential_events = await run_session(harness, sequential_marker, pipeline=False)

    # The user sees the same events, in the same order.
    assert types(pipelined_events) == types(sequential_events)
    i = types(pipelined_events).index("agent.tool_result")
    assert types(pipelined_events)[i + 1] == "span.model_request_start"

    # The model is sent the same conversation.
    def conversation(m: str) -> list[Any]:
        return [r.body["messages"] for r in harness.mock.requests_for(m)]

    def normalised(messages: list[Any]) -> str:
        # The markers and the mock's generated tool_use ids differ between the two sessions.
        text = repr(messages).replace(pipelined_marker, "M").replace(sequential_marker, "M")
        ids: dict[str, str] = {}
        return re.sub(r"toolu_mock_[0-9a-f]+", lambda found: ids.setdefault(found[0], f"toolu_{len(ids)}"), text)

    requests = conversation(pipelined_marker)
    assert len(requests) == 3
    assert [normalised(m) for m in requests] == [normalised(m) for m in conversation(sequential_marker)]
    assert [r["content"][0]["text"] for r in tool_results_sent(harness.mock.requests_for(pipelined_marker)[1])] == [
        "one\n"
    ]

    # Pipelined: each model request after a tool step was scheduled before its tools completed.
    order = await activity_order(pipelined)
    for kind, what, event_id in order:
        if kind == "tool" and what == "scheduled":
            next_model = next(e for k, w, e in order if k == "model" and w == "scheduled" and e > event_id)
            first_tool_done = next(e for k, w, e in order if k == "tool" and w == "completed" and e > event_id)
            assert next_model < first_tool_done, order
    # Sequential (the option off): after them.
    order = await activity_order(sequential)
    last_tool_done = max(e for k, w, e in order if k == "tool" and w == "completed")
    assert any(k == "model" and w == "scheduled" and e > last_tool_done for k, w, e in order)
    for handle in (pipelined, sequential):
        assert not [o for o in await activity_order(handle) if o[1] in ("cancel_requested", "failed")]


class _SandboxFaults(client_interceptors.Interceptor, Interceptor):
    """Fault injection on a real sandbox worker: per marked session, a tool activity can fail
    outright, or run (storing its result) and then fail as if its completion had been lost.
    (On the client, so ``build_workers`` picks it up as every worker of that client does.)"""

    def __init__(self) -> None:
        self.fail_outright: set[str] = set()
        self.lose_first_completion: set[str] = set()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        faults = self

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                info = activity.info()
                if ".tool." not in info.activity_type:
                    return await super().execute_activity(input)
                command = str(getattr(input.args[0], "input", {}).get("command", ""))
                if any(key in command for key in faults.fail_outright):
                    raise ApplicationError("the sandbox broke", non_retryable=True)
                result = await super().execute_activity(input)
                if info.attempt == 1 and any(key in command for key in faults.lose_first_completion):
                    raise ApplicationError("completion lost on the way to the server")  # retried
                return result

        return Inbound(next)


@contextlib.asynccontextmanager
async def faulty_workers(temporal_env: Any, settings: Any, mock_claude: Any) -> AsyncIterator[tuple[Any, Any]]:
    import anthropic

    faults = _SandboxFaults()
    config = temporal_env.client.config()
    client = Client(**{**config, "interceptors": [*config["interceptors"], faults]})
    model_client = anthropic.AsyncAnthropic(api_key="sk-test", base_url=mock_claude.base_url, max_retries=0)
    stop = asyncio.Event()
    workers = build_workers(client, settings, client_factory=lambda _model: model_client)
    task = asyncio.create_task(run_workers(workers, stop))
    try:
        yield SessionClient(client, settings.task_queue), faults
    finally:
        stop.set()
        await task


async def test_a_tool_call_that_fails_outright_cancels_the_pipelined_request(
    temporal_env, settings, mock_claude
) -> None:
    m = marker()
    mock_claude.script_for(
        m, Turn.tool_use("bash", {"command": f"echo {m[6:16]}"}), Turn.text("the sandbox failed, stopping")
    )
    async with faulty_workers(temporal_env, settings, mock_claude) as (sessions, faults):
        faults.fail_outright.add(m[6:16])
        handle = await sessions.create(
            session_input(f"{m} go", options={"heartbeat_timeout_seconds": 2, "max_tool_attempts": 1})
        )
        result = await asyncio.wait_for(handle.result(), 60)
        events = await handle.events()
    assert result.final_message == "the sandbox failed, stopping"
    [tool_result] = [e for e in events if e.type == "agent.tool_result"]
    assert tool_result.model_extra["is_error"]
    assert "the sandbox broke" in tool_result.model_extra["content"][0]["text"]
    # The model was asked again once, with the error as the result; the pipelined request,
    # which waited for a result that never came, was cancelled without calling the model.
    requests = mock_claude.requests_for(m)
    assert len(requests) == 2
    [sent] = tool_results_sent(requests[1])
    assert sent["is_error"] and "the sandbox broke" in sent["content"][0]["text"]
    order = await activity_order(handle)
    assert [(k, w) for k, w, _ in order if w == "cancel_requested"] == [("model", "cancel_requested")], order
    assert len([e for e in events if e.type == "span.model_request_start"]) == 2


async def test_a_result_from_a_rejected_attempt_is_not_what_the_model_answers(
    temporal_env, settings, mock_claude
) -> None:
    """Attempt 1 stores its result; the pipelined request (same process) takes it at once; then
    attempt 1 fails and attempt 2's result is the accepted one. The model must be asked again with
    attempt 2's result, and the session must show and count what happened."""
    m = marker()
    key = m[6:16]
    command = f"echo {key} $(cat /proc/sys/kernel/random/uuid)"
    mock_claude.script_for(m, Turn.tool_use("bash", {"command": command}), Turn.text("first"), Turn.text("second"))
    async with faulty_workers(temporal_env, settings, mock_claude) as (sessions, faults):
        faults.lose_first_completion.add(key)
        handle = await sessions.create(session_input(f"{m} go"))
        result = await asyncio.wait_for(handle.result(), 60)
        events = await handle.events()
    [tool_result] = [e for e in events if e.type == "agent.tool_result"]
    accepted = tool_result.model_extra["content"][0]["text"]
    requests = mock_claude.requests_for(m)
    assert len(requests) == 3, [r.served for r in requests]
    first_try, answered = tool_results_sent(requests[1]), tool_results_sent(requests[2])
    assert first_try[0]["content"][0]["text"] != accepted, "the pipelined request took attempt 1's result"
    assert answered[0]["content"][0]["text"] == accepted
    assert result.final_message == "second"
    ends = [e.model_extra["is_error"] for e in events if e.type == "span.model_request_end"]
    assert ends == [False, True, False]
    # The discarded request was paid for: its tokens are in the session's usage, not in a span.
    in_spans = sum(e.model_extra["model_usage"]["output_tokens"] for e in events if e.type == "span.model_request_end")
    assert result.usage.output_tokens > in_spans > 0
