"""Small builders shared by the tests."""

from __future__ import annotations

import uuid
from typing import Any


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
