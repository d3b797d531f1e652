"""Session events with Managed Agents' names.

Inbound events (what clients send) are strictly validated: they are the public contract other
services code against. Outbound events are one permissive model with a closed set of ``type``
names, so the event log stays easy to page and render while every name matches the API's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from managed_agents._models.agent import StrictModel

# --- content blocks -------------------------------------------------------------------------------


class TextBlock(StrictModel):
    type: Literal["text"]
    text: str


class ImageBlock(StrictModel):
    type: Literal["image"]
    source: dict[str, Any]


class DocumentBlock(StrictModel):
    type: Literal["document"]
    source: dict[str, Any]
    context: str | None = None
    title: str | None = None


class SearchResultBlock(StrictModel):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlock]
    citations: dict[str, Any] = Field(default_factory=lambda: {"enabled": False})


MessageContent = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]
ToolResultContent = Annotated[TextBlock | ImageBlock | DocumentBlock | SearchResultBlock, Field(discriminator="type")]

# --- inbound events -------------------------------------------------------------------------------


class UserMessageEvent(StrictModel):
    type: Literal["user.message"]
    content: list[MessageContent] = Field(min_length=1)


class UserInterruptEvent(StrictModel):
    type: Literal["user.interrupt"]
    session_thread_id: str | None = None


class UserToolConfirmationEvent(StrictModel):
    type: Literal["user.tool_confirmation"]
    tool_use_id: str = Field(min_length=1)
    result: Literal["allow", "deny"]
    deny_message: str | None = None

    @model_validator(mode="after")
    def _deny_message_only_on_deny(self) -> UserToolConfirmationEvent:
        if self.deny_message is not None and self.result != "deny":
            raise ValueError("deny_message is only allowed when result is 'deny'")
        return self


class UserCustomToolResultEvent(StrictModel):
    type: Literal["user.custom_tool_result"]
    custom_tool_use_id: str = Field(min_length=1)
    content: list[ToolResultContent] = Field(default_factory=list)
    is_error: bool | None = None


class TextRubric(StrictModel):
    type: Literal["text"]
    content: str = Field(min_length=1, max_length=262_144)


class FileRubric(StrictModel):
    type: Literal["file"]
    file_id: str = Field(min_length=1)


class UserDefineOutcomeEvent(StrictModel):
    type: Literal["user.define_outcome"]
    description: str = Field(min_length=1)
    rubric: Annotated[TextRubric | FileRubric, Field(discriminator="type")]
    max_iterations: int | None = Field(default=None, ge=1, le=20)


InboundEvent = Annotated[
    UserMessageEvent
    | UserInterruptEvent
    | UserToolConfirmationEvent
    | UserCustomToolResultEvent
    | UserDefineOutcomeEvent,
    Field(discriminator="type"),
]
InitialEvent = Annotated[UserMessageEvent | UserDefineOutcomeEvent, Field(discriminator="type")]

INBOUND_EVENTS: TypeAdapter[list[InboundEvent]] = TypeAdapter(list[InboundEvent])

# --- outbound events ------------------------------------------------------------------------------

EventType = Literal[
    "user.message",
    "user.interrupt",
    "user.tool_confirmation",
    "user.custom_tool_result",
    "user.define_outcome",
    "agent.message",
    "agent.thinking",
    "agent.tool_use",
    "agent.tool_result",
    "agent.custom_tool_use",
    "agent.thread_context_compacted",
    "agent.thread_message_sent",
    "agent.thread_message_received",
    "session.status_running",
    "session.status_idle",
    "session.status_rescheduled",
    "session.status_terminated",
    "session.error",
    "session.usage",
    "session.thread_created",
    "session.thread_status_running",
    "session.thread_status_idle",
    "session.thread_status_terminated",
    "span.model_request_start",
    "span.model_request_end",
    "span.outcome_evaluation_start",
    "span.outcome_evaluation_ongoing",
    "span.outcome_evaluation_end",
]

StopReasonType = Literal["end_turn", "requires_action", "retries_exhausted", "budget_reached", "refusal"]
SessionStatus = Literal["rescheduling", "running", "idle", "terminated"]
SessionErrorType = Literal[
    "unknown_error",
    "model_overloaded_error",
    "model_rate_limited_error",
    "model_request_failed_error",
    "billing_error",
    "tool_use_limit_reached_error",
]


class SessionEvent(BaseModel):
    """One entry of the session's event log.

    ``seq`` is this engine's addition: a gap-free position in the log, across continue-as-new runs,
    used to page (``after_seq``). The remaining fields are the event's own, by type.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    type: EventType
    seq: int
    processed_at: datetime | None = None


class StopReason(BaseModel):
    type: StopReasonType
    event_ids: list[str] | None = None


class EventPage(BaseModel):
    """A page of the event log, as returned by the ``events`` query.

    Each Temporal run of a session holds the events it produced. Events from before the current
    run (the session continued-as-new) are read by querying ``previous_run_id``.
    """

    data: list[SessionEvent]
    first_seq: int
    next_seq: int
    has_more: bool
    previous_run_id: str | None = None
