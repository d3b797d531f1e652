"""OS-level isolation of the bash tool (managed_agents._sandbox.isolation): real bubblewrap, real
processes, real escape attempts. Every attempt must be refused or contained with a clear error,
and the worker (this test process) must come out unharmed."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from managed_agents._sandbox import isolation
from managed_agents._sandbox.isolation import (
    SANDBOX_WORKSPACE,
    NetworkConfig,
    SandboxPolicy,
    bash_argv,
    isolation_available,
    process_limit_mechanism,
    spawn_env,
    workspace_usage,
)
from managed_agents._sandbox.tools import ToolLimits, ToolOutcome, run_tool

MiB = 1024 * 1024
_OK, _REASON = isolation_available()
pytestmark = pytest.mark.skipif(not _OK, reason=f"bubblewrap isolation is not available here: {_REASON}")

REPO = Path(__file__).resolve().parents[1]
DEFAULT = SandboxPolicy()


# ----------------------------------------------------------------------------------------------
# helpers / fixtures
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    return d


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A secret file next to the workspace (same parent directory)."""
    f = tmp_path / "outside-secret.txt"
    f.write_text("TOP-SECRET outside the workspace\n")
    return f


def text_of(outcome: ToolOutcome) -> str:
    assert len(outcome.content) == 1 and outcome.content[0]["type"] == "text"
    return str(outcome.content[0]["text"])


async def bash(
    ws: Path,
    command: str,
    policy: SandboxPolicy | None = DEFAULT,
    *,
    timeout_ms: int | None = None,
    limits: ToolLimits | None = None,
) -> tuple[str, bool]:
    tool_input: dict[str, object] = {"command": command}
    if timeout_ms is not None:
        tool_input["timeout_ms"] = timeout_ms
    outcome = await run_tool(ws, "bash", tool_input, limits or ToolLimits(), policy=policy)
    return text_of(outcome), outcome.is_error


async def ok(ws: Path, command: str, policy: SandboxPolicy | None = DEFAULT, **kw: object) -> str:
    text, is_error = await bash(ws, command, policy, **kw)  # type: ignore[arg-type]
    assert not is_error, text
    return text


async def err(ws: Path, command: str, policy: SandboxPolicy | None = DEFAULT, **kw: object) -> str:
    text, is_error = await bash(ws, command, policy, **kw)  # type: ignore[arg-type]
    assert is_error, text
    return text


def host_pids() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit()}


def procs_with(marker: str) -> list[int]:
    found = []
    for pid in host_pids():
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


async def settle(marker: str, baseline: int, *, slack: int = 10, within: float = 5.0) -> None:
    """Wait until no process carries ``marker`` and the host's process count is back to normal."""
    deadline = time.monotonic() + within
    while True:
        stray, count = procs_with(marker), len(host_pids())
        if not stray and count <= baseline + slack:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"stray processes after the command: {stray[:10]} ({count} processes vs {baseline} before)")
        await asyncio.sleep(0.05)


