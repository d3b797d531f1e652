"""Small builders shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def marker() -> str:
    """A unique token put in a session's first message, so the mock serves that session's script."""
    return f"[case-{uuid.uuid4().hex[:10]}]"


def agent(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "tester",
        "model": "claude-sonnet-4-6",
        "system": "You are a careful engineer.",
        "tools": [{"type": "agent_toolset_20260401"}],
    }
    base.update(overrides)
    return base


def session_input(text: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agent": agent(),
        "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}],
        "options": {"heartbeat_timeout_seconds": 5, "max_model_attempts": 4},
    }
    body.update(overrides)
    return body


def types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def spawn_worker(
    client: Any,
    settings: Any,
    *args: str,
    env: dict[str, str] | None = None,
    log: str = "worker.log",
    script: str = "worker.py",
) -> subprocess.Popen[bytes]:
    """``python worker.py`` as its own process on the test's task queue and data dir; stderr (JSON
    logs) goes to ``<data dir>/<log>``. ``env`` adds variables (a value of "" removes one).
    ``script`` (relative to the repository) runs another entry point with worker.py's arguments,
    e.g. ``tests/stalling_worker.py``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    merged = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        "MANAGED_AGENTS_LOG_FORMAT": "json",
        **(env or {}),
    }
    merged = {k: v for k, v in merged.items() if v != ""}
    command = [sys.executable, str(ROOT / script), "--task-queue", settings.task_queue]
    command += ["--data-dir", str(settings.data_dir), "--sandbox-id", settings.sandbox_id, *args]
    return subprocess.Popen(
        command, env=merged, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(settings.data_dir / log).open("ab")
    )
