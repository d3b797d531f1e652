"""The built-in sandbox tools as the model sees them: names, limits and tool definitions.

Pure data (no I/O, no Temporal code): the workflow code (through :mod:`managed_agents._prompt`) and
the agent models use these, and :mod:`managed_agents._sandbox.tools`, which runs the tools on a
sandbox worker, imports them from here, so there is one definition.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DEFAULT_TOOL_LIMITS", "TOOL_NAMES", "ToolLimits", "fmt_bytes", "fmt_seconds", "tool_definitions"]

#: The built-in tools of ``agent_toolset_20260401`` that run in the session's sandbox.
TOOL_NAMES: tuple[str, ...] = ("bash", "read", "write", "edit", "glob", "grep")


class ToolLimits(BaseModel):
    """Resource caps for the sandbox tools (immutable; every field must be > 0)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_timeout_s: float = Field(default=120.0, gt=0, allow_inf_nan=False)
    """bash timeout per call when timeout_ms is omitted or 0."""
    max_timeout_s: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    """timeout_ms above this is clamped."""
    max_output_bytes: int = Field(default=100 * 1024, gt=0)
    """bash and grep output cap."""
    max_read_bytes: int = Field(default=256 * 1024, gt=0)
    """read cap for text (view_range reads further)."""
    max_glob_results: int = Field(default=200, gt=0)
    # base64 adds a third: 1 MB of media stays well under Temporal's 2 MB payload limit.
    max_media_bytes: int = Field(default=1_000_000, gt=0)
    """read cap for images and PDFs (raw file size; base64 adds a third)."""

    @model_validator(mode="after")
    def _default_within_max(self) -> ToolLimits:
        if self.default_timeout_s > self.max_timeout_s:
            raise ValueError("default_timeout_s must not exceed max_timeout_s")
        return self


DEFAULT_TOOL_LIMITS = ToolLimits()


# --------------------------------------------------------------------------------------------
# Tool definitions (model-facing). Built from constants + the limits only, so byte-stable.
# --------------------------------------------------------------------------------------------


def fmt_bytes(n: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def fmt_seconds(s: float) -> str:
    return f"{s:g} s"


_PATH_NOTE = (
    "Paths are relative to the workspace root; absolute paths must point inside the workspace, "
    "which bash sees as /workspace (so /workspace/x and x name the same file)."
)

_SCHEMAS: dict[str, dict[str, Any]] = {
    "bash": {
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "description": "Shell command to execute. Omit only when restart is true.",
            },
            "restart": {
                "type": "boolean",
                "description": "When true, restart the bash session instead of running a command.",
            },
            "timeout_ms": {
                "type": "integer",
                "minimum": 0,
                "description": "Per-call timeout in milliseconds. Omit or 0 for the default.",
            },
        },
        "required": [],
        "additionalProperties": False,
    },
    "read": {
        "type": "object",
        "properties": {
            "file_path": {"type": "string", "description": "Path of the file to read."},
            "view_range": {
                "type": "array",
                "items": {"type": "integer"},
                "minItems": 2,
                "maxItems": 2,
                "description": (
                    "Optional [start_line, end_line] 1-indexed inclusive range. When omitted the "
                    "entire file is returned. end_line of 0 or negative means to end of file."
                ),
            },
        },
        "required": ["file_path"],
        "additionalProperties": False,
    },
    "write": {
        "type": "object",
        "properties": {
            "file_path": {"type": "string", "description": "Path of the file to write."},
            "content": {"type": "string", "description": "Full file contents to write."},
        },
        "required": ["file_path", "content"],
        "additionalProperties": False,
    },
    "edit": {
        "type": "object",
        "properties": {
            "file_path": {"type": "string", "description": "Path of the file to edit."},
            "old_string": {"type": "string", "description": "Exact text to find and replace."},
            "new_string": {"type": "string", "description": "Replacement text."},
            "replace_all": {
                "type": "boolean",
                "description": (
                    "When true, replace every occurrence of old_string instead of requiring a unique match."
                ),
            },
        },
        "required": ["file_path", "old_string", "new_string"],
        "additionalProperties": False,
    },
    "glob": {
        "type": "object",
        "properties": {
            "pattern": {
                "type": "string",
                "description": "Doublestar glob pattern relative to path, e.g. **/*.py",
            },
            "path": {
                "type": "string",
                "description": "Optional directory to search under. Defaults to the workspace root.",
            },
        },
        "required": ["pattern"],
        "additionalProperties": False,
    },
    "grep": {
        "type": "object",
        "properties": {
            "pattern": {
                "type": "string",
                "description": "Regular expression (Python re syntax) to search for.",
            },
            "path": {
                "type": "string",
                "description": (
                    "Optional directory (searched recursively) or file to search. Defaults to the workspace root."
                ),
            },
        },
        "required": ["pattern"],
        "additionalProperties": False,
    },
}