class Listener:
    """A real TCP server on the host's 127.0.0.1 that records accepted connections."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            with conn:
                conn.sendall(b"hello from the host\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    srv = Listener()
    try:
        yield srv
    finally:
        srv.close()


def connect_cmd(port: int) -> str:
    return (
        'python3 -c \'import socket; s = socket.create_connection(("127.0.0.1", '
        f"{port}), timeout=3); print(s.recv(100).decode().strip())'"
    )


needs_process_cap = pytest.mark.skipif(
    process_limit_mechanism(DEFAULT)[0] is None, reason=f"no process cap here: {process_limit_mechanism(DEFAULT)[1]}"
)


# ----------------------------------------------------------------------------------------------
# normal use
# ----------------------------------------------------------------------------------------------


async def test_normal_commands_work(ws: Path) -> None:
    assert await ok(ws, "echo hello") == "hello\n"
    assert await ok(ws, "pwd; echo $HOME") == f"{SANDBOX_WORKSPACE}\n{SANDBOX_WORKSPACE}\n"
    assert await ok(ws, "python3 -c 'print(6 * 7)'") == "42\n"
    assert await ok(ws, "true") == "(no output)"
    assert await ok(ws, "cat") == "(no output)"  # stdin is /dev/null
    # files written inside are on the host afterwards, and the file tools' files are visible inside
    await ok(ws, "mkdir -p sub && echo data > sub/made.txt && ls")
    assert (ws / "sub" / "made.txt").read_text() == "data\n"
    outcome = await run_tool(ws, "write", {"file_path": "from-tool.txt", "content": "abc"}, policy=DEFAULT)
    assert not outcome.is_error
    assert await ok(ws, "cat from-tool.txt; echo; ls") == "abc\nfrom-tool.txt\nsub\n"
    assert await ok(ws, "echo more >> from-tool.txt; cat from-tool.txt") == "abcmore\n"
    # exit codes and the old messages are unchanged
    assert await err(ws, "echo oops; exit 3") == "oops\nexit code: 3"
    assert "command not found" in await err(ws, "definitely-not-a-command-xyz")
    # state does not persist between calls (fresh sandbox each time)
    await ok(ws, "export FOO=bar; cd sub")
    assert await ok(ws, 'echo "[$FOO]"; pwd') == f"[]\n{SANDBOX_WORKSPACE}\n"


async def test_background_jobs_do_not_survive(ws: Path) -> None:
    marker = uuid.uuid4().hex
    baseline = len(host_pids())
    assert await ok(ws, f"sleep 30 & echo started # {marker}") == "started\n"
    await settle(marker, baseline)


# ----------------------------------------------------------------------------------------------
# secrets and the worker's environment
# ----------------------------------------------------------------------------------------------


async def test_environment_is_clean_and_worker_environ_unreadable(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-" + "secret"  # never spelled out in a command line
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    monkeypatch.setenv("TEMPORAL_API_KEY", secret + "-2")
    text = await ok(ws, "env")
    assert secret not in text and "ANTHROPIC_API_KEY" not in text
    env = dict(line.split("=", 1) for line in text.splitlines())
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["HOME"] == env["PWD"] == SANDBOX_WORKSPACE
    assert env["LANG"] == "C.UTF-8" and env["TERM"] == "dumb"
    assert set(env) <= {"PATH", "HOME", "LANG", "TERM", "PWD", "SHLVL", "_"}

    own = await ok(ws, "cat /proc/self/environ | tr '\\0' '\\n'")
    assert set(dict(line.split("=", 1) for line in own.splitlines())) == {
        "PATH",
        "HOME",
        "LANG",
        "TERM",
        "PWD",
        "SHLVL",
        "_",
    }

    # every process the sandbox can see, including bwrap's own pid 1
    text, _ = await bash(
        ws, "for f in /proc/*/environ; do echo \"== $f\"; cat $f | tr '\\0' '\\n'; done; cat /proc/1/environ"
    )
    assert secret not in text and "ANTHROPIC_API_KEY" not in text
    assert "== /proc/1/environ" in text  # it really looked

    # the worker's own /proc entry: not there (own PID namespace)
    worker = os.getpid()
    text = await err(ws, f"cat /proc/{worker}/environ")
    assert "No such file or directory" in text and secret not in text
    text = await err(ws, f"grep -a {secret[:5]}'{secret[5:]}' -r /proc/*/environ")
    assert secret not in text
    # only the sandbox's own handful of processes exist in its /proc
    pids = (await ok(ws, "ls /proc | grep -E '^[0-9]+$'")).split()
    assert 1 <= len(pids) < 10 and str(worker) not in pids


# ----------------------------------------------------------------------------------------------
# filesystem
# ----------------------------------------------------------------------------------------------


async def test_files_outside_the_workspace_are_invisible(ws: Path, outside: Path) -> None:
    text = await err(ws, f"cat {outside}")
    assert "No such file or directory" in text and "TOP-SECRET" not in text
    text = await err(ws, f"cat ../{outside.name}; ls {outside.parent}")
    assert "TOP-SECRET" not in text and "No such file or directory" in text
    # a symlink the agent plants points at nothing inside the sandbox
    await ok(ws, f"ln -s {outside} link")
    assert "TOP-SECRET" not in await err(ws, "cat link")
    for path in ("/root", "/etc/shadow", "/etc/gshadow", "/home", "/opt", "/var", "/run", str(REPO)):
        text = await err(ws, f"ls -la {path}")
        assert "No such file or directory" in text, (path, text)
    # the runtime view: read-only tools, no host secrets
    top = set((await ok(ws, "ls -A /")).split())
    assert top <= {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "tmp", "workspace"}
    assert "shadow" not in await ok(ws, "ls /etc")


async def test_writes_outside_the_workspace_are_refused(ws: Path) -> None:
    for target in ("/usr/x", "/etc/passwd", "/x", "/dev/x", "/bin/x"):
        text = await err(ws, f"echo pwned > {target}")
        assert "Read-only file system" in text, (target, text)
    assert not os.path.exists("/usr/x") and not os.path.exists("/x")
    # /tmp is private and vanishes with the command
    name = f"private-{uuid.uuid4().hex}"
    assert await ok(ws, f"echo hi > /tmp/{name}; cat /tmp/{name}; echo x > /dev/shm/{name}") == "hi\n"
    assert not os.path.exists(f"/tmp/{name}")
    assert "No such file or directory" in await err(ws, f"cat /tmp/{name}")


async def test_extra_mounts(ws: Path, tmp_path: Path) -> None:
    ro, rw = tmp_path / "memory-ro", tmp_path / "memory-rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "notes.md").write_text("remember this\n")
    policy = SandboxPolicy(
        readonly_mounts=((ro, Path("/mnt/memory/ro")),), writable_mounts=((rw, Path("/mnt/memory/rw")),)
    )
    assert await ok(ws, "cat /mnt/memory/ro/notes.md", policy) == "remember this\n"
    assert "Read-only file system" in await err(ws, "echo x > /mnt/memory/ro/new", policy)
    await ok(ws, "echo saved > /mnt/memory/rw/new.md", policy)
    assert (rw / "new.md").read_text() == "saved\n"
    assert not (ro / "new").exists()


def _ldd(binary: Path) -> str:
    return subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout


async def test_custom_runtime_root(ws: Path, tmp_path: Path) -> None:
    """A root filesystem directory (here: bash and its libraries only) becomes the sandbox's /."""
    rootfs = tmp_path / "rootfs"
    bash_bin = Path(shutil.which("bash") or "/bin/bash").resolve()
    libs = _ldd(bash_bin)
    files = [str(bash_bin)] + [tok for tok in libs.split() if tok.startswith("/")]
    for f in files:
        dest = rootfs / f.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(f), dest)
    (rootfs / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    if not (rootfs / "usr" / "bin" / "bash").exists():
        shutil.copy2(bash_bin, rootfs / "usr" / "bin" / "bash")
    (rootfs / "marker.txt").write_text("custom runtime\n")
    policy = SandboxPolicy(runtime_root=rootfs)
    text = await ok(ws, "read -r line < /marker.txt; echo $line; echo /*; echo made > /workspace/f", policy)
    lines = text.splitlines()
    assert lines[0] == "custom runtime"
    assert "/marker.txt" in lines[1] and "/workspace" in lines[1] and "/etc" not in lines[1]
    assert (ws / "f").read_text() == "made\n"
    assert "Read-only file system" in await err(ws, "echo x > /marker.txt", policy)
    assert "command not found" in await err(ws, "python3 -c pass", policy)  # only what the runtime ships


# ----------------------------------------------------------------------------------------------
# network
# ----------------------------------------------------------------------------------------------


async def test_network_off_by_default(ws: Path, listener: Listener) -> None:
    text = await err(ws, connect_cmd(listener.port))
    assert "ConnectionRefusedError" in text or "Network is unreachable" in text, text
    assert listener.accepted == 0
    text = await err(ws, "python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), timeout=2)'")
    assert "unreachable" in text or "OSError" in text
    assert await ok(ws, "python3 -c 'import socket; print(socket.if_nameindex())'") == "[(1, 'lo')]\n"


async def test_network_unrestricted_reaches_the_host(ws: Path, listener: Listener) -> None:
    policy = SandboxPolicy(networking=NetworkConfig(type="unrestricted"))
    assert await ok(ws, connect_cmd(listener.port), policy) == "hello from the host\n"
    assert listener.accepted == 1


# ----------------------------------------------------------------------------------------------
# resource limits
# ----------------------------------------------------------------------------------------------


@needs_process_cap
async def test_fork_bomb_is_contained(ws: Path) -> None:
    marker = uuid.uuid4().hex
    baseline = len(host_pids())
    start = time.monotonic()
    # The main shell outlives the bomb for a while, so the bomb really runs into the cap.
    text = await err(ws, f":(){{ :|:& }};:; sleep 2 # {marker}", timeout_ms=20_000)
    assert time.monotonic() - start < 15
    assert "process limit of 256 processes reached" in text, text[-500:]
    await settle(marker, baseline)
    # the classic one-liner (its main shell returns at once): contained, and nothing is left over
    marker = uuid.uuid4().hex
    await bash(ws, f":(){{ :|:& }};: # {marker}", timeout_ms=20_000)
    await settle(marker, baseline)
    assert await ok(ws, "echo alive") == "alive\n"


@pytest.fixture
def nobody_ws() -> Iterator[Path]:
    """A workspace owned by uid 65534 that uid 65534 can reach (pytest's tmp dirs are 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix="sandbox-nobody-"))
    try:
        os.chown(d, 65534, 65534)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def test_fork_bomb_non_root_worker_rlimit_nproc(nobody_ws: Path) -> None:
    """What a non-root worker (the Docker image's uid 10001) relies on when no pids cgroup is
    writable: RLIMIT_NPROC set inside the command's own user namespace caps the bomb."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to impersonate a non-root worker")
    ws = nobody_ws
    marker = uuid.uuid4().hex
    baseline = len(host_pids())
    policy = SandboxPolicy(max_processes=64)
    argv = bash_argv(policy, ws, f":(){{ :|:& }};:; sleep 2; echo done # {marker}")
    proc = await asyncio.create_subprocess_exec(
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        *argv,
        env=spawn_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    text = out.decode(errors="replace")
    assert "fork: retry: Resource temporarily unavailable" in text or "fork: Resource temporarily" in text, text[-500:]
    assert "done" in text
    await settle(marker, baseline)


async def test_memory_hog(ws: Path) -> None:
    text = await err(ws, "python3 -c 'b = bytearray(4 << 30); print(len(b))'")
    assert "MemoryError" in text and "memory limit of 1 GiB exceeded" in text
    policy = SandboxPolicy(memory_bytes=256 * MiB)
    text = await err(ws, "head -c 2G /dev/zero | tail", policy, timeout_ms=30_000)
    assert "memory limit of 256 MiB exceeded" in text, text


async def test_endless_loop_hits_cpu_limit(ws: Path) -> None:
    start = time.monotonic()
    text = await err(ws, "while :; do :; done", SandboxPolicy(cpu_seconds=1), timeout_ms=20_000)
    assert time.monotonic() - start < 10
    assert "command killed: CPU time limit of 1 s exceeded" in text, text


async def test_endless_loop_hits_wall_limit(ws: Path) -> None:
    marker = uuid.uuid4().hex
    baseline = len(host_pids())
    start = time.monotonic()
    text = await err(ws, f"while :; do :; done # {marker}", timeout_ms=1000)
    assert time.monotonic() - start < 5
    assert "command timed out after 1 s" in text
    await settle(marker, baseline)


async def test_disk_quota(ws: Path) -> None:
    policy = SandboxPolicy(workspace_quota_bytes=50 * MiB)
    start = time.monotonic()
    text = await err(ws, "head -c 2G /dev/zero > big", policy, timeout_ms=30_000)
    assert time.monotonic() - start < 20
    assert "command killed: file size limit of" in text and "workspace quota of 50 MiB" in text, text
    assert (ws / "big").stat().st_size <= 50 * MiB
    await ok(ws, "rm big", policy)

    # many files, each under the per-file cap: the quota is checked after the command
    text = await err(ws, "for i in 1 2 3; do head -c 20M /dev/zero > f$i; done", policy)
    assert "workspace quota exceeded" in text and "of 50 MiB" in text, text
    assert workspace_usage(ws) > 50 * MiB
    # over quota: files cannot grow, but deleting works and brings the workspace back
    assert "file size limit" in await err(ws, "echo more > more.txt", policy)
    outcome = await run_tool(ws, "write", {"file_path": "w.txt", "content": "x" * 1000}, policy=policy)
    assert outcome.is_error and "workspace quota exceeded" in text_of(outcome)
    await ok(ws, "rm f1 f2", policy)
    assert await ok(ws, "echo fine > small.txt; cat small.txt", policy) == "fine\n"
    outcome = await run_tool(ws, "write", {"file_path": "w.txt", "content": "x" * 1000}, policy=policy)
    assert not outcome.is_error


async def test_huge_output_is_capped(ws: Path) -> None:
    text = await ok(ws, "yes | head -c 50000000", limits=ToolLimits(max_output_bytes=10_000))
    assert "[output truncated: 50000000 bytes total, first 10000 shown]" in text
    assert len(text) < 11_000


async def test_worker_cannot_be_killed_from_inside(ws: Path) -> None:
    me = os.getpid()
    text, _ = await bash(ws, f"kill -9 {me}; pkill -9 -f pytest; pkill -9 python; kill -9 -1; echo after")
    assert "No such process" in text
    assert os.getpid() == me  # still here
    assert await ok(ws, "echo still working") == "still working\n"


# ----------------------------------------------------------------------------------------------
# when isolation is off or missing
# ----------------------------------------------------------------------------------------------


async def test_isolation_none_refuses_bash(ws: Path) -> None:
    text = await err(ws, "echo hi", SandboxPolicy(isolation="none"))
    assert text.startswith("bash is disabled:") and "set allow_unsandboxed to run commands unsandboxed" in text
    assert not list(ws.iterdir())


async def test_missing_bubblewrap_refuses_bash(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "isolation_available", lambda: (False, "bubblewrap (bwrap) is not installed"))
    text = await err(ws, "touch x")
    assert text.startswith(
        "bash is disabled: no isolation layer (bubblewrap) on this worker; set allow_unsandboxed to run "
        "commands unsandboxed"
    )
    assert not (ws / "x").exists()
    # the file tools do not need the isolation layer
    assert not (await run_tool(ws, "write", {"file_path": "a.txt", "content": "a"}, policy=DEFAULT)).is_error


async def test_root_worker_without_pids_cgroup_refuses_bash(
    ws: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() != 0:
        pytest.skip("a non-root worker caps processes with RLIMIT_NPROC")
    monkeypatch.setattr(isolation, "_cgroup_bases", {None: (None, "no writable pids cgroup")})
    text = await err(ws, "touch x")
    assert text.startswith("bash is disabled: the sandbox cannot enforce its process limit on this worker")
    assert not (ws / "x").exists()
    # allow_unsandboxed: still isolated (better than nothing), without the process cap, loudly
    policy = SandboxPolicy(allow_unsandboxed=True)
    with caplog.at_level(logging.WARNING):
        assert await ok(ws, "pwd", policy) == f"{SANDBOX_WORKSPACE}\n"
    assert any("WITHOUT a process limit" in r.getMessage() for r in caplog.records)


async def test_allow_unsandboxed_runs_as_before_and_warns(
    ws: Path, outside: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = SandboxPolicy(isolation="none", allow_unsandboxed=True)
    with caplog.at_level(logging.WARNING):
        text = await ok(ws, f"pwd; cat {outside}", policy)
    assert text == f"{os.path.realpath(ws)}\nTOP-SECRET outside the workspace\n"
    assert any("UNSANDBOXED" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


async def test_no_policy_keeps_the_old_behaviour(ws: Path, outside: Path) -> None:
    text = await ok(ws, f"pwd; cat {outside}", None)
    assert text == f"{os.path.realpath(ws)}\nTOP-SECRET outside the workspace\n"


# ----------------------------------------------------------------------------------------------
# policy validation and the pure helpers
# ----------------------------------------------------------------------------------------------


def test_policy_validation() -> None:
    assert DEFAULT.networking.type == "limited" and DEFAULT.networking.isolated
    assert SandboxPolicy.model_validate({"networking": {"type": "unrestricted"}}).networking.type == "unrestricted"
    with pytest.raises(ValidationError, match="not supported yet"):
        SandboxPolicy.model_validate({"networking": {"type": "limited", "allowed_hosts": ["pypi.org"]}})
    with pytest.raises(ValidationError, match="not supported yet"):
        NetworkConfig(type="limited", allow_package_managers=True)
    with pytest.raises(ValidationError, match="only apply to networking type 'limited'"):
        NetworkConfig.model_validate({"type": "unrestricted", "allowed_hosts": []})
    with pytest.raises(ValidationError):
        NetworkConfig.model_validate({"type": "proxy"})
    with pytest.raises(ValidationError):
        SandboxPolicy.model_validate({"isolation": "docker"})
    with pytest.raises(ValidationError):
        SandboxPolicy.model_validate({"unknown": 1})
    with pytest.raises(ValidationError):
        SandboxPolicy(cpu_seconds=0)
    with pytest.raises(ValidationError, match="absolute"):
        SandboxPolicy(runtime_root=Path("rootfs"))
    with pytest.raises(ValidationError, match="reserved"):
        SandboxPolicy(writable_mounts=((Path("/srv/x"), Path("/workspace/x")),))
    with pytest.raises(ValidationError, match="reserved"):
        SandboxPolicy(readonly_mounts=((Path("/srv/x"), Path("/proc/x")),))
    with pytest.raises(ValidationError, match="normalised"):
        SandboxPolicy(readonly_mounts=((Path("/srv/x"), Path("/mnt/../etc")),))
    with pytest.raises(ValidationError, match="several mounts"):
        SandboxPolicy(readonly_mounts=((Path("/a"), Path("/mnt/m")),), writable_mounts=((Path("/b"), Path("/mnt/m")),))
    with pytest.raises(ValidationError):
        DEFAULT.cpu_seconds = 5  # type: ignore[misc]


def test_bash_argv_shape(ws: Path) -> None:
    argv = bash_argv(DEFAULT, ws, "echo hi")
    assert argv[0].endswith("bwrap") and argv[-2:] == ["bash", "echo hi"]
    for flag in (
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ):
        assert flag in argv
    assert "--unshare-net" not in bash_argv(SandboxPolicy(networking=NetworkConfig(type="unrestricted")), ws, "x")
    assert argv[argv.index("--bind") + 1 : argv.index("--bind") + 3] == [str(ws), SANDBOX_WORKSPACE]
    assert argv[-4:-2] == ["-c", argv[-3]] and "ulimit -u 256" in argv[-3]
    wrapped = bash_argv(DEFAULT, ws, "x", cgroup_procs=Path("/sys/fs/cgroup/x/cgroup.procs"))
    assert wrapped[0].endswith("sh") and "/sys/fs/cgroup/x/cgroup.procs" in wrapped
    assert set(spawn_env()) == {"PATH", "LANG"}


async def test_no_cgroups_left_behind(ws: Path) -> None:
    await ok(ws, "true")
    base, _ = isolation._cgroup_base(DEFAULT)
    if base is None:
        pytest.skip("no per-command cgroups on this worker")
    mine = [p.name for p in base.path.iterdir() if p.name.startswith(f"cmd-{os.getpid()}-")]
    assert mine == []
