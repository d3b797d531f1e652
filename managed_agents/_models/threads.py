"""Multiagent threads: what a coordinator session and its thread workflows tell each other.

A thread is a child ``AgentSession`` sharing the coordinator's workspace and sandbox. They talk by
signals (workflow code cannot call updates on other workflows): the coordinator sends events in,
the thread reports status, usage and the calls it needs the user to answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from managed_agents._models.session import RequestUsage, SessionUsage
from managed_agents._pricing import nanos_to_cents_str

ThreadStatus = Literal["queued", "running", "idle", "terminated"]


class ThreadContext(BaseModel):
    """Set by a coordinator on the sessions it starts as threads."""

    parent_session_id: str
    thread_id: str
    agent_name: str
    workspace_id: str = Field(description="The coordinator's workspace, shared by every thread")
    sandbox_queue: str
    agent_ref: str | None = Field(None, description="The roster agent, already in the store")
    report_usage: bool = Field(False, description="Report each request's usage (the session has a budget)")
    memory_ref: str | None = Field(None, description="The coordinator's memory mounts (a store blob), for the prompt")


class ThreadAction(BaseModel):
    """A call in a thread waiting on the user, cross-posted to the coordinator's session."""

    event_id: str
    type: Literal["agent.tool_use", "agent.custom_tool_use"]
    name: str
    input: dict[str, Any]


class ThreadReport(BaseModel):
    """Thread → coordinator (signal ``thread_report``)."""

    thread_id: str
    kind: Literal["usage", "idle"]
    usage: RequestUsage | None = None
    cost_nanos: int | None = None
    unpriced_model: str | None = None
    stop_reason: dict[str, Any] | None = None
    final_message: str | None = None
    actions: list[ThreadAction] = Field(default_factory=list)
    outcome: dict[str, Any] | None = None
    #: With ``kind="idle"``: usage since the last report (unless reported per request).
    usage_since_last: RequestUsage | None = None
    cost_nanos_since_last: int = 0


class ThreadInput(BaseModel):
    """Coordinator → thread (signal ``thread_input``): events routed to the thread."""

    events: list[dict[str, Any]] = Field(default_factory=list)
    budget_reached: bool = False


class ThreadRecord(BaseModel):
    """The coordinator's view of one of its threads."""

    thread_id: str
    agent_name: str
    workflow_id: str
    status: ThreadStatus = "queued"
    created_at: datetime
    queued_events: list[dict[str, Any]] = Field(default_factory=list)
    final_message: str | None = None
    stop_reason: dict[str, Any] | None = None
    #: The latest result has not yet reached the coordinator's context.
    undelivered: bool = False
    usage: SessionUsage = Field(default_factory=SessionUsage)
    cost_nanos: int = 0
    outcome: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "type": "session_thread",
            "id": self.thread_id,
            "agent_name": self.agent_name,
            "workflow_id": self.workflow_id,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "stop_reason": self.stop_reason,
            "usage": self.usage.model_dump(mode="json") | {"list_cost": _cost(self.cost_nanos)},
            "outcome": self.outcome,
        }


def _cost(nanos: int) -> dict[str, str]:
    return {"amount": nanos_to_cents_str(nanos), "currency": "USD"}
