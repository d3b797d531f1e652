"""Typed inputs and results of the activities: what crosses Temporal's history.

These are durable contracts (recorded histories replay against them), so fields are only ever
added with defaults. They carry references and new content only, never the whole transcript:
history grows with each step's new content, not with the conversation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from managed_agents._dreams.models import RecordSessionInput
from managed_agents._models.session import RequestUsage
from managed_agents._webhooks.models import WebhookEventInput


class TranscriptMessage(BaseModel):
    """A Messages API message. A user message may hold ``{"type": "tool_result_ref",
    "tool_use_id": ..., "attempt": ...}`` blocks: the model activity replaces them with the tool
    result the sandbox stored (by that attempt), so a tool's output crosses history once (as the
    tool activity's result)."""

    role: Literal["user", "assistant"]
    content: list[dict[str, Any]]


class RegisterSessionInput(BaseModel):
    session_id: str
    agent: dict[str, Any]
    roster: list[dict[str, Any]] = Field(default_factory=list, description="A coordinator's roster agents")


class RegisterSessionResult(BaseModel):
    agent_ref: str = Field(description="Content hash of the stored agent definition")
    roster_refs: list[str] = Field(default_factory=list)


class ModelRequestInput(BaseModel):
    session_id: str
    agent_ref: str
    agent: dict[str, Any] | None = Field(
        None,
        description="The agent definition itself, until a request has stored it under agent_ref "
        "(a session's first request: no separate round trip to register it)",
    )
    model: str
    max_tokens: int
    step: int = Field(description="Session-wide model request counter; fences late writes of lost attempts")
    turn: int = Field(0, description="Session-wide turn counter (for logs)")
    transcript_len: int = Field(description="Messages [0, transcript_len) are committed in the session log")
    transcript_version: str | None = Field(
        None,
        description="Which request wrote the end of [0, transcript_len) (its result's transcript_version): "
        "a worker still holding that transcript reads none of it from the store",
    )
    new_messages: list[TranscriptMessage] = Field(default_factory=list)
    context_window_tokens: int
    cleared_before: int = Field(0, description="Tool results in messages before this index are cleared")
    max_attempts: int = Field(description="Retries signal the session unless this attempt is the last one")
    memory_ref: str | None = Field(
        None, description="The session's memory mounts (a store blob): the system prompt gets a memory section"
    )
    await_tool_results: list[str] = Field(
        default_factory=list,
        description="A pipelined request, scheduled with the tool calls it answers: it waits until the results "
        "of these tool_use ids are stored, then sends them (their tool_result_ref blocks name no attempt)",
    )


class ModelRequestResult(BaseModel):
    message_id: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: RequestUsage
    cost_nanos: int | None = Field(description="List cost in billionths of a USD; None when the model has no price")
    transcript_len: int
    transcript_version: str | None = Field(None, description="Names the transcript this request left behind")
    cleared_before: int
    tool_result_attempts: dict[str, int] = Field(
        default_factory=dict,
        description="For a pipelined request: which attempt of each awaited tool call wrote the result it sent",
    )


class ModelRetryNotice(BaseModel):
    """Sent by the model activity to its session (a signal) before Temporal retries it."""

    attempt: int
    error_type: str
    message: str
    status_code: int | None = None
    retry_in_seconds: float | None = None


class MemoryMountRequest(BaseModel):
    """A memory store to download into the new workspace (from the session's ``resources``)."""

    memory_store_id: str
    access: Literal["read_write", "read_only"] = "read_write"
    instructions: str | None = None


class ProvisionSandboxInput(BaseModel):
    session_id: str
    memory_stores: list[MemoryMountRequest] = Field(default_factory=list)


class MemoryMount(BaseModel):
    """A memory store as mounted in a session: name and description snapshotted at attach time."""

    memory_store_id: str
    name: str
    description: str
    mount_path: str = Field(description="Where the agent sees it: /mnt/memory/<slug>")
    workspace_path: str = Field(description="The same folder, relative to the workspace root: memory/<slug>")
    access: Literal["read_write", "read_only"]
    instructions: str | None = None


#: ``ApplicationError.type`` of a provisioning that failed because a memory store cannot be mounted.
MEMORY_STORE_UNAVAILABLE = "MemoryStoreUnavailable"


class ProvisionSandboxResult(BaseModel):
    task_queue: str = Field(description="Queue served only by the sandbox worker holding the workspace")
    sandbox_id: str
    memory_mounts: list[MemoryMount] = Field(default_factory=list)
    memory_ref: str | None = Field(
        None, description="Blob (in the session store) of memory_mounts, read by the model activity for the prompt"
    )


class ToolCallInput(BaseModel):
    session_id: str
    workspace_id: str | None = Field(None, description="Workspace folder; threads share their coordinator's")
    shared_workspace: bool = Field(False, description="Several agents edit this workspace: guard writes")
    networking: dict[str, Any] | None = Field(None, description="The session environment's networking config")
    runtime: str | None = Field(None, description="The session environment's named runtime")
    turn: int = 0
    tool_use_id: str
    name: str
    input: dict[str, Any]


class ToolCallResult(BaseModel):
    content: list[dict[str, Any]]
    is_error: bool = False
    attempt: int | None = Field(None, description="The attempt that stored this result (the model request's reference)")


class SessionBookkeepingInput(BaseModel):
    """What a session noted in one workflow activation, for one local activity."""

    webhook_events: list[WebhookEventInput] = Field(default_factory=list)
    finished_turns: list[RecordSessionInput] = Field(
        default_factory=list, description="Turns that finished (for the dream index), oldest first"
    )
