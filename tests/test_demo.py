"""``managed-agents demo --keep-running`` as a newcomer uses it, beside the other commands, in one
directory with no configuration: they agree on one data directory, the demo's mock model carries a
dream end to end, and SIGTERM to the demo leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from managed_agents._client import SessionClient

CLI = [sys.executable, "-m", "managed_agents"]
READY = re.compile(r"TEMPORAL_ADDRESS=(\S+), Temporal UI")


def newcomer_env() -> dict[str, str]:
    """The user's environment: no MANAGED_AGENTS_* settings, no Temporal address, no API key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MANAGED_AGENTS_", "TEMPORAL_", "ANTHROPIC_"))}
    return {**env, "COLUMNS": "300"}


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env or newcomer_env(), capture_output=True, text=True, timeout=180
    )


class Demo:
    """The demo process, its output collected by a thread, and the address it printed."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "demo", "--keep-running"],
            cwd=cwd,
            env=newcomer_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.address = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if found := READY.search(line):
                self.address = found[1]
                self.ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("newcomer")


@pytest.fixture(scope="module")
def store_id(workdir: Path) -> str:
    """A memory store created with the CLI before the demo starts, with one memory."""
    created = run_cli(workdir, "memory", "stores", "create", "team-notes", "--json")
    assert created.returncode == 0, created.stderr
    store = json.loads(created.stdout)["id"]
    wrote = run_cli(workdir, "memory", "memories", "write", store, "/editor.md", "--content", "editor: vim", "--json")
    assert wrote.returncode == 0, wrote.stderr
    return str(store)


@pytest.fixture(scope="module")
def demo(workdir: Path, store_id: str) -> Iterator[Demo]:
    running = Demo(workdir)
    try:
        assert running.ready.wait(180), f"the demo never said it keeps running:\n{running.output}"
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            for child in _descendants(running.proc.pid):
                child.kill()
            running.proc.wait()


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.fixture(scope="module")
async def demo_session(demo: Demo, store_id: str) -> tuple[str, Any, list[Any]]:
    """A session on the demo's worker that mounts the store the CLI created."""
    sessions = await SessionClient.connect(demo.address, "default")
    handle = await sessions.create(
        {
            "agent": {"name": "coder", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]},
            "resources": [{"type": "memory_store", "memory_store_id": store_id, "access": "read_write"}],
            "initial_events": [
                {"type": "user.message", "content": [{"type": "text", "text": "remember: language = python"}]}
            ],
        }
    )
    return handle.id, await handle.result(), await handle.events()


async def test_a_store_made_with_the_cli_mounts_in_a_session_on_the_demo_worker(
    demo_session: tuple[str, Any, list[Any]], workdir: Path
) -> None:
    session_id, result, events = demo_session
    errors = [e.model_extra for e in events if e.type == "session.error"]
    assert not errors, errors  # a store the worker cannot see fails the session here
    assert result.stop_reason is not None and result.stop_reason.type == "end_turn", result
    # The demo worker's workspaces are under the same default directory the CLI wrote the store to.
    assert (workdir / ".managed-agents" / "workspaces" / session_id / "fib.py").exists()


def test_a_dream_runs_on_the_demo_mock_model(
    demo: Demo, demo_session: tuple[str, Any, list[Any]], workdir: Path, store_id: str
) -> None:
    env = {**newcomer_env(), "TEMPORAL_ADDRESS": demo.address}
    created = run_cli(workdir, "dream", "create", "--store", store_id, "--session", demo_session[0], "--json", env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    dream: dict[str, Any] = json.loads(created.stdout)
    assert dream["status"] == "completed", dream
    assert dream["error"] is None and dream["progress"]["observations"] >= 1, dream
    output = dream["outputs"][0]["memory_store_id"]
    facts = run_cli(workdir, "memory", "memories", "get", output, "/facts.md")
    assert facts.returncode == 0, facts.stderr
    # The store's own memory and the session's "remember:" line, curated into one document.
    assert "editor: vim" in facts.stdout and "language: python" in facts.stdout, facts.stdout


def test_sigterm_to_the_demo_leaves_no_process_behind(demo: Demo) -> None:
    children = _descendants(demo.proc.pid)
    assert any("start-dev" in child.cmdline() for child in children), [c.cmdline() for c in children]
    demo.proc.send_signal(signal.SIGTERM)
    demo.proc.wait(timeout=60)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"still running after SIGTERM to the demo: {[p.cmdline() for p in alive]}"
    assert "Traceback" not in demo.output, demo.output
