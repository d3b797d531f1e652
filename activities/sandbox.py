"""Sandbox activities: provision a session's workspace and run the built-in tools in it.

A session's workspace lives on one sandbox worker. ``provision`` runs on the shared sandbox queue
(any sandbox worker may take a new session) and answers with that worker's private queue; every
tool call of the session is then sent there, so it reaches the worker that holds the files even
when several sandbox workers run.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio import activity

from managed_agents.config import sandbox_private_queue
from managed_agents.logging import get_logger
from managed_agents.models.activity_io import (
    ProvisionSandboxInput,
    ProvisionSandboxResult,
    ToolCallInput,
    ToolCallResult,
)
from managed_agents.sandbox.isolation import SandboxPolicy
from managed_agents.sandbox.tools import TOOL_NAMES, ToolLimits, ToolOutcome, run_tool
from managed_agents.sandbox.write_guard import WriteGuard
from managed_agents.store import SessionStore

log = get_logger("managed_agents.sandbox")

MAX_RESULT_BYTES = 1_400_000

_SAFE_SESSION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def tool_activity_name(tool: str) -> str:
    return f"managed_agents.tool.{tool}"


class SandboxActivities:
    def __init__(
        self,
        *,
        workspace_root: Path,
        store: SessionStore,
        task_queue: str,
        sandbox_id: str,
        limits: ToolLimits | None = None,
        policy: SandboxPolicy | None = None,
        runtimes: dict[str, Path] | None = None,
    ) -> None:
        self.workspace_root = workspace_root
        self.store = store
        self.task_queue = task_queue
        self.sandbox_id = sandbox_id
        self.limits = limits or ToolLimits()
        self.policy = policy or SandboxPolicy()
        self.runtimes = runtimes or {}
        self.write_guard = WriteGuard()

    def workspace(self, session_id: str) -> Path:
        if not _SAFE_SESSION_ID.match(session_id) or session_id in (".", ".."):
            raise ValueError(f"session id {session_id!r} cannot name a workspace directory")
        return self.workspace_root / session_id

    @activity.defn(name="managed_agents.sandbox.provision")
    async def provision(self, inp: ProvisionSandboxInput) -> ProvisionSandboxResult:
        workspace = self.workspace(inp.session_id)
        workspace.mkdir(parents=True, exist_ok=True)
        log.info("workspace ready", session_id=inp.session_id, workspace=str(workspace), sandbox_id=self.sandbox_id)
        return ProvisionSandboxResult(
            task_queue=sandbox_private_queue(self.task_queue, self.sandbox_id), sandbox_id=self.sandbox_id
        )

    def tool_activities(self) -> list[Callable[..., Any]]:
        """One activity per built-in tool, so Temporal's UI and metrics show tool names."""
        return [self._tool_activity(name) for name in TOOL_NAMES]

    def _tool_activity(self, tool: str) -> Callable[..., Any]:
        @activity.defn(name=tool_activity_name(tool))
        async def run(inp: ToolCallInput) -> ToolCallResult:
            return await self._run(tool, inp)

        return run

    async def _run(self, tool: str, inp: ToolCallInput) -> ToolCallResult:
        info = activity.info()
        bound = log.bind(
            session_id=inp.session_id,
            turn=inp.turn,
            activity=f"tool.{tool}",
            tool_use_id=inp.tool_use_id,
            attempt=info.attempt,
        )
        workspace = self.workspace(inp.workspace_id or inp.session_id)
        if inp.runtime is not None and inp.runtime not in self.runtimes and tool == "bash":
            known = ", ".join(sorted(self.runtimes)) or "none"
            result = ToolCallResult(
                content=[
                    {
                        "type": "text",
                        "text": f"this sandbox worker has no runtime named {inp.runtime!r} (it has: {known})",
                    }
                ],
                is_error=True,
            )
        elif not workspace.is_dir():
            result = ToolCallResult(
                content=[{"type": "text", "text": "the session's workspace is gone from this sandbox"}],
                is_error=True,
            )
        else:
            policy = self.policy
            overrides: dict[str, object] = {}
            if inp.networking is not None:
                # The session's environment chooses its network (validated when the session started).
                overrides["networking"] = inp.networking
            if inp.runtime is not None and inp.runtime in self.runtimes:
                overrides["runtime_root"] = self.runtimes[inp.runtime]
            if overrides:
                policy = SandboxPolicy.model_validate({**self.policy.model_dump(), **overrides})

            def run() -> Awaitable[ToolOutcome]:
                return run_tool(workspace, tool, inp.input, self.limits, on_progress=activity.heartbeat, policy=policy)

            if inp.shared_workspace:
                outcome = await self.write_guard.run(inp.session_id, str(workspace), tool, inp.input, run)
            else:
                outcome = await run()
            result = ToolCallResult(content=outcome.content, is_error=outcome.is_error)
            size = len(json.dumps(result.content))
            if size > MAX_RESULT_BYTES:
                # An oversize result would fail the activity on every retry; tell the model instead.
                result = ToolCallResult(
                    content=[
                        {
                            "type": "text",
                            "text": f"tool result of {size} bytes is over the {MAX_RESULT_BYTES}-byte limit",
                        }
                    ],
                    is_error=True,
                )
        await asyncio.to_thread(
            self.store.put_tool_result, inp.session_id, inp.tool_use_id, result.content, result.is_error, info.attempt
        )
        bound.info("tool finished", is_error=result.is_error)
        return result
