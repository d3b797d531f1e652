"""What an ``AgentSession`` carries across continue-as-new: counters and references, never the
transcript (that lives in the session log store) and never the event log (each run keeps its own
events; older ones are read from the previous run)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from managed_agents._models.activity_io import MemoryMount
from managed_agents._models.events import StopReason
from managed_agents._models.outcome import OutcomeState
from managed_agents._models.session import MemoryStoreResource, RequestUsage, SessionCreateParams, SessionUsage
from managed_agents._models.threads import ThreadContext, ThreadRecord


class PendingAction(BaseModel):
    """A tool call waiting on the client: a confirmation (``always_ask``) or a custom tool result."""

    event_id: str
    tool_use_id: str
    name: str
    kind: Literal["confirm", "custom"]
    input: dict[str, Any] = Field(default_factory=dict)
    decision: Literal["allow", "deny"] | None = None
    deny_message: str | None = None
    result_content: list[dict[str, Any]] | None = None
    result_is_error: bool = False

    @property
    def resolved(self) -> bool:
        return self.decision is not None if self.kind == "confirm" else self.result_content is not None


class ThreadActionRoute(BaseModel):
    thread_id: str
    thread_event_id: str
    kind: Literal["confirm", "custom"]


class SessionState(BaseModel):
    session_id: str
    params: SessionCreateParams
    created_at: datetime
    status: Literal["rescheduling", "running", "idle", "terminated"] = "idle"
    next_seq: int = 0
    agent_ref: str | None = None
    #: The next model request carries the agent definition: no request has stored it yet.
    agent_inline: bool = False
    sandbox_queue: str | None = None
    transcript_len: int = 0
    #: the model request that wrote the end of the committed transcript (see ModelRequestInput)
    transcript_version: str | None = None
    cleared_before: int = 0
    step: int = 0
    usage: SessionUsage = Field(default_factory=SessionUsage)
    cost_nanos: int = 0
    unpriced_model: str | None = None
    #: Blocks for the next user message: tool result references, inline results, user text.
    pending_content: list[dict[str, Any]] = Field(default_factory=list)
    pending_actions: list[PendingAction] = Field(default_factory=list)
    turn_active: bool = False
    turn: int = 0
    turn_steps: int = 0
    interrupt_requested: bool = False
    stop_reason: StopReason | None = None
    final_message: str | None = None
    active_seconds: float = 0.0
    #: Every outcome defined in this session, oldest first; the last one may be in progress.
    outcomes: list[OutcomeState] = Field(default_factory=list)
    #: Coordinator sessions: their threads, oldest first.
    threads: list[ThreadRecord] = Field(default_factory=list)
    #: Coordinator sessions: cross-posted calls waiting on the user, by the coordinator's event id.
    thread_actions: dict[str, ThreadActionRoute] = Field(default_factory=dict)
    #: Threads: the coordinator said the shared budget is spent.
    parent_budget_reached: bool = False
    #: Coordinator sessions: stored definitions of the roster agents, by name.
    roster_refs: dict[str, str] = Field(default_factory=dict)
    #: Threads: usage not yet reported to the coordinator.
    unreported_usage: RequestUsage = Field(default_factory=RequestUsage)
    unreported_cost_nanos: int = 0
    running_since: datetime | None = None
    #: The memory stores mounted in the workspace (the provisioning's snapshot of them).
    memory_mounts: list[MemoryMount] = Field(default_factory=list)
    #: Store blob of ``memory_mounts`` that the model activity renders into the system prompt
    #: (threads get their coordinator's).
    memory_ref: str | None = None

    @property
    def active_outcome(self) -> OutcomeState | None:
        last = self.outcomes[-1] if self.outcomes else None
        return last if last is not None and not last.terminal else None

    def memory_resources(self) -> list[dict[str, Any]]:
        """The session object's ``resources``: each attached store as Managed Agents lists it, with
        its mount path, name and description once the sandbox has mounted it."""
        mounted = {m.memory_store_id: m for m in self.memory_mounts}
        out = []
        for param in self.params.resources:
            mount = mounted.get(param.memory_store_id)
            resource = MemoryStoreResource(
                memory_store_id=param.memory_store_id,
                access=param.access,
                instructions=param.instructions,
                mount_path=mount.mount_path if mount else None,
                name=mount.name if mount else None,
                description=mount.description if mount else None,
            )
            out.append(resource.model_dump(mode="json"))
        return out

    @property
    def thread_context(self) -> ThreadContext | None:
        raw = self.params.thread
        return ThreadContext.model_validate(raw) if raw else None

    @property
    def workspace_id(self) -> str:
        """Threads work in their coordinator's workspace."""
        ctx = self.thread_context
        return ctx.workspace_id if ctx else self.session_id