def _description(name: str, limits: ToolLimits) -> str:
    if name == "bash":
        return (
            "Run a shell command with `bash -c` in the workspace root and return its combined "
            "stdout and stderr. Every call starts a fresh shell: the working directory, environment "
            "variables, functions and aliases do NOT carry over between calls (only files in the "
            "workspace persist), and background processes are killed when the command finishes. "
            "The environment is minimal (PATH=/usr/local/bin:/usr/bin:/bin, HOME is the workspace "
            "root, LANG=C.UTF-8) and stdin is empty, so do not run interactive programs. "
            f"Timeout: {fmt_seconds(limits.default_timeout_s)} by default; set timeout_ms for "
            f"longer commands (at most {fmt_seconds(limits.max_timeout_s)}). A timed-out command "
            f"is killed. Output beyond {fmt_bytes(limits.max_output_bytes)} is truncated. A non-zero "
            "exit code is reported as an error together with the output. restart=true is accepted "
            "but only confirms (there is no persistent session to reset). Commands run in an "
            "isolated sandbox: the workspace is mounted at /workspace (also the working directory), "
            "the rest of the filesystem is a read-only runtime, /tmp is private, there is no network "
            "unless the session's environment allows it, and CPU, memory, processes and disk use are "
            "limited."
        )
    if name == "read":
        return (
            f"Read a file from the workspace. {_PATH_NOTE} Returns the file's text exactly as "
            f"stored (no line numbers added). Text is capped at {fmt_bytes(limits.max_read_bytes)}; "
            "use view_range [start_line, end_line] (1-indexed, inclusive; end_line 0 = to end of "
            "file) to read large files in parts. PNG, JPEG, GIF and WebP files are returned as "
            f"images and PDFs as documents (up to {fmt_bytes(limits.max_media_bytes)}). Other "
            "binary files are refused; inspect them with bash."
        )
    if name == "write":
        return (
            "Create or overwrite a file in the workspace with the given content (UTF-8), creating "
            f"parent directories as needed. {_PATH_NOTE} The whole file is replaced; prefer edit "
            "for changes to an existing file."
        )
    if name == "edit":
        return (
            "Replace text in an existing UTF-8 file in the workspace. old_string must match the "
            "file exactly (including whitespace and indentation) and occur exactly once; include "
            "enough surrounding context to make it unique, or set replace_all to replace every "
            f"occurrence. {_PATH_NOTE}"
        )
    if name == "glob":
        return (
            "Find files and directories in the workspace whose path matches a glob pattern, newest "
            "(modification time) first. The pattern is relative to path (default: the workspace "
            "root) and supports ** (any number of directories), *, ?, [abc] and {a,b}, e.g. "
            "**/*.py or src/**/*.{ts,tsx}; a pattern without / matches only directly inside path. "
            f"Returns at most {limits.max_glob_results} workspace-relative paths (directories end "
            "with /). Symlinked directories are not descended into."
        )
    if name == "grep":
        return (
            "Search file contents in the workspace for a regular expression (Python re syntax, "
            "matched against each line). path (default: the workspace root) may be a directory, "
            "searched recursively, or a single file. Prints matching lines as path:line:text with "
            "workspace-relative paths, like `rg -n`. Binary files are skipped and symlinked "
            f"directories are not descended into. Output is capped at {fmt_bytes(limits.max_output_bytes)}."
        )
    raise ValueError(f"unknown sandbox tool {name!r}; expected one of {', '.join(TOOL_NAMES)}")


def tool_definitions(names: Iterable[str], *, limits: ToolLimits = DEFAULT_TOOL_LIMITS) -> list[dict[str, Any]]:
    """Messages-API tool definitions for the given built-in tools, in the given order.

    Output depends only on ``names`` and ``limits`` (fresh, equal dicts on every call), so it is
    safe for prompt caching. Unknown names raise ValueError (a caller bug).
    """
    out: list[dict[str, Any]] = []
    for name in names:
        description = _description(name, limits)  # raises for unknown names
        out.append({"name": name, "description": description, "input_schema": copy.deepcopy(_SCHEMAS[name])})
    return out
