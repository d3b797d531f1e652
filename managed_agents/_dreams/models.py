"""The ``Dream`` workflow's input, the dream object it returns, and its activities' inputs/results.

Input is shaped like the body of ``client.beta.dreams.create`` and the result like ``BetaDream``
(``spec/managed-agents-api.md`` §6). ``progress`` is this engine's own extension: which stage the
pipeline is in and how far it got, so a person watching a 100-session dream sees it move.
Activity inputs and results are durable contracts: fields are only ever added with defaults.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DreamStatus = Literal["pending", "running", "completed", "failed", "canceled"]
TERMINAL_STATUSES: tuple[DreamStatus, ...] = ("completed", "failed", "canceled")
#: Models the Dreams guide lists for the research preview (other ids are refused by the API).
SUPPORTED_MODELS = (
    "claude-opus-5",
    "claude-fable-5",
    "claude-sonnet-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-sonnet-4-6",
)
MAX_SESSIONS = 100
MAX_INSTRUCTIONS_CHARS = 4_096
#: Error codes (``BetaDreamErrorObject.type``), named as Managed Agents names them.
DreamErrorType = Literal[
    "timeout",
    "internal_error",
    "input_memory_store_too_large",
    "input_memory_store_unavailable",
    "input_session_unavailable",
    # this engine's: a part of a transcript the model never summarised validly (see
    # ``DreamOptions.skip_unreadable_parts``)
    "transcript_unreadable",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the request (``client.beta.dreams.create``) ---------------------------------------------------


class DreamMemoryStoreInput(_Strict):
    type: Literal["memory_store"]
    memory_store_id: str = Field(min_length=1, max_length=64)


class DreamSessionsInput(_Strict):
    type: Literal["sessions"]
    session_ids: list[str] = Field(min_length=1, max_length=MAX_SESSIONS)

    @field_validator("session_ids")
    @classmethod
    def _unique_sorted(cls, ids: list[str]) -> list[str]:
        seen: set[str] = set()
        for sid in ids:
            if not sid or len(sid) > 255:
                raise ValueError(f"{sid!r} is not a session id")
            if sid in seen:
                raise ValueError(f"{sid!r} appears twice: give each session once")
            seen.add(sid)
        return sorted(ids)  # "Responses list the IDs in sorted order"


DreamInput: TypeAlias = Annotated[DreamMemoryStoreInput | DreamSessionsInput, Field(discriminator="type")]


class DreamModelConfig(_Strict):
    id: str = Field(min_length=1, max_length=256)
    speed: Literal["standard"] = Field(default="standard", description="Dreams accept only standard.")


class OutputBehaviorCreateNew(_Strict):
    type: Literal["create_new"] = "create_new"


class DreamCreateParams(_Strict):
    """Body of ``client.beta.dreams.create``.

    ``output_behavior: update_existing`` is refused: this engine always writes a new, proposed store
    and leaves the input for a person (or a policy) to promote into (``managed-agents dream promote``).
    """

    inputs: list[DreamInput] = Field(min_length=2, max_length=2)
    model: DreamModelConfig
    instructions: str | None = Field(default=None, min_length=1, max_length=MAX_INSTRUCTIONS_CHARS)
    output_behavior: OutputBehaviorCreateNew = Field(default_factory=OutputBehaviorCreateNew)
    options: DreamOptions = Field(default_factory=lambda: DreamOptions())

    @field_validator("model", mode="before")
    @classmethod
    def _model_id_or_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"id": value}
        if isinstance(value, dict) and value.get("speed") == "fast":
            raise ValueError("speed: dreams accept only 'standard'")
        return value

    @field_validator("output_behavior", mode="before")
    @classmethod
    def _create_new_only(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("type") == "update_existing":
            raise ValueError(
                "update_existing is not supported: a dream writes a new proposed store; promote it into the "
                "input store with `managed-agents dream promote`"
            )
        return value

    @model_validator(mode="after")
    def _one_of_each(self) -> DreamCreateParams:
        kinds = sorted(i.type for i in self.inputs)
        if kinds != ["memory_store", "sessions"]:
            raise ValueError(
                "inputs: give exactly one memory_store entry and exactly one sessions entry, got " + ", ".join(kinds)
            )
        return self

    @property
    def memory_store_id(self) -> str:
        return next(i.memory_store_id for i in self.inputs if isinstance(i, DreamMemoryStoreInput))

    @property
    def session_ids(self) -> list[str]:
        return next(i.session_ids for i in self.inputs if isinstance(i, DreamSessionsInput))


class DreamOptions(_Strict):
    """Engine settings of one dream (Managed Agents keeps them server-side)."""

    max_parallel_sessions: int = Field(default=8, ge=1, le=100, description="Sessions read at once (stage 2).")
    transcript_chunk_chars: int = Field(
        default=60_000, ge=2_000, le=600_000, description="Transcript text per extraction request."
    )
    consolidation_batch_chars: int = Field(
        default=40_000, ge=2_000, le=600_000, description="Observations per consolidation request."
    )
    max_store_bytes: int = Field(
        default=400_000,
        ge=1_000,
        description="Largest input store (total content) a consolidation request may carry; "
        "bigger stores fail with input_memory_store_too_large.",
    )
    max_tokens: int = Field(default=8192, ge=256, le=128_000)
    model_request_timeout_seconds: float = Field(default=600, gt=0, le=3600)
    heartbeat_timeout_seconds: float = Field(default=30, gt=0, le=600)
    max_model_attempts: int = Field(default=8, ge=1, le=100)
    schedule_id: str | None = Field(default=None, description="Set when a dream schedule started this dream.")
    skip_unreadable_parts: bool = Field(
        default=False,
        description="When the model never answers validly for a part of a transcript, go on without that "
        "part (the dream lists it in skipped_parts) instead of failing with transcript_unreadable.",
    )


DreamCreateParams.model_rebuild()


# --- the dream object (``BetaDream``) --------------------------------------------------------------


class DreamUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def add(self, other: DreamUsage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_input_tokens += other.cache_read_input_tokens
        self.cache_creation_input_tokens += other.cache_creation_input_tokens


class DreamError(BaseModel):
    type: str
    message: str


class DreamOutput(BaseModel):
    type: Literal["memory_store"] = "memory_store"
    memory_store_id: str


DreamStage = Literal["pending", "cloning", "reading_sessions", "consolidating", "finishing", "done"]


class SkippedPart(BaseModel):
    """A part of a session's transcript the dream went on without: the model never answered
    ``record_observations`` validly for it, so whatever it held is missing from the output."""

    session_id: str
    part: int = Field(description="1-based, as in 'part 2 of 3'")
    parts: int = Field(description="How many parts the session's transcript was read in")
    reason: str = Field(description="The last problem with the model's answers (or the request's error)")

    def describe(self) -> str:
        return f"session {self.session_id}, part {self.part} of {self.parts}: {self.reason}"


class DreamProgress(BaseModel):
    """Extension: where the pipeline is (not in the API's dream object)."""

    stage: DreamStage = "pending"
    sessions_total: int = 0
    sessions_read: int = 0
    observations: int = 0
    batches_total: int = 0
    batches_done: int = 0
    memories_written: int = 0
    memories_deleted: int = 0
    model_requests: int = 0
    parts_skipped: int = 0


class Dream(BaseModel):
    type: Literal["dream"] = "dream"
    id: str
    status: DreamStatus
    created_at: datetime
    ended_at: datetime | None = None
    archived_at: datetime | None = None
    inputs: list[dict[str, Any]]
    instructions: str | None = None
    model: DreamModelConfig
    output_behavior: dict[str, Any] = Field(default_factory=lambda: {"type": "create_new"})
    outputs: list[DreamOutput] = Field(default_factory=list)
    session_id: str | None = None
    usage: DreamUsage = Field(default_factory=DreamUsage)
    error: DreamError | None = None
    progress: DreamProgress = Field(default_factory=DreamProgress)
    skipped_parts: list[SkippedPart] = Field(
        default_factory=list,
        description="Extension: transcript parts left out (only with options.skip_unreadable_parts; without "
        "it the dream fails with transcript_unreadable instead)",
    )


# --- activities ------------------------------------------------------------------------------------


class PrepareDreamInput(BaseModel):
    dream_id: str
    memory_store_id: str
    session_ids: list[str]
    max_store_bytes: int


class PrepareDreamResult(BaseModel):
    output_memory_store_id: str | None = None
    #: sessions in the order they will be read, with how many transcript messages each holds
    session_messages: dict[str, int] = Field(default_factory=dict)
    error: DreamError | None = None


class ExtractInput(BaseModel):
    dream_id: str
    session_id: str
    model: str
    instructions: str | None = None
    chunk_chars: int
    max_tokens: int


class StageUsage(BaseModel):
    usage: DreamUsage = Field(default_factory=DreamUsage)
    model_requests: int = 0


class ExtractResult(StageUsage):
    observations: int = 0
    chunks: int = 0
    reused: bool = Field(default=False, description="An earlier attempt had finished this stage")
    skipped_parts: list[SkippedPart] = Field(
        default_factory=list, description="Parts read without a valid answer: their observations are missing"
    )


class PlanConsolidationInput(BaseModel):
    dream_id: str
    session_ids: list[str]
    batch_chars: int


class PlanConsolidationResult(BaseModel):
    batches: int
    observations: int


class ConsolidateInput(BaseModel):
    dream_id: str
    output_memory_store_id: str
    batch: int
    batches: int
    model: str
    instructions: str | None = None
    max_tokens: int
    max_store_bytes: int


class ConsolidateResult(StageUsage):
    written: int = 0
    deleted: int = 0
    rejected: list[str] = Field(default_factory=list, description="Operations the model could not make valid")
    reused: bool = False


class FinishDreamInput(BaseModel):
    dream_id: str
    memory_store_id: str
    output_memory_store_id: str | None
    status: DreamStatus
    schedule_id: str | None = None
    #: sessions the dream read: a schedule's next run starts after the newest of them
    session_ids: list[str] = Field(default_factory=list)


# --- the session index (written by AgentSession when a turn ends) ----------------------------------


class RecordSessionInput(BaseModel):
    session_id: str
    memory_store_ids: list[str]
    finished_at: datetime


def mounted_memory_store_ids(resources: list[Any]) -> list[str]:
    """The ids of the memory stores among a session's ``resources`` (dicts or typed models)."""
    found: list[str] = []
    for resource in resources:
        get = resource.get if isinstance(resource, dict) else lambda k, r=resource: getattr(r, k, None)
        if get("type") == "memory_store" and get("memory_store_id"):
            found.append(str(get("memory_store_id")))
    return found


# --- schedules -------------------------------------------------------------------------------------


class ScheduledDreamInput(_Strict):
    """What a dream schedule starts each time it fires (the ``ScheduledDream`` workflow)."""

    schedule_id: str = Field(min_length=1, max_length=200)
    memory_store_id: str = Field(min_length=1, max_length=64)
    model: DreamModelConfig
    instructions: str | None = Field(default=None, min_length=1, max_length=MAX_INSTRUCTIONS_CHARS)
    options: DreamOptions = Field(default_factory=DreamOptions)

    @field_validator("model", mode="before")
    @classmethod
    def _model_id_or_object(cls, value: Any) -> Any:
        return {"id": value} if isinstance(value, str) else value


class SelectSessionsInput(BaseModel):
    schedule_id: str
    memory_store_id: str
    limit: int = MAX_SESSIONS


class SelectSessionsResult(BaseModel):
    session_ids: list[str]
    since: datetime | None = None


class ScheduledDreamResult(BaseModel):
    schedule_id: str
    dream: Dream | None = None
    skipped: str | None = Field(default=None, description="Why no dream ran (no new sessions)")
