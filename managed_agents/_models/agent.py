"""Agent definitions, shaped like the body of ``client.beta.agents.create``.

A session carries its agent inline (there is no agent registry yet), so this is the part of the
public contract that says which model runs, with which system prompt and which tools.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from managed_agents._models.tools import TOOL_NAMES

#: Built-in tools of ``agent_toolset_20260401`` that Anthropic runs server-side. They are part of the
#: toolset's names, but this project does not run them yet: enabling one is refused, not ignored.
SERVER_TOOL_NAMES = ("web_fetch", "web_search")
ToolName = Literal["bash", "read", "write", "edit", "glob", "grep", "web_fetch", "web_search"]

#: Tools a coordinator's model gets to delegate to its roster (run by the workflow itself).
COORDINATOR_TOOL_NAMES = ("create_agent", "send_to_agent", "wait_for_agents", "list_agents")

_CUSTOM_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class StrictModel(BaseModel):
    """Inputs reject unknown fields, so a typo fails loudly instead of being silently ignored."""

    model_config = ConfigDict(extra="forbid")


class PermissionPolicy(StrictModel):
    type: Literal["always_allow", "always_ask", "auto"]


class ToolsetDefaultConfig(StrictModel):
    enabled: bool | None = None
    permission_policy: PermissionPolicy | None = None


class ToolConfig(StrictModel):
    name: ToolName
    type: ToolName | None = None
    enabled: bool | None = None
    permission_policy: PermissionPolicy | None = None


class AgentToolset(StrictModel):
    type: Literal["agent_toolset_20260401"]
    configs: list[ToolConfig] = Field(default_factory=list)
    default_config: ToolsetDefaultConfig | None = None

    @model_validator(mode="after")
    def _distinct_configs(self) -> AgentToolset:
        names = [c.name for c in self.configs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"configs names a tool more than once: {', '.join(duplicates)}")
        return self


class CustomToolInputSchema(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["object"]
    properties: dict[str, Any] | None = None
    required: list[str] | None = None


class CustomTool(StrictModel):
    type: Literal["custom"]
    name: str
    description: str
    input_schema: CustomToolInputSchema

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _CUSTOM_TOOL_NAME.match(name):
            raise ValueError("must be 1-128 characters of letters, digits, underscores and hyphens")
        return name


class McpToolset(StrictModel):
    type: Literal["mcp_toolset"]
    mcp_server_name: str
    configs: list[dict[str, Any]] = Field(default_factory=list)
    default_config: dict[str, Any] | None = None


AgentTool = Annotated[AgentToolset | CustomTool | McpToolset, Field(discriminator="type")]


class ModelConfig(StrictModel):
    id: str = Field(min_length=1)
    effort: Any | None = None
    inference_geo: str | None = None
    speed: Literal["standard", "fast"] | None = None


class AgentDefinition(StrictModel):
    """An inline agent: the fields of ``client.beta.agents.create``."""

    name: str = Field(min_length=1, max_length=256)
    model: str | ModelConfig
    system: str | None = None
    description: str | None = None
    tools: list[AgentTool] = Field(default_factory=list)
    mcp_servers: list[dict[str, Any]] = Field(default_factory=list)
    skills: list[dict[str, Any]] = Field(default_factory=list)
    multiagent: MultiagentCoordinator | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _supported(self) -> AgentDefinition:
        # Refuse what is not built yet instead of running an agent that silently lacks it.
        if self.mcp_servers or any(isinstance(t, McpToolset) for t in self.tools):
            raise ValueError("mcp_servers / mcp_toolset are not supported by this engine yet")
        if self.skills:
            raise ValueError("skills are not supported by this engine yet")
        custom = {t.name for t in self.tools if isinstance(t, CustomTool)}
        if self.multiagent is not None and custom & set(COORDINATOR_TOOL_NAMES):
            raise ValueError(
                f"tools: {', '.join(sorted(custom & set(COORDINATOR_TOOL_NAMES)))} is a coordinator tool name"
            )
        toolsets = [t for t in self.tools if isinstance(t, AgentToolset)]
        if len(toolsets) > 1:
            raise ValueError("tools: agent_toolset_20260401 may appear only once")
        custom_names = [t.name for t in self.tools if isinstance(t, CustomTool)]
        clash = sorted(set(custom_names) & (set(TOOL_NAMES) | set(SERVER_TOOL_NAMES)))
        dup = sorted({n for n in custom_names if custom_names.count(n) > 1})
        if clash or dup:
            raise ValueError(f"tools: custom tool names must be unique and not built-in: {', '.join(clash + dup)}")
        if len(custom_names) + (len(TOOL_NAMES) if toolsets else 0) > 256:
            raise ValueError("tools: at most 256 tools across all toolsets")
        for tool in self.resolved_tools():
            if tool.name in SERVER_TOOL_NAMES and tool.enabled:
                raise ValueError(
                    f"tools: {tool.name} is server-executed by Anthropic and not supported by this engine; "
                    f'disable it with {{"name": "{tool.name}", "enabled": false}}'
                )
        return self

    @property
    def model_id(self) -> str:
        return self.model if isinstance(self.model, str) else self.model.id

    def resolved_tools(self) -> list[ResolvedTool]:
        """Every tool the agent has, with its effective ``enabled`` flag and permission policy.

        Built-in tools default to enabled with ``always_allow`` (Managed Agents' default for the
        built-in toolset); server-executed web tools are off unless asked for.
        """
        resolved: list[ResolvedTool] = []
        for tool in self.tools:
            if isinstance(tool, AgentToolset):
                default = tool.default_config or ToolsetDefaultConfig()
                by_name = {c.name: c for c in tool.configs}
                for name in (*TOOL_NAMES, *SERVER_TOOL_NAMES):
                    cfg = by_name.get(name)  # type: ignore[call-overload]
                    enabled = cfg.enabled if cfg and cfg.enabled is not None else default.enabled
                    if enabled is None:
                        enabled = name not in SERVER_TOOL_NAMES
                    policy = (cfg.permission_policy if cfg else None) or default.permission_policy
                    resolved.append(
                        ResolvedTool(
                            name=name,
                            kind="builtin",
                            enabled=enabled,
                            permission=policy.type if policy else "always_allow",
                        )
                    )
            elif isinstance(tool, CustomTool):
                resolved.append(ResolvedTool(name=tool.name, kind="custom", enabled=True, permission="client"))
        if self.multiagent is not None:
            resolved += [
                ResolvedTool(name=name, kind="coordinator", enabled=True, permission="always_allow")
                for name in COORDINATOR_TOOL_NAMES
            ]
        return resolved

    def roster(self) -> dict[str, AgentDefinition]:
        """The agents this coordinator may start as threads, by name (``self`` resolved)."""
        if self.multiagent is None:
            return {}
        out: dict[str, AgentDefinition] = {}
        for entry in self.multiagent.agents:
            if isinstance(entry, SelfRosterEntry):
                out[self.name] = self.model_copy(update={"multiagent": None})
            elif isinstance(entry, AgentDefinition):
                out[entry.name] = entry
        return out


class SelfRosterEntry(StrictModel):
    type: Literal["self"]


class MultiagentCoordinator(StrictModel):
    """``multiagent: {type: "coordinator", agents: [...]}``: the session's primary thread delegates to
    threads running these agents. Entries are inline agent definitions or ``{"type": "self"}``."""

    type: Literal["coordinator"]
    agents: list[AgentDefinition | SelfRosterEntry | str] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _roster_rules(self) -> MultiagentCoordinator:
        names: list[str] = []
        for i, entry in enumerate(self.agents):
            if isinstance(entry, str):
                raise ValueError(
                    f"agents.{i}: stored agent ids ({entry!r}) are not supported yet: give the roster agent inline"
                )
            if isinstance(entry, SelfRosterEntry):
                names.append("self")
                continue
            if entry.multiagent is not None:
                raise ValueError(
                    f"agents.{i} ({entry.name!r}) has multiagent set: one level of delegation only (depth limit 1)"
                )
            names.append(entry.name)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"agents: entries must be distinct (repeated: {', '.join(duplicates)})")
        return self


class ResolvedTool(BaseModel):
    name: str
    kind: Literal["builtin", "custom", "coordinator"]
    enabled: bool
    #: ``client`` = a custom tool, which always waits for the client's result.
    permission: Literal["always_allow", "always_ask", "auto", "client"]


MultiagentCoordinator.model_rebuild()
AgentDefinition.model_rebuild()
