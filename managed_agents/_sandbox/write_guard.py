"""Writes in a workspace shared by several agents must not silently clobber each other.

The rule (documented for the model in the error it gets): in a shared workspace, ``write`` or
``edit`` of an existing file succeeds only if the file is unchanged since *this* agent last read or
wrote it. Otherwise the call fails with ``is_error`` and the agent reads the file again, sees the
other agent's change, and redoes its own on top. Checks and writes of one file are serialised by a
lock on the sandbox worker, so two agents cannot both pass the check and both write.

What an agent has seen lives in the sandbox worker's memory: after a sandbox restart every agent
must read a file again before overwriting it (the safe direction).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable

from managed_agents._sandbox.paths import resolve_in_workspace, workspace_root
from managed_agents._sandbox.tools import ToolOutcome

GUARDED = ("read", "write", "edit")


def _sha(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


class WriteGuard:
    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], str | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def run(
        self,
        agent_id: str,
        workspace: str,
        tool: str,
        tool_input: dict[str, object],
        run: Callable[[], Awaitable[ToolOutcome]],
    ) -> ToolOutcome:
        given = tool_input.get("file_path")
        if tool not in GUARDED or not isinstance(given, str):
            return await run()
        try:
            real = resolve_in_workspace(workspace_root(workspace), given, field="file_path")
        except ValueError:
            return await run()  # the tool itself reports the bad path
        lock = self._locks.setdefault(real, asyncio.Lock())
        async with lock:
            current = await asyncio.to_thread(_sha, real) if os.path.lexists(real) else None
            if tool != "read" and current is not None:
                seen = self._seen.get((agent_id, real))
                if seen is None:
                    return _refuse(
                        f"{given} already exists and you have not read it: read it first, so you do not overwrite "
                        "another agent's work, then retry"
                    )
                if seen != current:
                    return _refuse(
                        f"{given} changed since you last read or wrote it (another agent working in this workspace "
                        "edited it): read it again and redo your change on top of theirs"
                    )
            outcome = await run()
            if not outcome.is_error:
                self._seen[(agent_id, real)] = await asyncio.to_thread(_sha, real)
            return outcome


def _refuse(text: str) -> ToolOutcome:
    return ToolOutcome(content=[{"type": "text", "text": text}], is_error=True)
