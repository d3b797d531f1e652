"""The ``AgentSession`` workflow's input and the session object it returns.

Input is shaped like the body of ``client.beta.sessions.create``; ``agent`` is an inline agent
definition. ``options`` holds this engine's own settings (keep-alive, timeouts), kept apart so the
rest stays the API's shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from managed_agents._models.agent import AgentDefinition, StrictModel
from managed_agents._models.events import InitialEvent, StopReason
from managed_agents._models.outcome import OutcomeEvaluation


class MonetaryAmount(StrictModel):
    amount: str = Field(pattern=r"^(0|[1-9][0-9]*)$", description='Minor units: "2500" is $25.00')
    currency: Literal["USD"] = "USD"


class BudgetLimit(StrictModel):
    type: Literal["limit"]
    max_list_cost: MonetaryAmount


class SessionOptions(StrictModel):
    """Engine settings that Managed Agents keeps server-side."""

    keep_alive: bool = Field(
        default=False,
        description="Keep the workflow open when the session idles with end_turn, waiting for more events.",
    )
    max_tokens: int = Field(default=8192, ge=1, le=128_000, description="max_tokens of each model request")
    model_request_timeout_seconds: float = Field(default=600, gt=0, le=3600)
    heartbeat_timeout_seconds: float = Field(
        default=15, gt=0, le=600, description="A worker lost mid-request is detected within this time."
    )
    max_model_attempts: int = Field(default=8, ge=1, le=100)
    max_tool_attempts: int = Field(default=3, ge=1, le=20)
    sandbox_schedule_to_start_seconds: float = Field(
        default=120, gt=0, description="How long a tool call waits for the session's sandbox worker."
    )
    sandbox_provision_seconds: float = Field(
        default=300, gt=0, description="How long a new session waits for any sandbox worker to take it."
    )
    context_window_tokens: int = Field(
        default=150_000,
        ge=1000,
        description="Estimated prompt size above which the oldest tool results are cleared from context.",
    )
    max_steps_per_turn: int = Field(default=500, ge=1, description="Tool-use rounds before a turn is stopped.")
    pipeline_model_requests: bool = Field(
        default=True,
        description="Schedule the next model request together with the tool calls it answers: it starts the "
        "moment their results are stored, saving a workflow-task round trip per step.",
    )
    grader_model: str | None = Field(
        default=None, min_length=1, description="Model of the outcome grader (default: the agent's model)."
    )
    grader_max_tokens: int = Field(default=4096, ge=256, le=64_000)
    max_concurrent_threads: int = Field(
        default=25, ge=1, le=1000, description="Coordinator threads running at once; more are queued, not dropped."
    )
    outcome_ongoing_interval_seconds: float = Field(
        default=10, gt=0, description="How often span.outcome_evaluation_ongoing is emitted while the grader works."
    )


class NetworkConfig(BaseModel):
    """Managed Agents' environment ``networking`` (a union discriminated on ``type``):

    * ``{"type": "unrestricted"}``: the host's network;
    * ``{"type": "limited", "allowed_hosts": [...], "allow_mcp_servers": false,
      "allow_package_managers": false}``: only the listed destinations. Only the empty allowlist
      (no network at all) is supported yet; anything else is refused at validation.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["unrestricted", "limited"] = "limited"
    allowed_hosts: tuple[str, ...] = ()
    allow_mcp_servers: bool = False
    allow_package_managers: bool = False

    @model_validator(mode="after")
    def _check(self) -> NetworkConfig:
        limited_only = {"allowed_hosts", "allow_mcp_servers", "allow_package_managers"}
        if self.type == "unrestricted":
            given = sorted(limited_only & self.model_fields_set)
            if given:
                raise ValueError(f"{', '.join(given)} only apply to networking type 'limited'")
        elif self.allowed_hosts or self.allow_mcp_servers or self.allow_package_managers:
            raise ValueError(
                "limited networking with allowed_hosts, allow_mcp_servers or allow_package_managers "
                "is not supported yet (host allowlists need a filtering proxy): use "
                '{"type": "limited"} for no network at all or {"type": "unrestricted"}'
            )
        return self

    @property
    def isolated(self) -> bool:
        """True when the sandbox gets its own, empty network namespace."""
        return self.type == "limited"


