"""JSON Schemas of the public inputs, committed under ``schemas/`` so a service in any language can
build them without reading Python. A test checks the committed files against the models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from managed_agents._models.events import InboundEvent
from managed_agents._models.session import SessionCreateParams, SessionObject

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


def schemas() -> dict[str, dict[str, Any]]:
    from managed_agents._dreams.models import Dream, DreamCreateParams, ScheduledDreamInput

    session_input = SessionCreateParams.model_json_schema()
    session_input["title"] = "AgentSession workflow input"
    session_input["description"] = (
        "Input of the AgentSession workflow (task queue managed-agents): the body of "
        "client.beta.sessions.create with an inline agent definition, plus engine options."
    )
    events = TypeAdapter(list[InboundEvent]).json_schema()
    events["title"] = "AgentSession send_events update input"
    events["description"] = "Argument of the send_events workflow update: a non-empty array of user.* events."
    session = SessionObject.model_json_schema()
    session["title"] = "AgentSession result and session query"
    dream_input = DreamCreateParams.model_json_schema()
    dream_input["title"] = "Dream workflow input"
    dream_input["description"] = (
        "Input of the Dream workflow (task queue managed-agents): the body of client.beta.dreams.create, "
        "plus engine options."
    )
    dream = Dream.model_json_schema()
    dream["title"] = "Dream result and dream query"
    scheduled = ScheduledDreamInput.model_json_schema()
    scheduled["title"] = "ScheduledDream workflow input (what a dream schedule starts)"
    return {
        "dream.input.schema.json": dream_input,
        "dream.dream.schema.json": dream,
        "scheduled_dream.input.schema.json": scheduled,
        "agent_session.input.schema.json": session_input,
        "agent_session.send_events.schema.json": events,
        "agent_session.session.schema.json": session,
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}, indent=2) + "\n"


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / name
        path.write_text(render(schema))
        written.append(path)
    return written


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of committed schema files that differ from the models (or are missing)."""
    out = []
    for name, schema in schemas().items():
        path = directory / name
        if not path.exists() or path.read_text() != render(schema):
            out.append(name)
    return out
