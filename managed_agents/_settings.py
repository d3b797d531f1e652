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
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from managed_agents._sandbox.isolation import SandboxPolicy

DEFAULT_TASK_QUEUE = "managed-agents"

WorkerRole = Literal["all", "brain", "sandbox"]


def sandbox_shared_queue(task_queue: str) -> str:
    """Queue on which any sandbox worker provisions a new session's workspace."""
    return f"{task_queue}-sandbox"


def sandbox_private_queue(task_queue: str, sandbox_id: str) -> str:
    """Queue served only by one sandbox worker: tool calls of its sessions go here."""
    return f"{task_queue}-sandbox-{sandbox_id}"


class ManagedAgentsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MANAGED_AGENTS_", extra="ignore")

    task_queue: str = Field(DEFAULT_TASK_QUEUE, min_length=1)
    role: WorkerRole = "all"
    data_dir: Path = Path(".managed-agents")
    store_url: str | None = Field(
        None, description="SQLAlchemy URL of the session log store (default: SQLite in data_dir)"
    )
    workspace_root: Path | None = Field(
        None, description="Where session workspaces live (default: data_dir/workspaces)"
    )
    sandbox_id: str = Field(default_factory=lambda: socket.gethostname(), min_length=1, max_length=100)
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