class EnvironmentConfig(StrictModel):
    """Inline environment, shaped like ``client.beta.environments.create``'s ``config``."""

    type: Literal["cloud", "self_hosted"] = "self_hosted"
    networking: NetworkConfig = Field(default_factory=NetworkConfig)
    packages: dict[str, Any] | None = None
    runtime: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Name of a runtime the sandbox workers define (MANAGED_AGENTS_RUNTIMES); default: theirs",
    )

    @field_validator("packages")
    @classmethod
    def _no_packages(cls, packages: dict[str, Any] | None) -> dict[str, Any] | None:
        if packages and any(v for k, v in packages.items() if k != "type"):
            raise ValueError("installing packages is not supported yet: bake them into the sandbox runtime_root")
        return packages


class SessionWebhook(StrictModel):
    url: str = Field(min_length=1, max_length=2048)


#: Managed Agents' limits on memory-store attachments (mechanics §1.5).
MAX_MEMORY_STORES_PER_SESSION = 8
MAX_MEMORY_INSTRUCTIONS_CHARS = 4096
#: Resource types of ``client.beta.sessions.create`` that this engine cannot mount yet.
UNSUPPORTED_RESOURCE_TYPES = ("github_repository", "file")


class MemoryStoreResourceParam(StrictModel):
    """``resources[]`` entry attaching a memory store (``BetaManagedAgentsMemoryStoreResourceParam``)."""

    type: Literal["memory_store"]
    memory_store_id: str = Field(
        min_length=1, max_length=64, pattern=r"^memstore_[A-Za-z0-9_-]+$", description="The memory store ID"
    )
    access: Literal["read_write", "read_only"] = Field(
        default="read_write", description="read_only mounts the store as a read-only filesystem"
    )
    instructions: str | None = Field(
        default=None,
        max_length=MAX_MEMORY_INSTRUCTIONS_CHARS,
        description="Per-attachment guidance for the agent, rendered into the memory section of the system prompt",
    )


class MemoryStoreResource(BaseModel):
    """A memory store attached to the session, as the session object lists it
    (``BetaManagedAgentsMemoryStoreResource``); ``mount_path``, ``name`` and ``description`` are
    filled in once the sandbox has mounted the store."""

    type: Literal["memory_store"] = "memory_store"
    memory_store_id: str
    access: Literal["read_write", "read_only"] = "read_write"
    instructions: str | None = None
    mount_path: str | None = None
    name: str | None = None
    description: str | None = None


