"""Workspace path confinement for the sandbox tools.

Every path a model hands to a file tool is resolved *inside* the session workspace:

* relative paths are relative to the workspace root; ``~`` and ``~/...`` mean the workspace root
  (the tools' bash runs with ``HOME=<workspace>``, so this keeps both views consistent);
* ``/workspace/...`` is the workspace (where bash sees it) and ``/mnt/memory/...`` is its
  ``memory/`` folder, where the session's memory stores are downloaded (bash sees each store at
  ``/mnt/memory/<slug>`` too), so the paths in the system prompt work in every tool;
* an absolute path is accepted only when it resolves inside the workspace;
* symlinks are resolved at every component (including the last one, and including dangling
  links) with :func:`os.path.realpath`, so ``..`` climbing out, absolute paths elsewhere and
  symlinks whose target lies outside the workspace are all refused with :class:`PathEscapeError`.

Callers must operate on the *resolved* path that :func:`resolve_in_workspace` returns (never on
the unresolved input), so that the path that was checked is the path that gets opened.

This is a policy layer, not a kernel sandbox: a process racing us inside the workspace (e.g. a
concurrent ``bash`` call swapping a directory for a symlink between the check and the open) is
out of scope and handled by the OS-level isolation layer.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "InvalidPathError",
    "PathEscapeError",
    "display_relpath",
    "is_within",
    "resolve_in_workspace",
    "workspace_root",
]


#: Where bash sees the workspace inside its bubblewrap sandbox.
SANDBOX_WORKSPACE = "/workspace"
#: Where the agent sees its memory stores (one directory per store), as in Managed Agents.
SANDBOX_MEMORY = "/mnt/memory"
#: The workspace folder holding the memory stores' directories (``memory/<slug>``).
WORKSPACE_MEMORY_DIR = "memory"


class PathEscapeError(ValueError):
    """A model-supplied path resolves outside the workspace."""

    def __init__(self, given: str) -> None:
        self.given = given
        super().__init__(f"path escapes the workspace: {given}")


class InvalidPathError(ValueError):
    """A model-supplied path is malformed (empty, contains a null byte, ...)."""


def workspace_root(workspace: Path | str) -> str:
    """Return the canonical (realpath) workspace root.

    Raises FileNotFoundError / NotADirectoryError: a missing workspace is a caller bug, not
    something the model did.
    """
    root = os.path.realpath(os.fspath(workspace))
    if not os.path.exists(root):
        raise FileNotFoundError(f"sandbox workspace directory does not exist: {workspace}")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"sandbox workspace is not a directory: {workspace}")
    return root


def is_within(root: str, candidate: str) -> bool:
    """True when the absolute, already-resolved ``candidate`` is ``root`` or lies below it."""
    try:
        return os.path.commonpath([root, candidate]) == root
    except ValueError:  # mixed absolute/relative (cannot happen with realpaths) or empty
        return False


def check_path_text(given: str, *, field: str) -> None:
    """Reject path strings that can never be valid (raise InvalidPathError)."""
    if "\x00" in given:
        raise InvalidPathError(f"{field} contains a null byte")
    if given == "":
        raise InvalidPathError(f"{field} must not be empty")


def resolve_in_workspace(root: str, given: str, *, field: str) -> str:
    """Resolve a model-supplied path to its real absolute path inside ``root``.

    ``root`` must come from :func:`workspace_root`. The target does not need to exist: for a
    missing path the existing prefix is resolved (symlinks included) and the rest is appended,
    which is what :func:`os.path.realpath` does in non-strict mode.
    """
    check_path_text(given, field=field)
    expanded = given
    if given == "~" or given.startswith("~/"):
        expanded = root + given[1:]
    elif given == SANDBOX_WORKSPACE or given.startswith(SANDBOX_WORKSPACE + "/"):
        # Inside the bash sandbox the workspace is mounted at /workspace: accept the same paths here.
        expanded = root + given[len(SANDBOX_WORKSPACE) :]
    elif given == SANDBOX_MEMORY or given.startswith(SANDBOX_MEMORY + "/"):
        # The memory mounts are folders of the workspace: /mnt/memory/<slug>/x = memory/<slug>/x.
        expanded = root + "/" + WORKSPACE_MEMORY_DIR + given[len(SANDBOX_MEMORY) :]
    real = os.path.realpath(os.path.join(root, expanded))
    if not is_within(root, real):
        raise PathEscapeError(given)
    return real


def display_relpath(root: str, real: str) -> str:
    """Workspace-relative POSIX path for ``real`` (``"."`` for the root itself)."""
    rel = os.path.relpath(real, root)
    return rel.replace(os.sep, "/")
