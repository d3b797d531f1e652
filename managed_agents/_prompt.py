"""Deterministic Messages API requests, with prompt-cache breakpoints and context clearing.

The same transcript always yields byte-identical requests (across retries, workers and
continue-as-new), so Anthropic's prompt cache keeps hitting:

* breakpoint 1: the last tool definition (tools rarely change);
* breakpoint 2: the system prompt (the agent's, then the memory section when stores are mounted; the
  breakpoint is on the last system block, so one breakpoint covers both);
* breakpoint 3: the last block of the last message, which moves forward each step: the next step's
  request starts with exactly this prefix and reads it from the cache.

Context clearing keeps long sessions inside the model's window: once the estimated prompt passes
``context_window_tokens``, the oldest tool results are replaced by a short placeholder, in one
jump down to half the window. The boundary (``cleared_before``) only moves forward and only when the
window overflows, so the cached prefix is invalidated rarely, not every step.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from managed_agents._coordination import coordinator_tools
from managed_agents._models.activity_io import MemoryMount
from managed_agents._models.agent import AgentDefinition, CustomTool
from managed_agents._models.tools import tool_definitions

CACHE = {"type": "ephemeral"}
CLEARED_TOOL_RESULT = [
    {"type": "text", "text": "[older tool result cleared to save context; run the tool again if it is needed]"}
]


def estimate_tokens(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) // 4 + 1


def tools_for(agent: AgentDefinition) -> list[dict[str, Any]]:
    enabled_builtin = [t.name for t in agent.resolved_tools() if t.kind == "builtin" and t.enabled]
    tools = tool_definitions(enabled_builtin)
    for tool in agent.tools:
        if isinstance(tool, CustomTool):
            tools.append(
                {
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.input_schema.model_dump(exclude_none=True),
                }
            )
    if agent.multiagent is not None:
        tools += coordinator_tools({name: a.description for name, a in agent.roster().items()})
    return tools


class _SizeCache:
    """Token estimates per message object, so each step sizes only the messages it has not seen.

    Transcript messages are never mutated (the store's cache hands out the same dicts every step),
    so an estimate stays valid for the object's life; the cache holds a reference to each message
    it sizes, so an id cannot be reused while its entry exists.
    """

    def __init__(self, entries: int = 50_000) -> None:
        self._entries: OrderedDict[int, tuple[dict[str, Any], int, int | None]] = OrderedDict()
        self._limit = entries
        self._lock = threading.Lock()

    def sizes(self, message: dict[str, Any]) -> tuple[int, int]:
        """(estimate as is, estimate with its tool results cleared)."""
        key = id(message)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] is message and hit[2] is not None:
                self._entries.move_to_end(key)
                return hit[1], hit[2]
        full = estimate_tokens(message)
        cleared_message = _cleared(message)
        cleared = full if cleared_message is message else estimate_tokens(cleared_message)
        with self._lock:
            self._entries[key] = (message, full, cleared)
            while len(self._entries) > self._limit:
                self._entries.popitem(last=False)
        return full, cleared


_sizes = _SizeCache()


def next_cleared_before(messages: list[dict[str, Any]], cleared_before: int, window: int) -> int:
    """Where clearing should start from now on; unchanged while the prompt fits the window."""
    both = [_sizes.sizes(m) for m in messages]
    sizes = [cleared if i < cleared_before else full for i, (full, cleared) in enumerate(both)]
    total = sum(sizes)
    if total <= window:
        return cleared_before
    target = window // 2
    boundary = cleared_before
    # Never clear the newest exchange: the model needs the results it just asked for.
    while total > target and boundary < len(messages) - 2:
        total -= sizes[boundary] - both[boundary][1]
        boundary += 1
    return boundary


def build_request(
    agent: AgentDefinition,
    messages: list[dict[str, Any]],
    *,
    max_tokens: int,
    cleared_before: int,
    memory: Sequence[MemoryMount] = (),
) -> dict[str, Any]:
    request: dict[str, Any] = {"model": agent.model_id, "max_tokens": max_tokens}
    tools = tools_for(agent)
    if tools:
        tools = copy.deepcopy(tools)
        tools[-1]["cache_control"] = CACHE
        request["tools"] = tools
    system: list[dict[str, Any]] = [{"type": "text", "text": agent.system}] if agent.system else []
    if memory:
        system.append({"type": "text", "text": memory_section(memory)})
    if system:
        system[-1]["cache_control"] = CACHE
        request["system"] = system
    out = [_cleared(m) if i < cleared_before else m for i, m in enumerate(messages)]
    if out:
        last = copy.deepcopy(out[-1])
        for block in reversed(last["content"]):
            if block.get("type") not in ("thinking", "redacted_thinking"):
                block["cache_control"] = CACHE
                break
        out[-1] = last
    request["messages"] = out
    return request


def memory_section(mounts: Sequence[MemoryMount]) -> str:
    """The system prompt's note on the mounted memory stores: one entry per mount with its path,
    access, description and instructions (what Managed Agents renders). Built from the mounts only,
    so it is byte-stable for the session and the prompt cache keeps hitting."""
    lines = [
        "# Memory",
        "",
        "Memory stores are mounted as directories under /mnt/memory/. They persist across sessions: "
        "check them for relevant context before you start, and keep what is worth remembering there. "
        "Each file is one memory (UTF-8 text, at most 100 kB; a store holds at most 2,000). Files you "
        "create, edit or delete in a read-write store are saved to the store after each tool call; "
        "if another session changed the same memory meanwhile, your change is not saved and the tool "
        "result says so. The file tools accept the /mnt/memory/... paths; in the workspace the same "
        "files are under memory/<store>/.",
    ]
    for mount in mounts:
        access = "read-write" if mount.access == "read_write" else "read-only: you cannot change these files"
        lines += ["", f"## {mount.mount_path} ({access})", f"Store: {mount.name}"]
        if mount.description:
            lines.append(f"Description: {mount.description}")
        if mount.instructions:
            lines.append(f"Instructions: {mount.instructions}")
    return "\n".join(lines)


def _cleared(message: dict[str, Any]) -> dict[str, Any]:
    if message["role"] != "user" or not any(b.get("type") == "tool_result" for b in message["content"]):
        return message
    content = [
        {**b, "content": CLEARED_TOOL_RESULT} if b.get("type") == "tool_result" else b for b in message["content"]
    ]
    return {"role": message["role"], "content": content}


def order_user_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool results first, then everything else: the Messages API requires that order."""
    results = [b for b in blocks if b.get("type") in ("tool_result", "tool_result_ref")]
    rest = [b for b in blocks if b.get("type") not in ("tool_result", "tool_result_ref")]
    return results + rest
