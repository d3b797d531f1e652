"""Model API faults: what Temporal retries (attempt counts read from history) and what fails fast."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType

from managed_agents.testing.mock_claude import Fault, Turn
from tests.helpers import marker, session_input


async def model_attempts(handle) -> list[int]:
    """Attempt number of every started model-request activity, from the workflow's history."""
    history = await harness_history(handle)
    scheduled: dict[int, str] = {}
    attempts = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            if scheduled[attrs.scheduled_event_id] == "managed_agents.model_request":
                attempts.append(attrs.attempt)
    return attempts


async def harness_history(handle):
    return await handle._handle.fetch_history()


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault.rate_limited(retry_after=0.5), "model_rate_limited_error"),
        (Fault.overloaded(), "model_overloaded_error"),
        (Fault.server_error(), "model_request_failed_error"),
        (Fault.drop_connection(), "model_request_failed_error"),
        (Fault.status(408, "timeout_error", "request timed out"), "model_request_failed_error"),
        (Fault.status(409, "conflict_error", "lock timeout"), "model_request_failed_error"),
    ],
    ids=["429", "529", "500", "dropped", "408", "409"],
)
async def test_retryable_faults_are_retried_by_temporal(harness, fault, error_type) -> None:
    m = marker()
    harness.mock.script_for(m, fault, fault, Turn.text("recovered"))
    handle = await harness.sessions.create(session_input(f"{m} hi"))
    result = await handle.result()
    assert result.final_message == "recovered"
    assert await model_attempts(handle) == [3], "two failures, then success on the third attempt"
    events = await handle.events()
    rescheduled = [e for e in events if e.type == "session.status_rescheduled"]
    errors = [e.model_extra["error"] for e in events if e.type == "session.error"]
    assert len(rescheduled) == 2
    assert [e["type"] for e in errors] == [error_type, error_type]
    assert all(e["retry_status"] == {"type": "retrying"} for e in errors)
    kinds = [e.type for e in events]
    assert kinds.index("session.status_rescheduled") < kinds.index("agent.message")


async def test_retry_after_is_honoured(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Fault.rate_limited(retry_after=3), Turn.text("ok"))
    handle = await harness.sessions.create(session_input(f"{m} hi"))
    await handle.result()
    times = [r.received_at for r in harness.mock.requests_for(m)]
    assert times[1] - times[0] >= 2.9, "Temporal waited for retry-after, not its own 1 s initial interval"
    [error] = [e.model_extra["error"] for e in await handle.events() if e.type == "session.error"]
    assert error["retry_in_seconds"] == pytest.approx(3)


async def test_x_should_retry_false_fails_fast(harness) -> None:
    m = marker()
    fault = Fault.server_error()
    fault.x_should_retry = False
    harness.mock.script_for(m, fault)
    handle = await harness.sessions.create(session_input(f"{m} hi"))
    result = await handle.result()
    assert result.stop_reason.type == "retries_exhausted"
    assert await model_attempts(handle) == [1]


async def test_bad_request_fails_fast_with_the_api_message(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Fault.bad_request("prompt is too long: 250000 tokens > 200000 maximum"))
    handle = await harness.sessions.create(session_input(f"{m} hi"))
    result = await handle.result()
    assert result.stop_reason.type == "retries_exhausted"
    assert await model_attempts(handle) == [1], "a 400 is not retried"
    events = await handle.events()
    [error] = [e.model_extra["error"] for e in events if e.type == "session.error"]
    assert error["type"] == "model_request_failed_error"
    assert "prompt is too long: 250000 tokens > 200000 maximum" in error["message"]
    assert error["retry_status"] == {"type": "exhausted"}
    assert not any(e.type == "session.status_rescheduled" for e in events)


async def test_retries_exhausted(harness) -> None:
    m = marker()
    harness.mock.script_for(m, *[Fault.overloaded() for _ in range(4)])
    handle = await harness.sessions.create(session_input(f"{m} hi"))  # max_model_attempts=4
    result = await handle.result()
    assert result.stop_reason.type == "retries_exhausted"
    assert await model_attempts(handle) == [4]
    events = await handle.events()
    errors = [e.model_extra["error"] for e in events if e.type == "session.error"]
    assert [e["retry_status"]["type"] for e in errors] == ["retrying"] * 3 + ["exhausted"]
    assert errors[-1]["type"] == "model_overloaded_error"


async def test_budget_reached_stops_new_requests(harness) -> None:
    m = marker()
    long_answer = "x" * 40_000  # ~10k output tokens at $15/MTok = 15 cents
    harness.mock.script_for(
        m,
        Turn(
            content=[
                {"type": "text", "text": long_answer},
                {"type": "tool_use", "id": "toolu_b1", "name": "bash", "input": {"command": "true"}},
            ]
        ),
        Turn.text("never requested"),
    )
    body = session_input(f"{m} spend", budget={"type": "limit", "max_list_cost": {"amount": "5", "currency": "USD"}})
    handle = await harness.sessions.create(body)
    result = await handle.result()
    assert result.stop_reason.type == "budget_reached"
    assert len(harness.mock.requests_for(m)) == 1
    assert int(result.usage.list_cost.amount) >= 5
    assert harness.mock.remaining_for(m) == 1


async def test_budget_with_unpriced_model(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Turn.tool_use("bash", {"command": "true"}), Turn.text("never"))
    body = session_input(
        f"{m} spend", budget={"type": "limit", "max_list_cost": {"amount": "100000", "currency": "USD"}}
    )
    body["agent"]["model"] = "claude-unknown-model-9"
    handle = await harness.sessions.create(body)
    result = await handle.result()
    assert result.stop_reason.type == "budget_reached"
    assert len(harness.mock.requests_for(m)) == 1


async def test_secrets_never_enter_history(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Turn.tool_use("bash", {"command": "env"}), Turn.text("done"))
    handle = await harness.sessions.create(session_input(f"{m} hi"))
    await handle.result()
    history = (await harness_history(handle)).to_json()
    assert "sk-test-not-a-secret" not in history
    assert harness.mock.base_url not in history
    headers = harness.mock.requests_for(m)[0].headers
    assert "sk-test-not-a-secret" in (headers.get("x-api-key", "") + headers.get("authorization", ""))
