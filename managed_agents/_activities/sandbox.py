"""Sandbox activities: provision a session's workspace and run the built-in tools in it.

A session's workspace lives on one sandbox worker. ``provision`` runs on the shared sandbox queue
(any sandbox worker may take a new session) and answers with that worker's private queue; every
tool call of the session is then sent there, so it reaches the worker that holds the files even
when several sandbox workers run.

Memory stores attached to the session are downloaded into the workspace at provisioning and synced
around every tool call (see :mod:`managed_agents._sandbox.memory_mounts`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from managed_agents._contract import SANDBOX_PROVISION, sandbox_private_queue, tool_activity
from managed_agents._logging import get_logger
from managed_agents._memory import MemoryService
from managed_agents._models.activity_io import (
    MEMORY_STORE_UNAVAILABLE,
    MemoryMount,
    ProvisionSandboxInput,
    ProvisionSandboxResult,
    ToolCallInput,
    ToolCallResult,
)
from managed_agents._sandbox.isolation import SandboxPolicy
from managed_agents._sandbox.memory_mounts import WRITING_TOOLS, MemoryManifest, MemoryMountError, MemorySync
from managed_agents._sandbox.paths import resolve_in_workspace, workspace_root
from managed_agents._sandbox.tools import TOOL_NAMES, ToolLimits, ToolOutcome, run_tool
from managed_agents._sandbox.write_guard import WriteGuard
from managed_agents._store import SessionStore

log = get_logger("managed_agents.sandbox")

MAX_RESULT_BYTES = 1_400_000

_SAFE_SESSION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


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
        memory: MemoryService | None = None,
    ) -> None:
        self.workspace_root = workspace_root
        self.store = store
        self.task_queue = task_queue
        self.sandbox_id = sandbox_id
        self.limits = limits or ToolLimits()
        self.policy = policy or SandboxPolicy()
        self.runtimes = runtimes or {}
        self.write_guard = WriteGuard()
        self._memory = memory
        self._memory_sync: MemorySync | None = None
        self._memory_locks: dict[str, asyncio.Lock] = {}
        self._policies: dict[str, SandboxPolicy] = {}

    @property
    def memory_sync(self) -> MemorySync:
        if self._memory_sync is None:
            # The manifests (what was last synced) live beside the workspace root, not in any
            # workspace: the agent must not see or forge them.
            state_dir = self.workspace_root.parent / f"{self.workspace_root.name}-memory-sync"
            self._memory_sync = MemorySync(self._memory or MemoryService(self.store.engine), state_dir)
        return self._memory_sync

    def workspace(self, session_id: str) -> Path:
        if not _SAFE_SESSION_ID.match(session_id) or session_id in (".", ".."):
            raise ValueError(f"session id {session_id!r} cannot name a workspace directory")
        return self.workspace_root / session_id

    @activity.defn(name=SANDBOX_PROVISION)
    async def provision(self, inp: ProvisionSandboxInput) -> ProvisionSandboxResult:
        workspace = self.workspace(inp.session_id)
        workspace.mkdir(parents=True, exist_ok=True)
        mounts: list[MemoryMount] = []
        memory_ref = None
        if inp.memory_stores:
            try:
                _, mounts = await asyncio.to_thread(
                    self.memory_sync.provision, inp.session_id, workspace, inp.memory_stores
                )
            except MemoryMountError as err:
                # Retrying cannot make a missing or archived store appear: fail the session's start.
                raise ApplicationError(str(err), type=MEMORY_STORE_UNAVAILABLE, non_retryable=True) from None
            memory_ref = await asyncio.to_thread(self.store.put_blob, [m.model_dump(mode="json") for m in mounts])
        log.info(
            "workspace ready",
            session_id=inp.session_id,
            workspace=str(workspace),
            sandbox_id=self.sandbox_id,
            memory_stores=len(mounts),
        )
        return ProvisionSandboxResult(
            task_queue=sandbox_private_queue(self.task_queue, self.sandbox_id),
            sandbox_id=self.sandbox_id,
            memory_mounts=mounts,
            memory_ref=memory_ref,
        )

    def tool_activities(self) -> list[Callable[..., Any]]:
        """One activity per built-in tool, so Temporal's UI and metrics show tool names."""
        return [self._tool_activity(name) for name in TOOL_NAMES]

    def _tool_activity(self, tool: str) -> Callable[..., Any]:
        @activity.defn(name=tool_activity(tool))
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
        workspace_id = inp.workspace_id or inp.session_id
        workspace = self.workspace(workspace_id)
        manifest = None
        if self.memory_sync.manifest_path(workspace_id).exists():  # one stat: no thread hop for most sessions
            manifest = await asyncio.to_thread(self.memory_sync.load, workspace_id)
        memory_notes: list[str] = []
        refusal = self._read_only_refusal(workspace, tool, inp.input, manifest) if manifest else None
        if refusal is not None:
            result = ToolCallResult(content=[{"type": "text", "text": refusal}], is_error=True)
        elif inp.runtime is not None and inp.runtime not in self.runtimes and tool == "bash":
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
            if manifest is not None:
                await self._memory_step(workspace_id, workspace, manifest, "pull", memory_notes)
                overrides["workspace_binds"] = MemorySync.binds(manifest)
            if overrides:
                policy = self._policy_with(overrides)

            def run() -> Awaitable[ToolOutcome]:
                return run_tool(workspace, tool, inp.input, self.limits, on_progress=activity.heartbeat, policy=policy)

            if inp.shared_workspace:
                outcome = await self.write_guard.run(inp.session_id, str(workspace), tool, inp.input, run)
            else:
                outcome = await run()
            if manifest is not None and tool in WRITING_TOOLS:
                await self._memory_step(workspace_id, workspace, manifest, "push", memory_notes)
            content = outcome.content
            if memory_notes:
                content = [*content, {"type": "text", "text": "\n".join(memory_notes)}]
            result = ToolCallResult(content=content, is_error=outcome.is_error)
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
        await self.store.call(
            self.store.put_tool_result, inp.session_id, inp.tool_use_id, result.content, result.is_error, info.attempt
        )
        bound.info("tool finished", is_error=result.is_error, memory_notes=len(memory_notes) or None)
        result.attempt = info.attempt
        return result

    def _policy_with(self, overrides: dict[str, object]) -> SandboxPolicy:
        """The worker's policy with a session's settings; validated once per distinct setting (every
        tool call of a session asks for the same one)."""
        key = json.dumps(overrides, sort_keys=True, default=str)
        policy = self._policies.get(key)
        if policy is None:
            if len(self._policies) >= 256:
                self._policies.clear()
            policy = self._policies[key] = SandboxPolicy.model_validate({**self.policy.model_dump(), **overrides})
        return policy

    # --- memory mounts ----------------------------------------------------------------------------

    def _read_only_refusal(
        self, workspace: Path, tool: str, tool_input: dict[str, Any], manifest: MemoryManifest
    ) -> str | None:
        given = tool_input.get("file_path")
        if tool not in ("write", "edit") or not isinstance(given, str) or not workspace.is_dir():
            return None
        try:
            root = workspace_root(workspace)
            real = resolve_in_workspace(root, given, field="file_path")
        except ValueError:
            return None  # the tool itself reports the bad path
        mount = MemorySync.read_only_mount(root, real, manifest)
        if mount is None:
            return None
        return (
            f"{given} is in the memory store mounted read-only at {mount.mount_path} (access: read_only): "
            f"it cannot be changed. Keep notes elsewhere in the workspace instead."
        )

    async def _memory_step(
        self, workspace_id: str, workspace: Path, manifest: MemoryManifest, step: str, notes: list[str]
    ) -> None:
        """Pull the stores' changes before a tool call, or push the agent's after one (serialised
        per workspace: a coordinator's threads call tools in one workspace at once). A failure here
        never fails the tool call (a retry would run the tool again): the agent is told instead,
        and the next tool call syncs again from the same manifest."""
        sync = self.memory_sync
        root = Path(workspace_root(workspace))
        lock = self._memory_locks.setdefault(workspace_id, asyncio.Lock())
        # A large store takes a while to sync: the worker's HeartbeatInterceptor keeps the tool
        # call's attempt alive meanwhile.
        async with lock:
            # Re-read under the lock: another call of this workspace may have synced meanwhile.
            current = await asyncio.to_thread(sync.load, workspace_id) or manifest
            before = current.model_dump_json()
            try:
                if step == "pull":
                    await asyncio.to_thread(sync.pull, root, current)
                else:
                    notes += await asyncio.to_thread(sync.push, root, current)
            except Exception as err:
                log.warning("memory sync failed", workspace_id=workspace_id, step=step, error=str(err))
                notes.append(
                    f"The memory stores could not be synced ({type(err).__name__}); changes under /mnt/memory "
                    "are saved after a later tool call."
                )
            finally:
                # Saved even after a failure part-way: what was written is synced and must not be
                # written again with a stale precondition.
                if current.model_dump_json() != before:
                    await asyncio.to_thread(sync.save, workspace_id, current)
            manifest.mounts = current.mounts
