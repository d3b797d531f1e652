"""Hands apart from the brain: sandbox-only workers in their own process, and a lost sandbox.

The brain (workflows, model calls) runs in the test process with ``role=brain``; tools run in a
separate ``python worker.py --role sandbox`` process sharing the store and workspace root.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from managed_agents._sandbox.isolation import isolation_available
from managed_agents._settings import ManagedAgentsSettings
from managed_agents.testing.mock_claude import Turn
from tests.conftest import Harness
from tests.helpers import marker, session_input, spawn_worker

ROOT = Path(__file__).resolve().parents[1]


def start_sandbox(temporal_env, settings: ManagedAgentsSettings) -> subprocess.Popen[bytes]:
    # The hands need no model credentials.
    return spawn_worker(
        temporal_env.client, settings, "--role", "sandbox", env={"ANTHROPIC_API_KEY": ""}, log="sandbox.log"
    )


async def wait_started(settings: ManagedAgentsSettings, times: int) -> None:
    """Until the sandbox log says the worker started ``times`` times (it polls its queue then)."""
    log = settings.data_dir / "sandbox.log"
    for _ in range(600):
        if log.exists() and log.read_text().count('"worker started"') >= times:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the sandbox worker did not start")


@pytest.fixture
async def brain(temporal_env, settings, mock_claude):
    brain_settings = settings.model_copy(update={"roles": frozenset({"brain"})})
    h = Harness(temporal_env.client, brain_settings, mock_claude)
    async with h.worker():
        yield h


async def test_session_with_a_separate_sandbox_process(temporal_env, brain) -> None:
    m = marker()
    brain.mock.script_for(
        m,
        Turn.tool_use("write", {"file_path": "notes.md", "content": "hands apart\n"}),
        Turn.tool_use("bash", {"command": "cat /workspace/notes.md; echo pid-ns-$$"}),
        Turn.text("done remotely"),
    )
    sandbox = start_sandbox(temporal_env, brain.settings)
    try:
        handle = await brain.sessions.create(session_input(f"{m} go"))
        result = await asyncio.wait_for(handle.result(), 60)
        assert result.final_message == "done remotely"
        outputs = [e.model_extra["content"][0]["text"] for e in await handle.events() if e.type == "agent.tool_result"]
        assert outputs[1].startswith("hands apart\n")
        if isolation_available()[0]:
            assert "pid-ns-" in outputs[1] and int(outputs[1].split("pid-ns-")[1]) < 10, "bash ran in a PID namespace"
    finally:
        sandbox.kill()
        sandbox.wait()


async def test_lost_sandbox_is_a_tool_error_then_the_session_goes_on(temporal_env, brain) -> None:
    m = marker()
    brain.mock.script_for(
        m,
        Turn.tool_use("write", {"file_path": "keep.txt", "content": "still here"}),
        Turn.tool_use("bash", {"command": "sleep 60"}),
        Turn.text("the sandbox died; I will wait"),
        Turn.tool_use("read", {"file_path": "keep.txt"}),
        Turn.text("recovered the workspace"),
    )
    sandbox = start_sandbox(temporal_env, brain.settings)
    options = {"keep_alive": True, "heartbeat_timeout_seconds": 2, "sandbox_schedule_to_start_seconds": 3}
    handle = await brain.sessions.create(session_input(f"{m} go", options=options))
    try:
        for _ in range(200):
            events = await handle.events()
            if any(e.type == "agent.tool_use" and e.model_extra["name"] == "bash" for e in events):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        sandbox.send_signal(signal.SIGKILL)  # the hands vanish mid-command
        sandbox.wait()
        for _ in range(600):
            session = await handle.retrieve()
            if session.final_message == "the sandbox died; I will wait":
                break
            await asyncio.sleep(0.1)
        assert session.final_message == "the sandbox died; I will wait"
        events = await handle.events()
        lost = [e.model_extra for e in events if e.type == "agent.tool_result"][-1]
        assert lost["is_error"] and "sandbox" in lost["content"][0]["text"]
        # The model saw the error as a tool result and the session went on; with the sandbox back
        # (same sandbox id), the workspace is there again.
        sandbox = start_sandbox(temporal_env, brain.settings)
        await wait_started(brain.settings, times=2)
        await handle.send_message("is it back?")
        for _ in range(600):
            session = await handle.retrieve()
            if session.final_message == "recovered the workspace":
                break
            await asyncio.sleep(0.1)
        assert session.final_message == "recovered the workspace"
        read = [e.model_extra for e in await handle.events() if e.type == "agent.tool_result"][-1]
        assert read["content"][0]["text"] == "still here" and not read["is_error"]
        await handle.interrupt()
    finally:
        sandbox.kill()
        sandbox.wait()


@pytest.mark.skipif(not isolation_available()[0], reason="bubblewrap is not available here")
async def test_session_bash_cannot_see_secrets_files_or_network(harness, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-worker-secret")
    m = marker()
    harness.mock.script_for(
        m,
        Turn.tool_uses(
            [
                ("bash", {"command": r"env; cat /proc/*/environ 2>/dev/null | tr '\0' '\n'"}),
                ("bash", {"command": "ls /root /home; cat /etc/shadow"}),
                ("bash", {"command": """python3 -c "import socket; socket.create_connection(('1.1.1.1', 53), 2)" """}),
                ("bash", {"command": f"ls {harness.settings.data_dir}"}),
            ]
        ),
        Turn.text("contained"),
    )
    handle = await harness.sessions.create(session_input(f"{m} escape"))
    await handle.result()
    results = [e.model_extra for e in await handle.events() if e.type == "agent.tool_result"]
    env_out, files_out, net_out, data_out = (r["content"][0]["text"] for r in results)
    assert "sk-ant-worker-secret" not in env_out and "HOME=/workspace" in env_out
    assert results[1]["is_error"] and "No such file or directory" in files_out
    assert results[2]["is_error"] and ("unreachable" in net_out or "Errno" in net_out)
    assert results[3]["is_error"] and "No such file" in data_out, (
        "the worker's data directory does not exist inside the sandbox"
    )


@pytest.mark.skipif(not isolation_available()[0], reason="bubblewrap is not available here")
async def test_session_environment_chooses_a_named_runtime(temporal_env, settings, mock_claude, tmp_path) -> None:
    import shutil

    rootfs = tmp_path / "rootfs-minimal"
    bash_bin = Path(shutil.which("bash") or "/bin/bash").resolve()
    libs = subprocess.run(["ldd", str(bash_bin)], capture_output=True, text=True, check=True).stdout
    for f in [str(bash_bin), *(tok for tok in libs.split() if tok.startswith("/"))]:
        dest = rootfs / f.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(f), dest)
    (rootfs / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(bash_bin, rootfs / "usr" / "bin" / "bash")
    (rootfs / "RUNTIME").write_text("minimal\n")
    h = Harness(temporal_env.client, settings.model_copy(update={"runtimes": {"minimal": rootfs}}), mock_claude)
    m = marker()
    mock_claude.script_for(
        m,
        Turn.tool_uses(
            [("bash", {"command": "read -r r < /RUNTIME; echo $r; echo /*"}), ("bash", {"command": "python3 -V"})]
        ),
        Turn.text("ok"),
    )
    m2 = marker()
    mock_claude.script_for(m2, Turn.tool_use("bash", {"command": "true"}), Turn.text("ok"))
    async with h.worker():
        handle = await h.sessions.create(session_input(f"{m} go", environment={"runtime": "minimal"}))
        await handle.result()
        unknown = await h.sessions.create(session_input(f"{m2} go", environment={"runtime": "nope"}))
        await unknown.result()
        events, unknown_events = await handle.events(), await unknown.events()
    first, second = (e.model_extra for e in events if e.type == "agent.tool_result")
    assert first["content"][0]["text"].startswith("minimal\n") and "/usr" in first["content"][0]["text"]
    assert second["is_error"] and "command not found" in second["content"][0]["text"], "only what the runtime ships"
    [refused] = [e.model_extra for e in unknown_events if e.type == "agent.tool_result"]
    assert refused["is_error"] and "no runtime named 'nope'" in refused["content"][0]["text"]
