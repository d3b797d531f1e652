"""Bad input gets a clear error naming the field; nothing already done is lost."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError

from managed_agents._client import new_session_id
from managed_agents.testing.mock_claude import Turn
from tests.helpers import agent, marker, session_input


async def start_raw(harness, body):
    return await harness.client.start_workflow(
        "AgentSession", body, id=new_session_id(), task_queue=harness.settings.task_queue
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"initial_events": []}, "agent: Field required"),
        ({"agent": {"name": "a"}}, "agent.model: Field required"),
        (
            {"agent": agent(), "initial_events": [{"type": "user.message"}]},
            "initial_events.0.user.message.content: Field required",
        ),
        (
            {"agent": agent(), "initial_events": [{"type": "user.shout", "content": []}]},
            "initial_events.0: Input tag 'user.shout'",
        ),
        (
            {"agent": agent(tools=[{"type": "agent_toolset_20260401", "configs": [{"name": "teleport"}]}])},
            "configs.0.name",
        ),
        ({"agent": agent(), "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata: Value error, at most 16 pairs"),
        (
            {"agent": agent(), "budget": {"type": "limit", "max_list_cost": {"amount": "1.50", "currency": "USD"}}},
            "budget.max_list_cost.amount",
        ),
        ({"agent": agent(), "options": {"keep_alive": "sometimes"}}, "options.keep_alive"),
        ({"agent": agent(), "colour": "blue"}, "colour: Extra inputs are not permitted"),
        ({"agent": "agent_123"}, "stored agents are not supported yet"),
        ("not an object", "expected a JSON object"),
    ],
    ids=[
        "no-agent",
        "no-model",
        "no-content",
        "bad-type",
        "bad-tool",
        "metadata",
        "amount",
        "option",
        "extra",
        "agent-id",
        "string",
    ],
)
async def test_malformed_input_fails_the_workflow_naming_the_field(harness, body, expected) -> None:
    handle = await start_raw(harness, body)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    message = str(info.value.cause)
    assert "invalid AgentSession input" in message
    assert expected in message


async def test_malformed_events_are_rejected_and_the_session_goes_on(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Turn.text("first"), Turn.text("second"))
    handle = await harness.sessions.create(session_input(f"{m} hi", options={"keep_alive": True}))
    cases = [
        ([{"type": "user.message", "content": "hello"}], "events.0.user.message.content"),
        ([{"type": "user.message"}], "content: Field required"),
        ([{"type": "user.tool_confirmation", "tool_use_id": "sevt_nope", "result": "allow"}], "is not a pending"),
        (
            [{"type": "user.tool_confirmation", "tool_use_id": "x", "result": "allow", "deny_message": "no"}],
            "deny_message is only allowed",
        ),
        (
            [
                {
                    "type": "user.define_outcome",
                    "description": "d",
                    "rubric": {"type": "text", "content": "r"},
                    "max_iterations": 21,
                }
            ],
            "max_iterations",
        ),
        ([], "non-empty"),
    ]
    for events, expected in cases:
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.send(*events) if events else await handle._handle.execute_update("send_events", [])
        assert expected in str(info.value.cause), str(info.value.cause)
    await handle.send_message("still here?")
    import asyncio

    for _ in range(100):
        session = await handle.retrieve()
        if session.final_message == "second":
            break
        await asyncio.sleep(0.1)
    assert session.final_message == "second"
    await handle.interrupt()


def test_client_validates_before_starting() -> None:
    from pydantic import ValidationError

    from managed_agents._models.session import SessionCreateParams

    with pytest.raises(ValidationError) as info:
        SessionCreateParams.model_validate(
            {"agent": agent(), "initial_events": [{"type": "user.message", "content": []}]}
        )
    assert "initial_events.0.`user.message`.content" in str(info.value)
