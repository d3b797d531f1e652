"""OS-level isolation of the sandbox's ``bash`` tool with bubblewrap (``bwrap``).

:func:`managed_agents._sandbox.tools.run_tool` takes a :class:`SandboxPolicy` (``policy=``); with
``isolation="bubblewrap"`` every ``bash`` call runs in a throw-away bubblewrap sandbox built by
:func:`bash_argv`. Requires bubblewrap >= 0.8.0 (``--disable-userns``, ``--size``) and user
namespaces.

What the command sees
---------------------
* ``/``: a read-only *runtime view*. With ``runtime_root=/`` (the default) that is NOT the whole
  host: only ``/usr``, ``/bin``, ``/sbin``, ``/lib*`` and an allowlist of harmless ``/etc`` files
  (:data:`HOST_ETC_ALLOWLIST`: loader cache, passwd/group, hosts/resolv.conf, CA certificates,
  alternatives, ...) are bound, so ``/root``, ``/home``, ``/opt``, ``/srv``, ``/var``, ``/run``,
  the repository, other sessions' workspaces, ``/etc/shadow``, ``/etc/pip.conf``, ``/etc/npmrc``
  etc. simply do not exist inside. Any other ``runtime_root`` is a root filesystem directory (an
  unpacked image) whose top-level entries are all bound read-only.
* ``/workspace``: the session workspace, read-write; it is the cwd, ``HOME`` and ``PWD``.
* ``/mnt/memory/<slug>``: the session's memory stores (``workspace_binds``: folders of the
  workspace, bound again there; a read-only store is read-only at both places).
* ``/tmp`` and ``/dev/shm``: private tmpfs of ``tmp_size_bytes`` each that vanish with the command.
  Everything else (``/`` itself, ``/dev``, the runtime view) is read-only.
* ``/dev``: a fresh minimal read-only /dev (null, zero, full, random, urandom, tty, pts);
  ``/proc``: a fresh procfs of the command's own PID namespace (the worker's processes, including
  its ``/proc/<pid>/environ``, are not visible; nor can they be signalled).
* New user, PID, IPC, UTS and (when possible) cgroup namespaces; no capabilities
  (``--cap-drop ALL``), no new privileges, no further user namespaces (``--disable-userns``),
  ``--new-session`` (no TIOCSTI into a terminal), ``--die-with-parent``.
* Environment: only ``PATH``, ``HOME``, ``LANG``, ``TERM``, ``PWD`` (``--clearenv``); bwrap itself is
  also started with a clean environment, so no process inside (not even bwrap's pid 1, whose
  ``/proc/1/environ`` is readable) holds the worker's secrets.
* Network: ``limited`` without hosts (the default) = a new, empty network namespace (loopback
  only: nothing on the host, not even 127.0.0.1, is reachable); ``unrestricted`` = the host's
  network namespace (including services bound to the host's 127.0.0.1 and abstract unix
  sockets). Allowlists (``allowed_hosts``, ``allow_mcp_servers``, ``allow_package_managers``)
  need a filtering proxy and are refused at validation: not supported yet.

Limits (per command) and what enforces them
-------------------------------------------
* wall time: the caller's timeout (``ToolLimits``); the whole sandbox dies with bwrap.
* CPU time: ``RLIMIT_CPU`` (per process: SIGXCPU at ``cpu_seconds``, SIGKILL one second later).
* memory: ``RLIMIT_AS`` per process (allocations beyond ``memory_bytes`` fail); with a cgroup v2
  ``memory`` controller also ``memory.max`` for the whole command (OOM kill, reported exactly).
* processes: a per-command cgroup with ``pids.max`` when a writable pids cgroup exists (cgroup v2
  parent with ``pids`` in ``cgroup.subtree_control``: ``cgroup_parent`` or the worker's own cgroup;
  otherwise the cgroup v1 ``pids`` hierarchy). Otherwise ``RLIMIT_NPROC``, set inside the
  command's own user namespace, which the kernel (>= 5.14) counts per user namespace, so it caps
  this command alone -- but only for a non-root worker: the kernel exempts uid 0 (the sandbox
  maps its user to the worker's uid). A root worker without a usable pids cgroup refuses bash
  (unless ``allow_unsandboxed``: then it runs isolated without a process cap, with a warning).
* file size: ``RLIMIT_FSIZE`` = min(``file_size_bytes``, workspace quota left), so a single
  file cannot overrun the quota; ``/tmp`` is a tmpfs capped at ``tmp_size_bytes``.
* workspace quota: measured (allocated blocks, hard links counted once) after every command (the
  last measurement is the next command's starting point; the first command of a worker process
  measures before too); over quota afterwards -> an ``is_error`` result; over quota before -> the
  command runs with ``RLIMIT_FSIZE`` 0 so it can delete files but not grow any. write/edit refuse
  changes that would exceed the quota. Best effort: many files each under the per-file cap can
  overshoot within one command (no filesystem quota is used). The walk costs ~5 us per file.
* output: the caller's output cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fnmatch
import functools
import itertools
import logging
import os
import posixpath
import re
import resource
import shutil
import signal
import stat
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from managed_agents._models.session import NetworkConfig

__all__ = [
    "HOST_ETC_ALLOWLIST",
    "HOST_TOP_LEVEL",
    "SANDBOX_WORKSPACE",
    "BashRun",
    "NetworkConfig",
    "SandboxPolicy",
    "WorkspaceBind",
    "bash_argv",
    "bash_mode",
    "format_bytes",
    "isolation_available",
    "prepare_bash",
    "process_limit_mechanism",
    "spawn_env",
    "workspace_usage",
]

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

SANDBOX_WORKSPACE = "/workspace"
"""Where the session workspace appears inside the sandbox (cwd, HOME and PWD of every command)."""

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"

HOST_TOP_LEVEL: tuple[str, ...] = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
"""Top-level host entries of the default runtime view (``runtime_root=/``); symlinks are recreated."""

HOST_ETC_ALLOWLIST: tuple[str, ...] = (
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "debian_version",
    "gai.conf",
    "gitconfig",
    "group",
    "host.conf",
    "hostname",
    "hosts",
    "inputrc",
    "java-*",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "localtime",
    "magic",
    "magic.mime",
    "mime.types",
    "networks",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "perl",
    "pki",
    "profile",
    "protocols",
    "python3*",
    "resolv.conf",
    "services",
    "ssl",
    "terminfo",
    "timezone",
    "vim",
)
"""``/etc`` entries (fnmatch patterns) of the default runtime view. Deliberately absent: shadow,
gshadow, sudoers, ssh/ (host keys), pip.conf and npmrc (index tokens), environment, machine-id."""

# Top-level names of a custom runtime_root that are never bound (the sandbox provides its own).
# /mnt is where memory stores are mounted: bwrap must be able to create /mnt/memory/<slug> there.
_ROOTFS_SKIP = frozenset({"proc", "dev", "sys", "tmp", "run", "workspace", "mnt", "lost+found"})
_RESERVED_MOUNTS = ("/proc", "/dev", SANDBOX_WORKSPACE)
_BWRAP_SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
_PROBE_TIMEOUT_S = 20.0
_CGROUP_CLEANUP_S = 5.0
_CPU_GRACE_S = 1  # RLIMIT_CPU hard limit = soft + this: SIGXCPU first (reportable), then SIGKILL
_MARGIN_PIDS = 2  # bwrap's monitor and its pid 1 live in the per-command cgroup too

_SIGXCPU_RC = 128 + signal.SIGXCPU
_SIGXFSZ_RC = 128 + signal.SIGXFSZ
_SETUP_FAILED_RC = 125  # the rlimit prologue could not apply a limit
_FORK_FAILED = re.compile(
    r"fork: (?:retry: )?Resource temporarily unavailable|Cannot fork|can't fork|"
    r"BlockingIOError: \[Errno 11\]|Resource temporarily unavailable \(os error 11\)"
)
_OUT_OF_MEMORY = re.compile(
    r"\bMemoryError\b|Cannot allocate memory|memory exhausted|[Oo]ut of memory|std::bad_alloc|"
    r"failed to allocate|cannot allocate|allocation failed|memory allocation of \d+ bytes failed"
)


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    return f"{n} bytes"


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------


Mount = tuple[Path, Path]
"""(host_path, sandbox_path)."""


class WorkspaceBind(BaseModel):
    """A folder of the workspace that bash also sees elsewhere (a memory store at /mnt/memory/<slug>).

    ``read_only`` makes both views read-only: the folder is bound read-only over its own place under
    /workspace too, so the workspace path is no way around it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="Path relative to the workspace root, e.g. memory/notes")
    target: Path = Field(description="Absolute path inside the sandbox, e.g. /mnt/memory/notes")
    read_only: bool = False

    @field_validator("source")
    @classmethod
    def _relative(cls, source: str) -> str:
        if not source or source.startswith("/") or posixpath.normpath(source) != source or ".." in source.split("/"):
            raise ValueError(f"source of a workspace bind must be a normalised relative path: {source!r}")
        return source


