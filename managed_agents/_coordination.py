"""The coordinator's delegation tools: their definitions (what the model sees) and the typed inputs
the workflow validates before acting on them. They run inside the workflow, not as activities:
starting a thread, messaging it and waiting for it are orchestration, which is Temporal's job."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _ToolInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateAgentInput(_ToolInput):
    agent: str = Field(min_length=1)
    task: str = Field(min_length=1)
    rubric: str | None = None
    max_iterations: int | None = Field(default=None, ge=1, le=20)


class SendToAgentInput(_ToolInput):
    thread_id: str = Field(min_length=1)
    message: str = Field(min_length=1)


class WaitForAgentsInput(_ToolInput):
    thread_ids: list[str] | None = None


class ListAgentsInput(_ToolInput):
    pass


TOOL_INPUTS: dict[str, type[_ToolInput]] = {
    "create_agent": CreateAgentInput,
    "send_to_agent": SendToAgentInput,
    "wait_for_agents": WaitForAgentsInput,
    "list_agents": ListAgentsInput,
}


def coordinator_tools(roster: dict[str, str | None]) -> list[dict[str, Any]]:
    """Tool definitions for a coordinator whose roster maps agent name -> description."""
    names = sorted(roster)
    listing = "\n".join(f"- {n}: {roster[n] or '(no description)'}" for n in names)
    return [
        {
            "name": "create_agent",
            "description": "Start a new thread running one of your specialist agents on a task. It works in "
            "parallel with you, on the same workspace files, and keeps its own conversation. Returns at once with "
            "the thread id; call wait_for_agents to collect results. Optionally give a rubric: the specialist's "
            f"work is then graded against it and revised until it passes.\nSpecialists:\n{listing}",
            "input_schema": {
                "type": "object",
                "properties": {
                    "agent": {"type": "string", "enum": names, "description": "Which specialist"},
                    "task": {"type": "string", "description": "Everything the specialist needs to know"},
                    "rubric": {"type": "string", "description": "Optional: how to grade the specialist's work"},
                    "max_iterations": {"type": "integer", "minimum": 1, "maximum": 20},
                },
                "required": ["agent", "task"],
                "additionalProperties": False,
            },
        },
        {
            "name": "send_to_agent",
            "description": "Send a follow-up message to an existing thread. An idle thread continues its "
            "conversation with everything it did before; a busy one reads it at its next step.",
            "input_schema": {
                "type": "object",
                "properties": {"thread_id": {"type": "string"}, "message": {"type": "string"}},
                "required": ["thread_id", "message"],
                "additionalProperties": False,
            },
        },
        {
            "name": "wait_for_agents",
            "description": "Wait until the given threads (default: every thread with work outstanding) are idle, "
            "and return each one's latest result.",
            "input_schema": {
                "type": "object",
                "properties": {"thread_ids": {"type": "array", "items": {"type": "string"}}},
                "additionalProperties": False,
            },
        },
        {
            "name": "list_agents",
            "description": "List your threads: id, specialist, status.",
            "input_schema": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    ]
