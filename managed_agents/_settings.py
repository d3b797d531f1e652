"""Worker configuration, validated, from flags and the environment.

Temporal's own connection settings use Temporal's standard names (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, TLS, and the ``temporal.toml`` profiles) through
``temporalio.envconfig``; Anthropic's come from ``ANTHROPIC_API_KEY`` / ``ANTHROPIC_BASE_URL``,
read by the SDK on the worker so they never enter workflow history. The rest are
``MANAGED_AGENTS_*`` variables or ``worker.py`` flags.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from managed_agents._contract import DEFAULT_TASK_QUEUE

if TYPE_CHECKING:
    from managed_agents._sandbox.isolation import SandboxPolicy


#: What a worker does: the brain runs the workflows and calls the model; the sandbox runs the
#: agents' tools on the host that holds their workspaces.
Role = Literal["brain", "sandbox"]
ALL_ROLES: frozenset[Role] = frozenset({"brain", "sandbox"})


class ManagedAgentsSettings(BaseSettings):
    """Everything a worker (``python worker.py``, the demo, ``ManagedAgentsPlugin``) and the CLI
    read: from arguments, else ``MANAGED_AGENTS_*`` variables, else the defaults below."""

    model_config = SettingsConfigDict(env_prefix="MANAGED_AGENTS_", extra="ignore", populate_by_name=True)

    task_queue: str = Field(DEFAULT_TASK_QUEUE, min_length=1)
    roles: Annotated[frozenset[Role], NoDecode] = Field(
        ALL_ROLES,
        # MANAGED_AGENTS_ROLE / --role (one of all, brain, sandbox) is what worker.py always read.
        validation_alias=AliasChoices("roles", "role", "MANAGED_AGENTS_ROLES", "MANAGED_AGENTS_ROLE"),
        description='The roles this worker takes: "brain", "sandbox", or both ("all"; a comma-separated '
        "list in MANAGED_AGENTS_ROLES)",
    )
    data_dir: Path = Path(".managed-agents")
    store_url: str | None = Field(
        None, description="SQLAlchemy URL of the session log store (default: SQLite in data_dir)"
    )
    workspace_root: Path | None = Field(
        None, description="Where session workspaces live (default: data_dir/workspaces)"
    )
    sandbox_id: str = Field(default_factory=lambda: socket.gethostname(), min_length=1, max_length=100)
    strict_workflow_sandbox: bool = Field(
        False,
        description="Re-import the workflow code into Temporal's sandbox for every workflow run, so the sandbox "
        "checks what it calls (slower); by default only its pure modules are shared across runs",
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    max_concurrent_activities: int = Field(100, ge=1)
    max_concurrent_workflow_tasks: int = Field(100, ge=1)
    # --- the sandbox (bash isolation and limits; see managed_agents/sandbox/isolation.py) ---
    sandbox_isolation: Literal["bubblewrap", "none"] = "bubblewrap"
    allow_unsandboxed: bool = Field(
        False, description="Run bash without isolation when bubblewrap is unavailable (otherwise bash is refused)"
    )
    runtime_root: Path = Field(Path("/"), description="Read-only runtime the commands see ('/': a minimal host view)")
    runtimes: dict[str, Path] = Field(
        default_factory=dict,
        description='Named runtimes a session environment may choose: {"python": "/srv/rootfs/python", ...} '
        "(JSON in MANAGED_AGENTS_RUNTIMES); each a root filesystem directory",
    )
    sandbox_cpu_seconds: int = Field(120, gt=0)
    sandbox_memory_bytes: int = Field(1 << 30, gt=0)
    sandbox_max_processes: int = Field(256, ge=4)
    workspace_quota_bytes: int = Field(1 << 30, gt=0)
    # --- the model provider (its credentials and region: the SDK's own variables, see _providers.py) ---
    model_provider: Literal["anthropic", "bedrock", "vertex"] = Field(
        "anthropic",
        description="Where this worker reaches Claude: the Anthropic API, Amazon Bedrock or Google Vertex AI",
    )
    model_map: dict[str, str] = Field(
        default_factory=dict,
        description="The provider's id of a model name agents use, where they differ: "
        '{"claude-sonnet-4-6": "us.anthropic.claude-sonnet-4-6-v1:0", ...} (JSON in MANAGED_AGENTS_MODEL_MAP)',
    )

    @field_validator("roles", mode="before")
    @classmethod
    def _parse_roles(cls, value: Any) -> Any:
        if isinstance(value, str):
            words = {w.strip() for w in value.split(",") if w.strip()}
            return ALL_ROLES if words == {"all"} else words
        return value

    @field_validator("roles")
    @classmethod
    def _some_role(cls, roles: frozenset[Role]) -> frozenset[Role]:
        if not roles:
            raise ValueError('give at least one of "brain" and "sandbox"')
        return roles

    @field_validator("store_url")
    @classmethod
    def _supported_store(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// SQLAlchemy URL")
        return url

    @field_validator("sandbox_id")
    @classmethod
    def _queue_safe(cls, sandbox_id: str) -> str:
        if not all(c.isalnum() or c in "-_." for c in sandbox_id):
            raise ValueError("may hold only letters, digits, '-', '_' and '.'")
        return sandbox_id

    @field_validator("model_map")
    @classmethod
    def _model_ids(cls, model_map: dict[str, str]) -> dict[str, str]:
        # A blank or padded id would only fail later, as a 400/404 of the first request.
        for name, model_id in model_map.items():
            if not name or not model_id or name != name.strip() or model_id != model_id.strip():
                raise ValueError(f"model names and ids must be non-empty, without surrounding spaces: {name!r}")
        return model_map

    def sandbox_policy(self) -> SandboxPolicy:
        from managed_agents._sandbox.isolation import SandboxPolicy

        return SandboxPolicy(
            isolation=self.sandbox_isolation,
            allow_unsandboxed=self.allow_unsandboxed,
            runtime_root=self.runtime_root,
            cpu_seconds=self.sandbox_cpu_seconds,
            memory_bytes=self.sandbox_memory_bytes,
            max_processes=self.sandbox_max_processes,
            workspace_quota_bytes=self.workspace_quota_bytes,
        )

    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'sessions.db').resolve()}"

    def resolved_workspace_root(self) -> Path:
        root = self.workspace_root or self.data_dir / "workspaces"
        root.mkdir(parents=True, exist_ok=True)
        return root.resolve()


def temporal_connect_config(address: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    """Temporal client settings from the standard env vars / config file, with flag overrides."""
    from temporalio.envconfig import ClientConfig

    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", "localhost:7233")
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    return config