class SandboxPolicy(BaseModel):
    """How ``bash`` is isolated and limited on a sandbox worker (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    isolation: Literal["bubblewrap", "none"] = "bubblewrap"
    allow_unsandboxed: bool = False
    """Run bash without isolation when ``isolation="none"`` or bubblewrap does not work here
    (logged as a warning on every call); otherwise bash is refused in those cases."""
    runtime_root: Path = Path("/")
    """``/``: the minimal read-only host view; anything else: a root filesystem directory."""
    networking: NetworkConfig = Field(default_factory=NetworkConfig)
    cpu_seconds: int = Field(default=120, gt=0)
    memory_bytes: int = Field(default=1 * GiB, ge=64 * MiB)
    max_processes: int = Field(default=256, ge=4)
    file_size_bytes: int = Field(default=256 * MiB, gt=0)
    workspace_quota_bytes: int = Field(default=1 * GiB, gt=0)
    tmp_size_bytes: int = Field(default=256 * MiB, gt=0)
    """Size of each of the private /tmp and /dev/shm tmpfs (they are memory)."""
    readonly_mounts: tuple[Mount, ...] = ()
    writable_mounts: tuple[Mount, ...] = ()
    workspace_binds: tuple[WorkspaceBind, ...] = ()
    cgroup_parent: Path | None = None
    """A delegated cgroup v2 directory for the per-command cgroups (``pids``, and ``memory`` when
    available, enabled in its ``cgroup.subtree_control``). None: auto-detect (see module doc)."""

    @field_validator("runtime_root", "cgroup_parent")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_absolute():
            raise ValueError(f"must be an absolute path: {v}")
        return v

    @field_validator("readonly_mounts", "writable_mounts")
    @classmethod
    def _check_mounts(cls, mounts: tuple[Mount, ...]) -> tuple[Mount, ...]:
        for host, inside in mounts:
            if not host.is_absolute():
                raise ValueError(f"host path of a mount must be absolute: {host}")
            text = str(inside)
            if not inside.is_absolute() or posixpath.normpath(text) != text or ".." in inside.parts:
                raise ValueError(f"sandbox path of a mount must be absolute and normalised: {inside}")
            if text == "/":
                raise ValueError("a mount cannot replace the sandbox's /")
            for reserved in _RESERVED_MOUNTS:
                if text == reserved or text.startswith(reserved + "/"):
                    raise ValueError(f"sandbox path {inside} is reserved ({reserved} is provided by the sandbox)")
        return mounts

    @field_validator("workspace_binds")
    @classmethod
    def _check_binds(cls, binds: tuple[WorkspaceBind, ...]) -> tuple[WorkspaceBind, ...]:
        cls._check_mounts(tuple((Path("/"), b.target) for b in binds))
        return binds

    @model_validator(mode="after")
    def _distinct_mounts(self) -> SandboxPolicy:
        targets = [str(inside) for _, inside in (*self.readonly_mounts, *self.writable_mounts)]
        targets += [str(b.target) for b in self.workspace_binds]
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise ValueError(f"several mounts target {', '.join(dupes)}")
        return self


# --------------------------------------------------------------------------------------------
# Availability
# --------------------------------------------------------------------------------------------


def _bwrap_path() -> str | None:
    return shutil.which("bwrap", path=_BWRAP_SEARCH_PATH)


def spawn_env() -> dict[str, str]:
    """The environment bwrap itself is started with: nothing of the worker's (no secrets)."""
    return {"PATH": SANDBOX_PATH, "LANG": "C.UTF-8"}


