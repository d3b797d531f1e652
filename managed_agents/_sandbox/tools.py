"""Built-in sandbox tools of the ``agent_toolset_20260401`` toolset: bash, read, write, edit, glob, grep.

Pure implementations (no Temporal code): a Temporal activity on the worker that holds the session
workspace calls :func:`run_tool` and turns the :class:`ToolOutcome` into a ``tool_result`` block.

Contract:

* :func:`run_tool` never raises because of anything the model did (bad input, missing file,
  escape attempt, timeout, non-zero exit): it returns ``ToolOutcome(is_error=True, ...)`` with a
  message naming the offending field. It raises only for caller bugs (e.g. the workspace
  directory does not exist -> FileNotFoundError).
* Every path the model gives is confined to the workspace (see :mod:`managed_agents._sandbox.paths`).
  ``bash`` is *not* path-confined here: without a ``policy`` it only gets cwd = workspace, a
  scrubbed environment, stdin = /dev/null, a timeout and an output cap; with a
  :class:`~managed_agents._sandbox.isolation.SandboxPolicy` it runs in a bubblewrap sandbox with
  resource limits (see :mod:`managed_agents._sandbox.isolation`).
* File tools run in a worker thread (``asyncio.to_thread``) so the event loop stays free to
  heartbeat; ``on_progress`` is called about once a second while any tool runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import os
import posixpath
import re
import shutil
import signal
import stat
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from managed_agents._models.tools import DEFAULT_TOOL_LIMITS, TOOL_NAMES, ToolLimits, tool_definitions
from managed_agents._models.tools import fmt_bytes as _fmt_bytes
from managed_agents._models.tools import fmt_seconds as _fmt_seconds
from managed_agents._sandbox import isolation
from managed_agents._sandbox.isolation import SandboxPolicy
from managed_agents._sandbox.paths import (
    InvalidPathError,
    PathEscapeError,
    check_path_text,
    display_relpath,
    is_within,
    resolve_in_workspace,
    workspace_root,
)

__all__ = [
    "TOOL_NAMES",
    "InvalidPathError",
    "PathEscapeError",
    "SandboxPolicy",
    "ToolLimits",
    "ToolOutcome",
    "run_tool",
    "tool_definitions",
]

_PROGRESS_INTERVAL_S = 1.0
_EXIT_POLL_S = 0.05
_DRAIN_GRACE_S = 2.0  # after killing bash's process group, wait this long for the pipe to drain
_READ_CHUNK = 64 * 1024
_BINARY_SNIFF_BYTES = 8192
_MAX_WALK_ENTRIES = 100_000  # glob/grep stop walking after this many directory entries
_MAX_GREP_LINE_BYTES = 1024 * 1024  # longer lines are matched on their first MiB only
_MAX_GREP_LINE_CHARS = 2000  # displayed characters per matching line
_MAX_EDIT_BYTES = 16 * 1024 * 1024
_MAX_BRACE_EXPANSIONS = 256
_BASH_PATH = "/usr/local/bin:/usr/bin:/bin"
_BASH = shutil.which("bash", path=_BASH_PATH) or "/bin/bash"
_GLOB_MAGIC = frozenset("*?[\\")

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Public models
# --------------------------------------------------------------------------------------------


class ToolOutcome(BaseModel):
    """Result of one tool call: Anthropic ``tool_result`` content blocks plus the error flag."""

    content: list[dict[str, Any]]
    is_error: bool = False

    @classmethod
    def text(cls, text: str, *, is_error: bool = False) -> ToolOutcome:
        # The Messages API rejects empty text blocks.
        return cls(content=[{"type": "text", "text": text or "(empty)"}], is_error=is_error)

    @classmethod
    def error(cls, text: str) -> ToolOutcome:
        return cls.text(text, is_error=True)


_DEFAULT_LIMITS = DEFAULT_TOOL_LIMITS


class _ToolError(Exception):
    """Something the model did wrong; the message goes back to it verbatim."""


# --------------------------------------------------------------------------------------------
# Input models (the official SDK's agent_toolset_20260401 input schemas, extra fields forbidden)
# --------------------------------------------------------------------------------------------


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BashInput(_Input):
    command: str | None = None
    restart: bool | None = None
    timeout_ms: int | None = None


class ReadInput(_Input):
    file_path: str
    view_range: list[int] | None = None


class WriteInput(_Input):
    file_path: str
    content: str


class EditInput(_Input):
    file_path: str
    old_string: str
    new_string: str
    replace_all: bool | None = None


class GlobInput(_Input):
    pattern: str
    path: str | None = None


class GrepInput(_Input):
    pattern: str
    path: str | None = None


_INPUT_MODELS: dict[str, type[_Input]] = {
    "bash": BashInput,
    "read": ReadInput,
    "write": WriteInput,
    "edit": EditInput,
    "glob": GlobInput,
    "grep": GrepInput,
}


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


async def run_tool(
    workspace: Path,
    name: str,
    tool_input: dict[str, Any],
    limits: ToolLimits = _DEFAULT_LIMITS,
    *,
    on_progress: Callable[[], None] | None = None,
    policy: SandboxPolicy | None = None,
) -> ToolOutcome:
    """Run one built-in sandbox tool inside ``workspace``.

    Model mistakes come back as ``is_error`` outcomes; only caller bugs raise (a missing
    workspace directory raises FileNotFoundError).

    ``policy`` (see :mod:`managed_agents._sandbox.isolation`): bash runs in a bubblewrap sandbox
    with its resource limits, or is refused when no isolation is available (unless the policy
    allows unsandboxed commands), and write/edit respect the workspace quota. None: bash runs
    unsandboxed as before (cwd = workspace, scrubbed environment, timeout and output cap only).
    """
    root = workspace_root(workspace)
    if name not in _INPUT_MODELS:
        return ToolOutcome.error(f"unknown tool {name!r}; available tools: {', '.join(TOOL_NAMES)}")
    if not isinstance(tool_input, dict):
        return ToolOutcome.error(f"invalid input for {name}: the tool input must be a JSON object")
    model = _INPUT_MODELS[name]
    try:
        parsed = model.model_validate(tool_input)
    except ValidationError as exc:
        return ToolOutcome.error(_format_validation_error(name, model, exc))

    try:
        if policy is not None and isinstance(parsed, WriteInput | EditInput):
            await asyncio.to_thread(_check_quota, root, parsed, policy)
        return await _with_progress(_dispatch(root, name, parsed, limits, policy), on_progress)
    except _ToolError as exc:
        return ToolOutcome.error(str(exc))
    except (PathEscapeError, InvalidPathError) as exc:
        return ToolOutcome.error(str(exc))
    except OSError as exc:
        return ToolOutcome.error(f"{name} failed: {exc.strerror or exc}")
    except UnicodeError as exc:  # e.g. a lone surrogate in a path, which no filesystem can encode
        return ToolOutcome.error(f"{name} failed: input text cannot be encoded: {exc}")


def _dispatch(
    root: str, name: str, inp: _Input, limits: ToolLimits, policy: SandboxPolicy | None = None
) -> Coroutine[Any, Any, ToolOutcome]:
    if isinstance(inp, BashInput):
        return _bash(root, inp, limits, policy)
    sync_impls: dict[str, Callable[[str, Any, ToolLimits], ToolOutcome]] = {
        "read": _read,
        "write": _write,
        "edit": _edit,
        "glob": _glob,
        "grep": _grep,
    }
    return asyncio.to_thread(sync_impls[name], root, inp, limits)


async def _with_progress(coro: Coroutine[Any, Any, ToolOutcome], on_progress: Callable[[], None] | None) -> ToolOutcome:
    task = asyncio.ensure_future(coro)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_PROGRESS_INTERVAL_S)
            if done:
                return task.result()
            if on_progress is not None:
                on_progress()
    finally:
        if not task.done():  # we were cancelled (or on_progress raised): stop the tool
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _format_validation_error(name: str, model: type[_Input], exc: ValidationError) -> str:
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in err["loc"]) or "input"
        if err["type"] == "missing":
            problems.append(f"missing required field '{loc}'")
        elif err["type"] == "extra_forbidden":
            problems.append(f"unexpected field '{loc}'")
        else:
            problems.append(f"field '{loc}': {err['msg']}")
    fields = ", ".join(
        f"{fname} (required)" if info.is_required() else fname for fname, info in model.model_fields.items()
    )
    return f"invalid input for {name}: {'; '.join(problems)}. Accepted fields: {fields}."


def _os_error(action: str, given: str, exc: OSError) -> _ToolError:
    return _ToolError(f"could not {action} {given}: {exc.strerror or exc}")


# --------------------------------------------------------------------------------------------
# bash
# --------------------------------------------------------------------------------------------


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass
class _ProcResult:
    kept: bytes  # the first ``cap`` bytes of the combined output
    total: int  # output bytes produced in all
    returncode: int | None
    timed_out: bool


async def _bash(root: str, inp: BashInput, limits: ToolLimits, policy: SandboxPolicy | None = None) -> ToolOutcome:
    if inp.restart:
        return ToolOutcome.text("bash session restarted")
    if inp.command is None:
        raise _ToolError("invalid input for bash: field 'command' is required unless restart is true")
    if "\x00" in inp.command:
        raise _ToolError("invalid input for bash: field 'command' contains a null byte")
    if inp.timeout_ms is None or inp.timeout_ms == 0:
        timeout = limits.default_timeout_s
    elif inp.timeout_ms < 0:
        raise _ToolError("invalid input for bash: field 'timeout_ms' must be >= 0")
    else:
        timeout = min(inp.timeout_ms / 1000.0, limits.max_timeout_s)

    if policy is not None:
        mode, detail = isolation.bash_mode(policy)
        if mode == "refused":
            return ToolOutcome.error(detail)
        if mode == "isolated":
            return await _bash_isolated(root, inp.command, timeout, limits, policy)
        log.warning("%s", detail)

    env = {"PATH": _BASH_PATH, "HOME": root, "LANG": "C.UTF-8", "TERM": "dumb", "PWD": root}
    result = await _run_process([_BASH, "-c", inp.command], env, root, timeout, limits.max_output_bytes)
    return _bash_outcome(result, timeout, limits.max_output_bytes, [])


async def _bash_isolated(
    root: str, command: str, timeout: float, limits: ToolLimits, policy: SandboxPolicy
) -> ToolOutcome:
    cap = limits.max_output_bytes
    try:
        async with isolation.prepare_bash(policy, Path(root), command) as run:
            result = await _run_process(run.argv, run.env, run.cwd, timeout, cap)
            limit_notes = await run.finish(
                result.returncode, result.kept.decode("utf-8", errors="replace"), timed_out=result.timed_out
            )
    except OSError as exc:
        raise _ToolError(f"could not set up the sandbox for bash: {exc}") from exc
    return _bash_outcome(result, timeout, cap, limit_notes)


async def _run_process(argv: list[str], env: dict[str, str], cwd: str, timeout: float, cap: int) -> _ProcResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # own process group: we can kill everything it spawns
        )
    except (OSError, ValueError) as exc:  # E2BIG for huge commands, unencodable text, ...
        raise _ToolError(f"could not start bash: {exc}") from exc

    kept = bytearray()
    total = 0

    async def pump() -> None:
        nonlocal total
        assert proc.stdout is not None
        while True:
            chunk = await proc.stdout.read(_READ_CHUNK)
            if not chunk:
                return
            total += len(chunk)
            room = cap - len(kept)
            if room > 0:
                kept.extend(chunk[:room])

    reader = asyncio.ensure_future(pump())
    waiter = asyncio.ensure_future(proc.wait())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    timed_out = False
    try:
        # proc.wait() only returns once every pipe is closed, so a background job that inherited
        # stdout would hold it up: watch the exit status of bash itself instead.
        while proc.returncode is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                timed_out = True
                break
            if reader.done():  # EOF: the pipe is closed, so proc.wait() returns as soon as bash exits
                await asyncio.wait({waiter}, timeout=remaining)
            else:
                await asyncio.wait({reader}, timeout=min(_EXIT_POLL_S, remaining))
    finally:
        # Whether bash finished, timed out or we were cancelled: nothing it started survives
        # (background jobs included; only processes that left the session with setsid escape;
        # in the bubblewrap sandbox, killing bwrap tears down its whole PID namespace).
        _kill_group(proc.pid)
        # The killed processes close the pipe: drain what they wrote, but never hang on a pipe
        # held open by an escaped process.
        with contextlib.suppress(BaseException):
            await asyncio.wait({reader, waiter}, timeout=_DRAIN_GRACE_S)
        if not (reader.done() and waiter.done()):
            for task in (reader, waiter):
                task.cancel()
            transport = getattr(proc, "_transport", None)
            if transport is not None:
                transport.close()
    return _ProcResult(kept=bytes(kept), total=total, returncode=proc.returncode, timed_out=timed_out)


def _bash_outcome(result: _ProcResult, timeout: float, cap: int, limit_notes: list[str]) -> ToolOutcome:
    text = result.kept.decode("utf-8", errors="replace")
    if not text.strip():
        text = ""
    notes: list[str] = []
    if result.total > cap:
        notes.append(f"[output truncated: {result.total} bytes total, first {cap} shown]")
    notes.extend(limit_notes)
    if result.timed_out:
        notes.append(f"command timed out after {_fmt_seconds(timeout)}")
        is_error = True
    else:
        rc = result.returncode
        is_error = rc != 0 or bool(limit_notes)
        if rc is not None and rc < 0:
            try:
                sig_name = signal.Signals(-rc).name
            except ValueError:
                sig_name = f"signal {-rc}"
            notes.append(f"exit code: {128 - rc} (killed by {sig_name})")
        elif rc:
            notes.append(f"exit code: {rc}")
    if not text and not notes:
        return ToolOutcome.text("(no output)")
    if notes:
        if text and not text.endswith("\n"):
            text += "\n"
        text += "\n".join(notes)
    return ToolOutcome.text(text, is_error=is_error)


def _check_quota(root: str, inp: WriteInput | EditInput, policy: SandboxPolicy) -> None:
    """Refuse a write/edit that would take the workspace over its quota (raises _ToolError)."""
    quota = policy.workspace_quota_bytes
    used = isolation.workspace_usage(root)
    if isinstance(inp, WriteInput):
        growth = len(inp.content.encode("utf-8", errors="surrogatepass"))
        try:
            real = resolve_in_workspace(root, inp.file_path, field="file_path")
            growth -= os.stat(real).st_size  # the old content is replaced
        except (OSError, ValueError):
            pass  # new file, or a bad path: the tool itself reports that
    else:
        growth = len(inp.new_string.encode("utf-8", errors="surrogatepass")) - len(
            inp.old_string.encode("utf-8", errors="surrogatepass")
        )
    if used + max(growth, 0) > quota:
        fmt = isolation.format_bytes
        raise _ToolError(
            f"workspace quota exceeded: {fmt(used)} used of {fmt(quota)}; this change needs "
            f"{fmt(max(growth, 0))} more. Delete files first."
        )


# --------------------------------------------------------------------------------------------
# read / write / edit
# --------------------------------------------------------------------------------------------

_MEDIA_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".pdf"})


def _sniff_media_type(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def _stat_regular_file(real: str, given: str, action: str) -> os.stat_result:
    """stat ``real`` and insist it is a regular file (FIFOs etc. would block reads forever)."""
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise _ToolError(f"file not found: {given}") from None
    except OSError as exc:
        raise _os_error(action, given, exc) from exc
    if stat.S_ISDIR(st.st_mode):
        raise _ToolError(f"{given} is a directory, not a file; use glob or bash (ls) to list it")
    if not stat.S_ISREG(st.st_mode):
        raise _ToolError(f"{given} is not a regular file")
    return st


def _open_for_read(path: str, flags: int) -> int:
    # O_NOFOLLOW: the path was resolved already, so a symlink here means it was swapped in after the
    # check; O_NONBLOCK: never hang on a FIFO swapped in after the regular-file check.
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


def _open_for_write(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def _iter_lines(f: IO[bytes], max_len: int) -> Iterator[tuple[bytes, bool]]:
    """Yield (line, cut): raw lines (newline kept) truncated to ``max_len`` bytes, with memory
    bounded by ``max_len`` even for a gigabyte-long line; ``cut`` says bytes were dropped."""
    while True:
        line = f.readline(max_len)
        if not line:
            return
        cut = False
        if not line.endswith(b"\n"):
            while True:  # skip the rest of an over-long line
                more = f.readline(_READ_CHUNK)
                if not more:
                    break
                if more != b"\n":
                    cut = True
                if more.endswith(b"\n"):
                    break
        yield line, cut


def _read(root: str, inp: ReadInput, limits: ToolLimits) -> ToolOutcome:
    given = inp.file_path
    start, end = 1, 0
    if inp.view_range is not None:
        if len(inp.view_range) != 2:
            raise _ToolError(
                f"invalid input for read: field 'view_range' must be [start_line, end_line], got {inp.view_range}"
            )
        start, end = inp.view_range
        if start < 1:
            raise _ToolError(f"invalid input for read: view_range start_line must be >= 1, got {start}")
        if end > 0 and end < start:
            raise _ToolError(
                f"invalid input for read: view_range end_line ({end}) is before start_line ({start}); "
                "use 0 to read to the end of the file"
            )
    real = resolve_in_workspace(root, given, field="file_path")
    st = _stat_regular_file(real, given, "read")
    try:
        with open(real, "rb", opener=_open_for_read) as f:
            head = f.read(_BINARY_SNIFF_BYTES)
            if os.path.splitext(real)[1].lower() in _MEDIA_EXTENSIONS or (
                os.path.splitext(given)[1].lower() in _MEDIA_EXTENSIONS
            ):
                media_type = _sniff_media_type(head)
                if media_type is not None:
                    return _read_media(f, given, media_type, st.st_size, limits)
            if b"\x00" in head:
                raise _ToolError(
                    f"{given} is a binary file ({st.st_size} bytes); read returns text, images "
                    "(png, jpg, gif, webp) and PDFs only. Inspect it with bash (e.g. file, xxd)."
                )
            f.seek(0)
            return _read_text(f, given, st.st_size, start, end, inp.view_range is not None, limits)
    except OSError as exc:
        raise _os_error("read", given, exc) from exc


def _read_media(f: IO[bytes], given: str, media_type: str, size: int, limits: ToolLimits) -> ToolOutcome:
    if size > limits.max_media_bytes:
        raise _ToolError(
            f"{given} is {size} bytes; images and PDFs larger than "
            f"{_fmt_bytes(limits.max_media_bytes)} cannot be returned"
        )
    f.seek(0)
    data = base64.b64encode(f.read(limits.max_media_bytes + 1)).decode("ascii")
    block_type = "document" if media_type == "application/pdf" else "image"
    return ToolOutcome(
        content=[{"type": block_type, "source": {"type": "base64", "media_type": media_type, "data": data}}]
    )


def _read_text(
    f: IO[bytes], given: str, size: int, start: int, end: int, ranged: bool, limits: ToolLimits
) -> ToolOutcome:
    cap = limits.max_read_bytes
    out = bytearray()
    lineno = 0
    first_shown = last_shown = 0
    truncated = partial_line = False
    for raw, cut in _iter_lines(f, cap + 1):
        lineno += 1
        if lineno < start:
            continue
        if end > 0 and lineno > end:
            break
        if cut or len(raw) > cap or len(out) + len(raw) > cap:
            truncated = True
            if not out:
                out.extend(raw[:cap])
                partial_line = True
                first_shown = lineno
            break
        out.extend(raw)
        first_shown = first_shown or lineno
        last_shown = lineno

    if ranged and not out:
        raise _ToolError(f"view_range start_line {start} is beyond the end of {given} ({lineno} lines)")
    text = out.decode("utf-8", errors="replace")
    if not out:
        return ToolOutcome.text(f"(file {given} is empty)")
    if partial_line:
        text += (
            f"\n[line {first_shown} is longer than the {_fmt_bytes(cap)} read limit; only its "
            "beginning is shown. Use bash (e.g. cut -c or head -c) to see the rest]"
        )
    elif truncated:
        if not text.endswith("\n"):
            text += "\n"
        text += (
            f"[truncated at the {_fmt_bytes(cap)} read limit: showing lines {first_shown}-{last_shown} "
            f"of a {size}-byte file. Use view_range [{last_shown + 1}, 0] to read further]"
        )
    return ToolOutcome.text(text)


def _write(root: str, inp: WriteInput, limits: ToolLimits) -> ToolOutcome:
    given = inp.file_path
    real = resolve_in_workspace(root, given, field="file_path")
    try:
        data = inp.content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _ToolError(f"invalid input for write: field 'content' is not valid Unicode: {exc}") from exc
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _os_error("write", given, exc) from exc
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise _ToolError(f"{given} is a directory; give the path of a file to write")
        if not stat.S_ISREG(st.st_mode):
            raise _ToolError(f"{given} is not a regular file")
    try:
        os.makedirs(os.path.dirname(real), exist_ok=True)
        with open(real, "wb", opener=_open_for_write) as f:
            f.write(data)
    except OSError as exc:
        raise _os_error("write", given, exc) from exc
    return ToolOutcome.text(f"wrote {len(data)} bytes to {given}")


def _edit(root: str, inp: EditInput, limits: ToolLimits) -> ToolOutcome:
    given = inp.file_path
    if inp.old_string == "":
        raise _ToolError("invalid input for edit: field 'old_string' must not be empty (use write to create a file)")
    if inp.old_string == inp.new_string:
        raise _ToolError("invalid input for edit: old_string and new_string are identical; nothing to change")
    real = resolve_in_workspace(root, given, field="file_path")
    st = _stat_regular_file(real, given, "edit")
    if st.st_size > _MAX_EDIT_BYTES:
        raise _ToolError(
            f"{given} is {st.st_size} bytes, larger than the {_fmt_bytes(_MAX_EDIT_BYTES)} edit limit; "
            "use bash (e.g. sed) instead"
        )
    try:
        with open(real, "rb", opener=_open_for_read) as f:
            raw = f.read()
    except OSError as exc:
        raise _os_error("read", given, exc) from exc
    if b"\x00" in raw[:_BINARY_SNIFF_BYTES]:
        raise _ToolError(f"{given} is a binary file; edit only works on UTF-8 text files")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _ToolError(f"{given} is not valid UTF-8 text; edit only works on UTF-8 text files") from None
    count = text.count(inp.old_string)
    if count == 0:
        raise _ToolError(f"old_string not found in {given}")
    if count > 1 and not inp.replace_all:
        raise _ToolError(
            f"old_string occurs {count} times in {given}; add surrounding context to make it unique, "
            "or set replace_all to true to replace every occurrence"
        )
    new_text = text.replace(inp.old_string, inp.new_string, -1 if inp.replace_all else 1)
    try:
        data = new_text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _ToolError(f"invalid input for edit: field 'new_string' is not valid Unicode: {exc}") from exc
    try:
        with open(real, "wb", opener=_open_for_write) as f:
            f.write(data)
    except OSError as exc:
        raise _os_error("write", given, exc) from exc
    replaced = count if inp.replace_all else 1
    return ToolOutcome.text(f"edited {given} ({replaced} replacement{'s' if replaced != 1 else ''})")


# --------------------------------------------------------------------------------------------
# Directory walking shared by glob and grep
# --------------------------------------------------------------------------------------------


@dataclass
class _WalkBudget:
    remaining: int = _MAX_WALK_ENTRIES
    exhausted: bool = False


def _walk(root: str, start: str, budget: _WalkBudget) -> Iterator[tuple[str, str, bool]]:
    """Yield ``(rel, real, is_dir)`` for everything below the real directory ``start``.

    ``rel`` is POSIX and relative to ``start``; ``real`` is the path to open. Symlinks are
    reported (resolved) only when their target lies inside the workspace ``root`` and are never
    descended into, so the walk cannot leave the workspace or loop. Entries are sorted by name.
    """
    stack: list[tuple[str, str]] = [(start, "")]
    while stack:
        directory, rel_dir = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            if budget.remaining <= 0:
                budget.exhausted = True
                return
            budget.remaining -= 1
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if not is_within(root, real):
                        continue
                    yield rel, real, os.path.isdir(real)
                elif entry.is_dir(follow_symlinks=False):
                    yield rel, entry.path, True
                    subdirs.append((entry.path, rel))
                else:
                    yield rel, entry.path, False
            except OSError:
                continue
        stack.extend(reversed(subdirs))


def _join_rel(*parts: str) -> str:
    kept = [p for p in parts if p and p != "."]
    return posixpath.join(*kept) if kept else "."


# --------------------------------------------------------------------------------------------
# glob
# --------------------------------------------------------------------------------------------


def _find_class_end(pat: str, i: int) -> int:
    """Index of the ']' closing the character class opened at ``pat[i] == '['``, or -1."""
    j = i + 1
    if j < len(pat) and pat[j] in "!^":
        j += 1
    if j < len(pat) and pat[j] == "]":
        j += 1
    while j < len(pat) and pat[j] != "]":
        j += 1
    return j if j < len(pat) else -1


def _expand_braces(pat: str, out: list[str]) -> None:
    """Bash-style brace expansion ({a,b} -> a | b, nested allowed) appended to ``out``."""
    i = 0
    while i < len(pat):
        c = pat[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            close = _find_class_end(pat, i)
            if close != -1:
                i = close + 1
                continue
        if c == "{":
            depth, j, commas, close = 0, i, [], -1
            while j < len(pat):
                cj = pat[j]
                if cj == "\\":
                    j += 2
                    continue
                if cj == "{":
                    depth += 1
                elif cj == "}":
                    depth -= 1
                    if depth == 0:
                        close = j
                        break
                elif cj == "," and depth == 1:
                    commas.append(j)
                j += 1
            if close != -1 and commas:
                bounds = [i, *commas, close]
                prefix, suffix = pat[:i], pat[close + 1 :]
                for a, b in itertools.pairwise(bounds):
                    _expand_braces(prefix + pat[a + 1 : b] + suffix, out)
                    if len(out) > _MAX_BRACE_EXPANSIONS:
                        raise _ToolError(f"glob pattern expands to more than {_MAX_BRACE_EXPANSIONS} alternatives")
                return
        i += 1
    out.append(pat)


def _segment_regex(seg: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            while i < len(seg) and seg[i] == "*":
                i += 1
            out.append("[^/]*")
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(seg):
            i += 1
            out.append(re.escape(seg[i]))
        elif c == "[":
            close = _find_class_end(seg, i)
            if close == -1:
                out.append(re.escape(c))
            else:
                body = seg[i + 1 : close]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                escaped = "".join(ch if ch == "-" else re.escape(ch) for ch in body)
                out.append(f"[^/{escaped}]" if negate else f"[{escaped}]")
                i = close
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _segments_regex(segs: list[str]) -> re.Pattern[str]:
    parts: list[str] = []
    for idx, seg in enumerate(segs):
        last = idx == len(segs) - 1
        if seg == "**":
            parts.append(".+" if last else "(?:[^/]+/)*")
        else:
            parts.append(_segment_regex(seg) + ("" if last else "/"))
    return re.compile("".join(parts), re.DOTALL)


def _glob(root: str, inp: GlobInput, limits: ToolLimits) -> ToolOutcome:
    pattern = inp.pattern
    check_path_text(pattern, field="pattern")
    if pattern.startswith("/"):
        raise _ToolError(
            f"glob pattern must be relative (no leading /): {pattern}; use the path field to choose a "
            "directory inside the workspace"
        )
    search_root = root if inp.path is None else resolve_in_workspace(root, inp.path, field="path")
    if not os.path.isdir(search_root):
        if not os.path.exists(search_root):
            raise _ToolError(f"path not found: {inp.path}")
        raise _ToolError(f"path is not a directory: {inp.path}")
    root_rel = display_relpath(root, search_root)

    expanded: list[str] = []
    _expand_braces(pattern, expanded)
    # literal prefix (joined) -> regexes for the rest, so each base directory is walked once
    groups: dict[tuple[str, ...], list[re.Pattern[str] | None]] = {}
    for alt in expanded:
        if alt.startswith("/"):
            raise _ToolError(f"glob pattern must be relative (no leading /): {pattern}")
        segs = [s for s in alt.split("/") if s not in ("", ".")]
        if ".." in segs:
            raise PathEscapeError(pattern)
        if not segs:
            continue
        n_literal = 0
        while n_literal < len(segs) and not (_GLOB_MAGIC & set(segs[n_literal])):
            n_literal += 1
        prefix, rest = tuple(segs[:n_literal]), segs[n_literal:]
        try:
            groups.setdefault(prefix, []).append(_segments_regex(rest) if rest else None)
        except re.error as exc:
            raise _ToolError(f"invalid glob pattern {pattern!r}: {exc}") from exc

    found: dict[str, float] = {}  # display path -> mtime
    budget = _WalkBudget()
    for prefix, regexes in groups.items():
        base = os.path.realpath(os.path.join(search_root, *prefix))
        if not is_within(root, base):
            raise PathEscapeError(pattern)
        base_rel = _join_rel(root_rel, *prefix)
        if None in regexes and os.path.exists(base):  # a fully literal pattern names one path
            found[base_rel + ("/" if os.path.isdir(base) else "")] = _mtime(base)
        compiled = [r for r in regexes if r is not None]
        if not compiled or not os.path.isdir(base):
            continue
        for rel, real, is_dir in _walk(root, base, budget):
            if any(r.fullmatch(rel) for r in compiled):
                found[_join_rel(base_rel, rel) + ("/" if is_dir else "")] = _mtime(real)

    if not found:
        text = "no matches"
    else:
        ordered = sorted(found.items(), key=lambda item: (-item[1], item[0]))
        shown = [p for p, _ in ordered[: limits.max_glob_results]]
        text = "\n".join(shown)
        if len(ordered) > len(shown):
            text += f"\n[showing the {len(shown)} newest of {len(ordered)} matches; narrow the pattern or path]"
    if budget.exhausted:
        text += f"\n[search stopped after {_MAX_WALK_ENTRIES} entries; narrow the pattern or path]"
    return ToolOutcome.text(text)


def _mtime(real: str) -> float:
    try:
        return os.stat(real).st_mtime
    except OSError:
        return 0.0


# --------------------------------------------------------------------------------------------
# grep
# --------------------------------------------------------------------------------------------


def _grep(root: str, inp: GrepInput, limits: ToolLimits) -> ToolOutcome:
    try:
        regex = re.compile(inp.pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise _ToolError(f"invalid regular expression in field 'pattern' {inp.pattern!r}: {exc}") from exc
    target = root if inp.path is None else resolve_in_workspace(root, inp.path, field="path")
    if not os.path.exists(target):
        raise _ToolError(f"path not found: {inp.path}")

    budget = _WalkBudget()
    files: Iterable[tuple[str, str]]
    if os.path.isdir(target):
        base_rel = display_relpath(root, target)
        files = ((_join_rel(base_rel, rel), real) for rel, real, is_dir in _walk(root, target, budget) if not is_dir)
    else:
        files = [(display_relpath(root, target), target)]

    cap = limits.max_output_bytes
    out: list[str] = []
    size = 0
    truncated = False
    for display, real in files:
        try:
            if not stat.S_ISREG(os.stat(real).st_mode):
                continue
            with open(real, "rb", opener=_open_for_read) as f:
                if b"\x00" in f.read(_BINARY_SNIFF_BYTES):
                    continue
                f.seek(0)
                for lineno, (raw, _cut) in enumerate(_iter_lines(f, _MAX_GREP_LINE_BYTES), 1):
                    line = raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", errors="replace")
                    if regex.search(line) is None:
                        continue
                    if len(line) > _MAX_GREP_LINE_CHARS:
                        line = line[:_MAX_GREP_LINE_CHARS] + " [line truncated]"
                    entry = f"{display}:{lineno}:{line}"
                    entry_size = len(entry.encode("utf-8", errors="replace")) + 1
                    if size + entry_size > cap:
                        truncated = True
                        break
                    out.append(entry)
                    size += entry_size
        except OSError:
            continue  # unreadable file: skip it like rg does
        if truncated:
            break

    text = "\n".join(out) if out else "no matches"
    if truncated:
        text += f"\n[output truncated at {_fmt_bytes(cap)}; narrow the pattern or path]"
    if budget.exhausted:
        text += f"\n[search stopped after {_MAX_WALK_ENTRIES} entries; narrow the path]"
    return ToolOutcome.text(text)
