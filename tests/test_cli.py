"""The project CLI and the main job (`managed-agents demo`), run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from managed_agents.testing.mock_claude import Turn
from tests.helpers import marker

CLI = [sys.executable, "-m", "managed_agents"]


def cli(harness, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": harness.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": harness.client.namespace,
        "MANAGED_AGENTS_TASK_QUEUE": harness.settings.task_queue,
        "COLUMNS": "200",
    }
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


async def test_start_follows_events_live_and_get_events_read_them(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Turn.tool_use("bash", {"command": "echo from-the-tool"}), Turn.text("All done here."))
    proc = await asyncio.to_thread(cli, harness, "start", "-m", f"{m} do it", "--session-id", "sesn_cli_start")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for expected in [
        "▶ user",
        "⚙ bash",
        "↳ from-the-tool",
        "◀ agent All done here.",
        "■ idle (end_turn)",
        "✔ terminated",
    ]:
        assert expected in out, f"{expected!r} not in:\n{out}"
    got = await asyncio.to_thread(cli, harness, "get", "sesn_cli_start", "--json")
    assert json.loads(got.stdout)["final_message"] == "All done here."
    events = await asyncio.to_thread(cli, harness, "events", "sesn_cli_start", "--json")
    types = [json.loads(line)["type"] for line in events.stdout.splitlines()]
    assert types[0] == "user.message" and types[-1] == "session.status_terminated"


async def test_send_and_follow_a_kept_alive_session(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Turn.text("first"), Turn.text("second reply"))
    proc = await asyncio.to_thread(
        cli, harness, "start", "-m", f"{m} hi", "--keep-alive", "--no-follow", "--session-id", "sesn_cli_send"
    )
    assert proc.returncode == 0, proc.stderr
    handle = harness.sessions.get("sesn_cli_send")
    for _ in range(100):
        if (await handle.retrieve()).final_message == "first":
            break
        await asyncio.sleep(0.1)
    sent = await asyncio.to_thread(cli, harness, "send", "sesn_cli_send", "more please")
    assert sent.returncode == 0 and sent.stdout.startswith("sent sevt_"), sent.stderr
    for _ in range(100):
        if (await handle.retrieve()).final_message == "second reply":
            break
        await asyncio.sleep(0.1)
    assert (await handle.retrieve()).final_message == "second reply"
    bad = await asyncio.to_thread(cli, harness, "confirm", "sesn_cli_send", "sevt_nothing", "--allow")
    assert bad.returncode == 2 and "is not a pending" in bad.stderr


def test_start_rejects_bad_input_naming_the_field(tmp_path: Path) -> None:
    agent = tmp_path / "agent.json"
    agent.write_text('{"name": "x"}')
    proc = subprocess.run([*CLI, "start", "--agent", str(agent), "-m", "hi"], capture_output=True, text=True)
    assert proc.returncode == 2 and "agent.model" in proc.stderr
    proc = subprocess.run([*CLI, "start", "--agent", "{not json", "-m", "hi"], capture_output=True, text=True)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr
    missing = tmp_path / "nope.json"
    proc = subprocess.run([*CLI, "start", "--input", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 2 and f"--input: no such file: {missing}" in proc.stderr, proc.stderr


def test_start_without_a_first_event_is_refused() -> None:
    # Nothing is started: these fail before any connection (no Temporal address is set here).
    for args in (["start"], ["start", "-m", ""], ["start", "-m", "   "]):
        proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "empty" in proc.stderr or "nothing to start" in proc.stderr, proc.stderr


async def test_confirm_without_allow_or_deny_is_refused_and_sends_nothing(harness) -> None:
    m = marker()
    harness.mock.script_for(m, Turn.tool_use("bash", {"command": "echo hi"}), Turn.text("ok"))
    body = {
        "agent": {
            "name": "careful",
            "model": "claude-sonnet-4-6",
            "tools": [
                {"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_ask"}}}
            ],
        },
        "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": f"{m} go"}]}],
    }
    handle = await harness.sessions.create(body)
    for _ in range(200):
        session = await handle.retrieve()
        if session.status == "idle" and session.stop_reason and session.stop_reason.type == "requires_action":
            break
        await asyncio.sleep(0.1)
    [tool_use] = [e for e in await handle.events() if e.type == "agent.tool_use"]
    proc = await asyncio.to_thread(cli, harness, "confirm", handle.id, tool_use.id)
    assert proc.returncode == 2 and "--allow or --deny" in proc.stderr, proc.stdout + proc.stderr
    await asyncio.sleep(0.5)
    assert not [e for e in await handle.events() if e.type == "user.tool_confirmation"], "nothing was sent"
    assert (await handle.retrieve()).stop_reason.type == "requires_action"
    proc = await asyncio.to_thread(cli, harness, "confirm", handle.id, tool_use.id, "--deny", "--message", "no")
    assert proc.returncode == 0, proc.stderr
    result = await handle.result()
    assert result.final_message == "ok"


def test_demo_runs_end_to_end_with_the_mock_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")}
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [*CLI, "demo", "--data-dir", str(tmp_path / "demo")], capture_output=True, text=True, timeout=180, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "No ANTHROPIC_API_KEY set: using the bundled mock model" in out
    assert "Temporal UI:" in out and "http://localhost:" in out
    assert "◀ agent fib.py ran and printed: 0 1 1 2 3 5 8 13 21 34" in out
    assert (tmp_path / "demo" / "temporal.db").exists(), "the dev server persisted to SQLite"
    assert list((tmp_path / "demo" / "workspaces").glob("*/fib.py"))


async def test_start_a_graded_task_from_the_cli(harness) -> None:
    from tests.test_outcomes import HALF, PASS, work

    m = marker()
    harness.mock.script_for(m, *work("draft"), HALF, *work("42"), PASS)
    proc = await asyncio.to_thread(
        cli,
        harness,
        "start",
        "--outcome",
        f"{m} Write report.md with the answer",
        "--rubric",
        "report.md mentions 42",
        "--max-iterations",
        "4",
        "--session-id",
        "sesn_cli_outcome",
    )
    assert proc.returncode == 0, proc.stderr
    for expected in ["▶ outcome", "⚖ grading", "⚖ needs_revision", "✘ mentions 42", "⚖ satisfied", "satisfied after 2"]:
        assert expected in proc.stdout, f"{expected!r} not in:\n{proc.stdout}"