@functools.cache
def isolation_available() -> tuple[bool, str]:
    """Probe (once per process; ``isolation_available.cache_clear()`` to redo) that bubblewrap
    really runs here with the namespaces :func:`bash_argv` uses. Returns (ok, reason)."""
    bwrap = _bwrap_path()
    if bwrap is None:
        return False, "bubblewrap (bwrap) is not installed"
    with tempfile.TemporaryDirectory(prefix="bwrap-probe-") as tmp:
        argv = bash_argv(SandboxPolicy(), Path(tmp), "exit 0")
        try:
            proc = subprocess.run(
                argv,
                env=spawn_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_PROBE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"bubblewrap could not run: {exc}"
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).decode("utf-8", errors="replace").strip()
        return False, f"bubblewrap does not work here (exit code {proc.returncode}): {detail[:500]}"
    return True, f"bubblewrap works ({bwrap})"


BashMode = Literal["isolated", "unsandboxed", "refused"]


def bash_mode(policy: SandboxPolicy) -> tuple[BashMode, str]:
    """How bash runs under ``policy``: ("isolated", detail), ("unsandboxed", why: log it loudly)
    or ("refused", the message for the model)."""
    hint = "set allow_unsandboxed to run commands unsandboxed"
    if policy.isolation == "none":
        why = 'sandbox isolation is set to "none"'
        refusal = f"bash is disabled: {why}; {hint}"
    else:
        ok, reason = isolation_available()
        if ok:
            mechanism, detail = process_limit_mechanism(policy)
            if mechanism is not None or policy.allow_unsandboxed:
                return "isolated", f"{reason}; process limit: {detail}"
            return (
                "refused",
                f"bash is disabled: the sandbox cannot enforce its process limit on this worker ({detail}); "
                "run the worker as a non-root user or give it a writable pids cgroup (cgroup_parent), "
                "or set allow_unsandboxed to run commands without a process limit",
            )
        why = f"no isolation layer (bubblewrap) on this worker: {reason}"
        refusal = f"bash is disabled: no isolation layer (bubblewrap) on this worker; {hint} ({reason})"
    if policy.allow_unsandboxed:
        return "unsandboxed", f"bash runs UNSANDBOXED on this worker ({why}; allow_unsandboxed is set)"
    return "refused", refusal