class SessionCreateParams(StrictModel):
    agent: AgentDefinition
    environment_id: str = "env_local"
    environment: EnvironmentConfig = Field(
        default_factory=EnvironmentConfig,
        description="This engine's inline environment (Managed Agents refers to one by environment_id): "
        'networking {"type": "limited"} (no network, the default) or {"type": "unrestricted"}.',
    )
    budget: BudgetLimit | None = None
    initial_events: list[InitialEvent] = Field(default_factory=list, max_length=50)
    metadata: dict[str, str] = Field(default_factory=dict)
    resources: list[MemoryStoreResourceParam] = Field(
        default_factory=list,
        description=f"Memory stores to mount under /mnt/memory (at most {MAX_MEMORY_STORES_PER_SESSION}); "
        "other resource types are not supported yet",
    )
    title: str | None = None
    vault_ids: list[str] = Field(default_factory=list)
    options: SessionOptions = Field(default_factory=SessionOptions)
    webhooks: list[SessionWebhook] = Field(
        default_factory=list, max_length=8, description="Per-session webhook URLs (registered endpoints' URLs)"
    )
    thread: dict[str, Any] | None = Field(
        default=None, description="Set by a coordinator session on the threads it starts; not for direct use."
    )

    @field_validator("agent", mode="before")
    @classmethod
    def _inline_agent_only(cls, agent: Any) -> Any:
        if isinstance(agent, str) or (isinstance(agent, dict) and "id" in agent and "model" not in agent):
            raise ValueError(
                "stored agents are not supported yet: pass an inline agent definition "
                '({"name": ..., "model": ..., "system": ..., "tools": [...]})'
            )
        return agent

    @field_validator("resources", mode="before")
    @classmethod
    def _memory_stores_only(cls, resources: Any) -> Any:
        # Say plainly which entry is not supported, instead of a union-tag error.
        if isinstance(resources, list):
            for i, resource in enumerate(resources):
                kind = resource.get("type") if isinstance(resource, dict) else None
                if kind in UNSUPPORTED_RESOURCE_TYPES:
                    raise ValueError(
                        f"resources[{i}]: {kind} resources are not supported by this engine yet "
                        "(only memory_store resources can be attached)"
                    )
                if isinstance(resource, dict) and kind != "memory_store":
                    raise ValueError(f"resources[{i}].type must be 'memory_store' (got {kind!r})")
        return resources

    @field_validator("resources")
    @classmethod
    def _memory_store_limits(cls, resources: list[MemoryStoreResourceParam]) -> list[MemoryStoreResourceParam]:
        if len(resources) > MAX_MEMORY_STORES_PER_SESSION:
            raise ValueError(
                f"at most {MAX_MEMORY_STORES_PER_SESSION} memory stores can be attached to a session "
                f"(got {len(resources)})"
            )
        seen: set[str] = set()
        for i, resource in enumerate(resources):
            if resource.memory_store_id in seen:
                raise ValueError(f"resources[{i}]: memory store {resource.memory_store_id} is attached twice")
            seen.add(resource.memory_store_id)
        return resources

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, metadata: dict[str, str]) -> dict[str, str]:
        if len(metadata) > 16:
            raise ValueError("at most 16 pairs")
        for key, value in metadata.items():
            if len(key) > 64:
                raise ValueError(f"key {key[:20]!r}... is longer than 64 characters")
            if len(value) > 512:
                raise ValueError(f"value of {key!r} is longer than 512 characters")
        return metadata

    @model_validator(mode="after")
    def _supported(self) -> SessionCreateParams:
        if self.vault_ids:
            raise ValueError("vault_ids are not supported by this engine yet")
        if sum(e.type == "user.define_outcome" for e in self.initial_events) > 1:
            raise ValueError("initial_events: only one user.define_outcome at a time (chain outcomes later)")
        return self

    @property
    def agent_definition(self) -> AgentDefinition:
        return self.agent


class CacheCreationUsage(BaseModel):
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class RequestUsage(BaseModel):
    """Token usage of one model request (``span.model_request_end.model_usage``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation: CacheCreationUsage = Field(default_factory=CacheCreationUsage)

    def add(self, other: RequestUsage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_input_tokens += other.cache_read_input_tokens
        self.cache_creation_input_tokens += other.cache_creation_input_tokens
        self.cache_creation.ephemeral_5m_input_tokens += other.cache_creation.ephemeral_5m_input_tokens
        self.cache_creation.ephemeral_1h_input_tokens += other.cache_creation.ephemeral_1h_input_tokens


class SessionUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation: CacheCreationUsage = Field(default_factory=CacheCreationUsage)
    list_cost: MonetaryAmount | None = None

    def add(self, usage: RequestUsage) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cache_read_input_tokens += usage.cache_read_input_tokens
        self.cache_creation.ephemeral_5m_input_tokens += usage.cache_creation.ephemeral_5m_input_tokens
        self.cache_creation.ephemeral_1h_input_tokens += usage.cache_creation.ephemeral_1h_input_tokens


class SessionStats(BaseModel):
    active_seconds: float = 0.0
    duration_seconds: float = 0.0


class SessionObject(BaseModel):
    """The session, as ``client.beta.sessions.retrieve`` shows it, plus a few engine fields."""

    id: str
    type: Literal["session"] = "session"
    status: Literal["rescheduling", "running", "idle", "terminated"]
    agent: dict[str, Any]
    environment_id: str
    title: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    budget: BudgetLimit | None = None
    usage: SessionUsage
    stats: SessionStats
    outcome_evaluations: list[OutcomeEvaluation] = Field(default_factory=list)
    resources: list[dict[str, Any]] = Field(default_factory=list)
    vault_ids: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None
    # Engine additions: what a caller of `temporal workflow execute` wants to read first.
    stop_reason: StopReason | None = None
    final_message: str | None = Field(default=None, description="Text of the last agent.message")
    event_count: int = 0
    threads: list[dict[str, Any]] = Field(default_factory=list, description="Coordinator sessions: their threads")

    @field_serializer("stop_reason")
    def _stop_reason(self, stop_reason: StopReason | None) -> dict[str, Any] | None:
        return stop_reason.model_dump(exclude_none=True) if stop_reason else None