# --------------------------------------------------------------------------------------------
# bwrap argv
# --------------------------------------------------------------------------------------------


@functools.cache
def _runtime_view_args(runtime_root: str) -> tuple[str, ...]:
    """bwrap arguments that build the read-only ``/`` (cached: the runtime is not expected to
    change under a running worker)."""
    args: list[str] = []

    def add(host: str, inside: str) -> None:
        try:
            st = os.lstat(host)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):
            args.extend(("--symlink", os.readlink(host), inside))
        elif stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
            args.extend(("--ro-bind", host, inside))

    if runtime_root == "/":
        for name in HOST_TOP_LEVEL:
            add("/" + name, "/" + name)
        args.extend(("--dir", "/etc"))
        try:
            entries = sorted(os.listdir("/etc"))
        except OSError:
            entries = []
        for name in entries:
            if any(fnmatch.fnmatchcase(name, pat) for pat in HOST_ETC_ALLOWLIST):
                # Bind (following symlinks such as resolv.conf -> /run/...): the target may be outside the view.
                args.extend(("--ro-bind-try", "/etc/" + name, "/etc/" + name))
    else:
        for name in sorted(os.listdir(runtime_root)):
            if name not in _ROOTFS_SKIP:
                add(os.path.join(runtime_root, name), "/" + name)
    return tuple(args)


def _clamp(value: int, res: int) -> int:
    """Limit ``value`` to the worker's own hard limit (an unprivileged process cannot raise it)."""
    hard = resource.getrlimit(res)[1]
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def _rlimit_prologue(policy: SandboxPolicy, file_size_bytes: int) -> str:
    cpu_soft = _clamp(policy.cpu_seconds, resource.RLIMIT_CPU)
    cpu_hard = _clamp(policy.cpu_seconds + _CPU_GRACE_S, resource.RLIMIT_CPU)
    mem_kib = _clamp(policy.memory_bytes, resource.RLIMIT_AS) // KiB
    fsize_kib = _clamp(file_size_bytes, resource.RLIMIT_FSIZE) // KiB  # bash counts -f in KiB
    nproc = _clamp(policy.max_processes, resource.RLIMIT_NPROC)
    steps = [
        "ulimit -c 0",
        f"ulimit -S -t {cpu_soft}",
        f"ulimit -H -t {cpu_hard}",
        f"ulimit -v {mem_kib}",
        f"ulimit -f {fsize_kib}",
        f"ulimit -u {nproc}",
    ]
    return " && ".join(steps) + f' || exit {_SETUP_FAILED_RC}\nexec bash -c "$1"'


def bash_argv(
    policy: SandboxPolicy,
    workspace: Path,
    command: str,
    *,
    file_size_bytes: int | None = None,
    cgroup_procs: Path | None = None,
) -> list[str]:
    """The full argv that runs ``bash -c command`` in a sandbox for ``workspace`` under ``policy``.

    Spawn it with ``env=spawn_env()`` and stdin/stdout of your choice, in a new session.
    ``file_size_bytes`` overrides ``policy.file_size_bytes`` for RLIMIT_FSIZE (the caller passes
    the workspace quota left); ``cgroup_procs`` (a ``cgroup.procs`` file) makes a ``/bin/sh``
    prologue move itself there before exec'ing bwrap, so every sandboxed process is in it.
    """
    bwrap = _bwrap_path() or "/usr/bin/bwrap"
    fsize = policy.file_size_bytes if file_size_bytes is None else max(0, file_size_bytes)
    argv: list[str] = []
    if cgroup_procs is not None:
        sh = shutil.which("sh", path=_BWRAP_SEARCH_PATH) or "/bin/sh"
        argv += [sh, "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh", str(cgroup_procs)]
    argv += [
        bwrap,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    if policy.networking.isolated:
        argv.append("--unshare-net")
    argv += [
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
    ]
    argv += _runtime_view_args(str(policy.runtime_root))
    tmp_size = str(policy.tmp_size_bytes)
    argv += ["--dev", "/dev", "--perms", "1777", "--size", tmp_size, "--tmpfs", "/dev/shm", "--proc", "/proc"]
    argv += ["--perms", "1777", "--size", tmp_size, "--tmpfs", "/tmp"]
    for host, inside in policy.readonly_mounts:
        argv += ["--ro-bind", str(host), str(inside)]
    for host, inside in policy.writable_mounts:
        argv += ["--bind", str(host), str(inside)]
    argv += ["--bind", os.path.abspath(workspace), SANDBOX_WORKSPACE, "--chdir", SANDBOX_WORKSPACE]
    for bind in policy.workspace_binds:
        folder = _workspace_folder(workspace, bind.source)
        argv += ["--ro-bind" if bind.read_only else "--bind", folder, str(bind.target)]
        if bind.read_only:
            argv += ["--ro-bind", folder, f"{SANDBOX_WORKSPACE}/{bind.source}"]
    # The sandbox's / and /dev are unbounded tmpfs (memory) of bwrap's: make them read-only.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    argv += ["--clearenv"]
    env = {"PATH": SANDBOX_PATH, "HOME": SANDBOX_WORKSPACE, "LANG": "C.UTF-8", "TERM": "dumb", "PWD": SANDBOX_WORKSPACE}
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += ["--", "bash", "-c", _rlimit_prologue(policy, fsize), "bash", command]
    return argv


def _workspace_folder(workspace: Path, source: str) -> str:
    """The real path of a workspace folder to bind, refusing anything that is not a directory
    inside the workspace: the agent controls the workspace and could have replaced the folder with
    a symlink to a host directory, which bwrap would follow (on the host) when binding it."""
    root = os.path.realpath(workspace)
    host = os.path.realpath(os.path.join(root, source))
    if host != os.path.join(root, source) or not os.path.isdir(host) or os.path.islink(host):
        raise OSError(errno.EINVAL, f"{source} is not a folder of the workspace (was it replaced?)")
    return host


# --------------------------------------------------------------------------------------------
# Workspace usage
# --------------------------------------------------------------------------------------------


def workspace_usage(path: Path | str) -> int:
    """Bytes allocated on disk under ``path`` (st_blocks; hard links once; symlinks not followed)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [os.fspath(path)]
    while stack:
        current = stack.pop()
        try:
            it = os.scandir(current)
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return total


# --------------------------------------------------------------------------------------------
# Per-command cgroups (process cap, and memory cap on cgroup v2)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CgroupBase:
    path: Path  # per-command cgroups are created directly under it
    version: int
    memory: bool  # cgroup v2 memory controller available to the children

    @property
    def description(self) -> str:
        if self.version == 1:
            return f"per-command cgroup v1 pids.max under {self.path}"
        extra = " and memory.max" if self.memory else ""
        return f"per-command cgroup v2 pids.max{extra} under {self.path}"


def _mountinfo() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, super options) of every mount."""
    out: list[tuple[str, str, set[str]]] = []
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3:
            mount_point = fields[4].replace("\\040", " ")
            out.append((mount_point, tail[0], set(tail[2].split(","))))
    return out


def _own_cgroups() -> dict[str, str]:
    """Controller list (``""`` for v2) -> this process's cgroup path."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def _v2_base(path: Path, *, enable: bool) -> _CgroupBase | None:
    try:
        enabled = (path / "cgroup.subtree_control").read_text().split()
        if enable and "pids" not in enabled:
            available = (path / "cgroup.controllers").read_text().split()
            wanted = " ".join(f"+{c}" for c in ("pids", "memory") if c in available and c not in enabled)
            if wanted:
                (path / "cgroup.subtree_control").write_text(wanted)
            enabled = (path / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    if "pids" not in enabled or not os.access(path, os.W_OK):
        return None
    return _CgroupBase(path, 2, "memory" in enabled)


def _detect_cgroup_base(explicit: Path | None) -> tuple[_CgroupBase | None, str]:
    if explicit is not None:
        if (explicit / "cgroup.controllers").exists():
            base = _v2_base(explicit, enable=True)
            if base is not None:
                return base, base.description
            return None, f"cgroup_parent {explicit} has no pids controller enabled or is not writable"
        if (explicit / "pids.max").exists() or (explicit / "tasks").exists():  # v1 pids directory
            if os.access(explicit, os.W_OK):
                return _CgroupBase(explicit, 1, False), f"per-command cgroup v1 pids.max under {explicit}"
        return None, f"cgroup_parent {explicit} is not a writable pids cgroup"
    mounts = _mountinfo()
    own = _own_cgroups()
    for mount_point, fstype, _opts in mounts:
        if fstype == "cgroup2" and "" in own:
            base = _v2_base(Path(mount_point + own[""].rstrip("/")), enable=False)
            if base is not None:
                return base, base.description
    for mount_point, fstype, opts in mounts:
        if fstype == "cgroup" and "pids" in opts:
            rel = next((p for ctrls, p in own.items() if "pids" in ctrls.split(",")), "/")
            parent = Path(mount_point + rel.rstrip("/"))
            if os.access(parent, os.W_OK):
                path = parent / "managed-agents-sandbox"
                try:
                    path.mkdir(exist_ok=True)
                except OSError:
                    continue
                return _CgroupBase(path, 1, False), f"per-command cgroup v1 pids.max under {path}"
    return None, "no writable pids cgroup"


_cgroup_bases: dict[Path | None, tuple[_CgroupBase | None, str]] = {}
_swept: set[Path] = set()


def _cgroup_base(policy: SandboxPolicy) -> tuple[_CgroupBase | None, str]:
    key = policy.cgroup_parent
    if key not in _cgroup_bases:
        _cgroup_bases[key] = _detect_cgroup_base(key)
    return _cgroup_bases[key]


def process_limit_mechanism(policy: SandboxPolicy) -> tuple[str | None, str]:
    """("cgroup" | "rlimit" | None, description) of how ``max_processes`` is enforced here."""
    base, why = _cgroup_base(policy)
    if base is not None:
        return "cgroup", why
    if os.geteuid() != 0:
        return "rlimit", "RLIMIT_NPROC in the command's own user namespace (non-root worker)"
    return None, f"{why}, and RLIMIT_NPROC does not bind processes of uid 0 (the worker runs as root)"


_counter = itertools.count()
_CMD_CGROUP = re.compile(r"^cmd-(\d+)-")


def _cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


async def _remove_cgroup(path: Path) -> bool:
    """Kill every process left in the cgroup and remove it. True when it is gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _CGROUP_CLEANUP_S
    kill_file = path / "cgroup.kill"
    while True:
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        for pid in _cgroup_pids(path):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or loop.time() > deadline:
                log.warning("could not remove sandbox cgroup %s: %s", path, exc)
                return False
        await asyncio.sleep(0.01)


async def _sweep_stale(base: _CgroupBase) -> None:
    """Remove per-command cgroups left behind by dead worker processes (once per base)."""
    if base.path in _swept:
        return
    _swept.add(base.path)
    with contextlib.suppress(OSError):
        for child in base.path.iterdir():
            m = _CMD_CGROUP.match(child.name)
            if m is None or not child.is_dir():
                continue
            pid = int(m.group(1))
            if pid == os.getpid() or Path(f"/proc/{pid}").exists():
                continue
            await _remove_cgroup(child)


class _CommandCgroup:
    def __init__(self, base: _CgroupBase, policy: SandboxPolicy) -> None:
        self.base = base
        self.policy = policy
        self.path = base.path / f"cmd-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def create(self) -> None:
        self.path.mkdir()
        try:
            (self.path / "pids.max").write_text(str(self.policy.max_processes + _MARGIN_PIDS))
            if self.base.memory:
                (self.path / "memory.max").write_text(str(self.policy.memory_bytes))
                swap = self.path / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0")
        except OSError:
            with contextlib.suppress(OSError):
                self.path.rmdir()
            raise

    def _events(self, name: str, key: str) -> int:
        try:
            for line in (self.path / name).read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
        except (OSError, ValueError):
            pass
        return 0

    def pids_limit_hit(self) -> bool:
        return self._events("pids.events", "max") > 0

    def oom_killed(self) -> bool:
        return self.base.memory and self._events("memory.events", "oom_kill") > 0


# --------------------------------------------------------------------------------------------
# One sandboxed bash call
# --------------------------------------------------------------------------------------------


# Workspace -> its usage measured after the last command: the next command's starting point (the
# file tools may have added a little since; the measurement after that command catches it).
_last_usage: dict[str, int] = {}


@dataclass
class BashRun:
    """A prepared sandboxed command: spawn ``argv`` with ``env`` in ``cwd`` (a new session, stdin
    /dev/null), then call :meth:`finish` to get the limit notes (empty when no limit was hit)."""

    policy: SandboxPolicy
    workspace: Path
    argv: list[str]
    env: dict[str, str]
    cwd: str
    file_size_bytes: int
    over_quota_before: bool
    cgroup: _CommandCgroup | None = None

    async def finish(self, returncode: int | None, output: str, *, timed_out: bool) -> list[str]:
        """Notes naming every limit the command hit (each one makes the result an error)."""
        p = self.policy
        notes: list[str] = []
        rc = None if timed_out else returncode
        if self.cgroup is not None and self.cgroup.oom_killed():
            notes.append(f"command killed: memory limit of {format_bytes(p.memory_bytes)} exceeded")
        elif rc not in (None, 0) and _OUT_OF_MEMORY.search(output):
            notes.append(
                f"memory limit of {format_bytes(p.memory_bytes)} exceeded: an allocation failed "
                "(address space per process)"
            )
        if rc == _SIGXCPU_RC or "CPU time limit exceeded" in output:
            notes.append(f"command killed: CPU time limit of {p.cpu_seconds} s exceeded")
        if self.cgroup is not None:
            hit_processes = self.cgroup.pids_limit_hit()
        else:
            hit_processes = bool(_FORK_FAILED.search(output))
        if hit_processes:
            notes.append(f"process limit of {p.max_processes} processes reached: further forks failed")
        if rc == _SIGXFSZ_RC or "File size limit exceeded" in output:
            if self.file_size_bytes < p.file_size_bytes:
                cap = (
                    f"{format_bytes(self.file_size_bytes)} (what was left of the workspace quota of "
                    f"{format_bytes(p.workspace_quota_bytes)})"
                )
            else:
                cap = format_bytes(self.file_size_bytes)
            notes.append(f"command killed: file size limit of {cap} exceeded")
        if rc == _SETUP_FAILED_RC and "ulimit" in output:
            notes.append("the sandbox could not apply its resource limits")
        used = await asyncio.to_thread(workspace_usage, self.workspace)
        _last_usage[os.fspath(self.workspace)] = used
        if used > p.workspace_quota_bytes:
            notes.append(
                f"workspace quota exceeded: {format_bytes(used)} used of {format_bytes(p.workspace_quota_bytes)}; "
                "delete files to free space (until then no file can grow)"
            )
        return notes


@contextlib.asynccontextmanager
async def prepare_bash(policy: SandboxPolicy, workspace: Path, command: str) -> AsyncIterator[BashRun]:
    """Set up one sandboxed ``bash -c command`` (quota check, per-command cgroup) and clean up
    after it (every process killed, the cgroup removed), even on cancellation.

    Call it only when :func:`bash_mode` says "isolated". Raises OSError when the sandbox cannot be
    set up (e.g. the per-command cgroup cannot be created).
    """
    mechanism, why = process_limit_mechanism(policy)
    if mechanism is None:  # bash_mode() refused this unless allow_unsandboxed is set
        log.warning("sandboxed bash runs WITHOUT a process limit (allow_unsandboxed is set): %s", why)

    used = _last_usage.get(os.fspath(workspace))
    if used is None:
        used = await asyncio.to_thread(workspace_usage, workspace)
    left = policy.workspace_quota_bytes - used
    fsize = max(0, min(policy.file_size_bytes, left))

    cgroup: _CommandCgroup | None = None
    if mechanism == "cgroup":
        base, _ = _cgroup_base(policy)
        assert base is not None
        await _sweep_stale(base)
        cgroup = _CommandCgroup(base, policy)
        cgroup.create()
    try:
        run = BashRun(
            policy=policy,
            workspace=workspace,
            argv=bash_argv(
                policy,
                workspace,
                command,
                file_size_bytes=fsize,
                cgroup_procs=cgroup.procs if cgroup is not None else None,
            ),
            env=spawn_env(),
            cwd="/",  # bwrap --chdir sets the real cwd; "/" keeps the host path out of PWD
            file_size_bytes=fsize,
            over_quota_before=left <= 0,
            cgroup=cgroup,
        )
        yield run
    finally:
        if cgroup is not None:
            await _remove_cgroup(cgroup.path)
