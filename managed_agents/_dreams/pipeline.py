"""What the dream pipeline asks the model, and how it cuts its input into pieces that fit.

The pipeline has two model stages, each a forced tool call in a context of its own:

1. **Read** (one activity per session): the session's transcript, rendered as text and cut into
   chunks of ``transcript_chunk_chars``, each chunk one request answering ``record_observations``.
   A 2,000-step session is many small requests, never one overflowing context.
2. **Consolidate** (one activity per batch, in order): the output store as it stands plus one batch
   of observations (``consolidation_batch_chars``), answering ``write_memory_store`` with whole
   memories to write and paths to delete. Batches run one after another, each seeing the store as
   the previous one left it, and observations go in the order their sessions finished, so a later
   statement replaces an earlier, contradicted one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from managed_agents._memory import rules

EXTRACT_TOOL = "record_observations"
CONSOLIDATE_TOOL = "write_memory_store"
MAX_OBSERVATIONS_PER_CHUNK = 100
MAX_STATEMENT_CHARS = 2_000
#: Per block, so one huge tool output cannot crowd the conversation out of a chunk.
MAX_TOOL_TEXT_CHARS = 2_000
MAX_TOOL_INPUT_CHARS = 500

ObservationKind = Literal["fact", "preference", "decision", "correction", "pattern", "procedure"]


class Observation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: ObservationKind = "fact"
    statement: str = Field(min_length=1, max_length=MAX_STATEMENT_CHARS)
    topic: str | None = Field(default=None, max_length=200, description="A short key: what the statement is about")


class ExtractAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    observations: list[Observation] = Field(default_factory=list, max_length=MAX_OBSERVATIONS_PER_CHUNK)


class MemoryWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    content: str


class ConsolidateAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    writes: list[MemoryWrite] = Field(default_factory=list, max_length=rules.MAX_MEMORIES_PER_STORE)
    deletes: list[str] = Field(default_factory=list, max_length=rules.MAX_MEMORIES_PER_STORE)

    def problems(self, existing: set[str]) -> list[str]:
        """What makes these operations impossible to apply (empty: they can be applied)."""
        found: list[str] = []
        seen: set[str] = set()
        for write in self.writes:
            try:
                rules.validate_path(write.path, "writes[].path")
                rules.validate_content(write.content, f"writes[{write.path!r}].content")
            except Exception as err:  # the rules' own message names the problem
                found.append(str(err))
            if write.path in seen:
                found.append(f"writes: {write.path!r} is written twice")
            seen.add(write.path)
        for path in self.deletes:
            if path in seen:
                found.append(f"deletes: {path!r} is also written")
            elif path not in existing:
                found.append(f"deletes: {path!r} is not in the store")
        after = (existing | seen) - set(self.deletes)
        if len(after) > rules.MAX_MEMORIES_PER_STORE:
            found.append(f"the store would hold {len(after)} memories (at most {rules.MAX_MEMORIES_PER_STORE})")
        return found


EXTRACT_SYSTEM = """You read one part of a past agent session and record what is worth remembering for \
future sessions: facts about the user, their projects and environment, preferences, decisions and \
their reasons, corrections the user made, procedures that worked, and recurring problems. \
Record each as one self-contained statement (it will be read without the transcript). Skip \
small talk, one-off details and anything already obvious. Secrets (keys, passwords, tokens) are \
never recorded. Answer only by calling the record_observations tool; an empty list is a valid answer."""

CONSOLIDATE_SYSTEM = """You maintain a memory store: text documents by path that future agent sessions \
read before they work. You are given the store as it is now and new observations from past \
sessions, oldest first. Produce the curated store: merge duplicates into one place, replace \
stale or contradicted entries with the latest value (a later observation wins over an earlier \
one and over the store), surface patterns that recur across sessions, and keep everything else. \
Keep documents focused and well organised by path (e.g. topics/<topic>.md); each document is \
at most 100 kB. Answer only by calling the write_memory_store tool: for every memory you change \
or create, its path and its complete new content; for every memory that should no longer exist \
(merged elsewhere, or wholly stale), its path in deletes. Memories you leave out are kept as they \
are."""

EXTRACT_TOOL_DEFINITION: dict[str, Any] = {
    "name": EXTRACT_TOOL,
    "description": "Record the observations worth remembering from this part of the session.",
    "input_schema": {
        "type": "object",
        "properties": {
            "observations": {
                "type": "array",
                "maxItems": MAX_OBSERVATIONS_PER_CHUNK,
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string", "enum": list(ObservationKind.__args__)},  # type: ignore[attr-defined]
                        "topic": {"type": "string", "description": "A short key: what it is about"},
                        "statement": {"type": "string", "maxLength": MAX_STATEMENT_CHARS},
                    },
                    "required": ["statement"],
                },
            }
        },
        "required": ["observations"],
    },
}

CONSOLIDATE_TOOL_DEFINITION: dict[str, Any] = {
    "name": CONSOLIDATE_TOOL,
    "description": "Write the curated memory store: whole memories to create or replace, and paths to delete.",
    "input_schema": {
        "type": "object",
        "properties": {
            "writes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                    "required": ["path", "content"],
                },
            },
            "deletes": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["writes", "deletes"],
    },
}


# --- stage 1: transcripts as text, in chunks ------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" [... {len(text) - limit} more characters]"


def _block_text(block: dict[str, Any]) -> str | None:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        args = json.dumps(block.get("input", {}), ensure_ascii=False, sort_keys=True)
        return f"(calls {block.get('name')}: {_clip(args, MAX_TOOL_INPUT_CHARS)})"
    if kind == "tool_result":
        parts = block.get("content")
        text = (
            " ".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
            if isinstance(parts, list)
            else str(parts or "")
        )
        label = "tool error" if block.get("is_error") else "tool result"
        return f"({label}: {_clip(text, MAX_TOOL_TEXT_CHARS)})"
    return None  # images, thinking, references: nothing to remember from here


def render_transcript(messages: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One line (or paragraph) per block: ``user: ...`` / ``agent: ...``."""
    for message in messages:
        who = "agent" if message.get("role") == "assistant" else "user"
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for block in blocks:
            text = _block_text(block) if isinstance(block, dict) else None
            if text and text.strip():
                yield f"{who}: {text}"


def chunk_lines(lines: Iterable[str], chunk_chars: int) -> list[str]:
    """Join lines into chunks of at most ``chunk_chars`` (a longer single line is cut)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        while len(line) > chunk_chars:
            if current:
                chunks.append("\n".join(current))
                current, size = [], 0
            chunks.append(line[:chunk_chars])
            line = line[chunk_chars:]
        if size + len(line) + 1 > chunk_chars and current:
            chunks.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        chunks.append("\n".join(current))
    return chunks


def extract_prompt(session_id: str, chunk: str, index: int, total: int, instructions: str | None) -> str:
    guidance = f"\n\nGuidance from the person who started this dream:\n{instructions}" if instructions else ""
    return (
        f"Session {session_id}, part {index + 1} of {total} of its transcript:{guidance}\n\n"
        f"<transcript>\n{chunk}\n</transcript>\n\nCall {EXTRACT_TOOL} with what is worth remembering."
    )


# --- stage 2: consolidation batches ---------------------------------------------------------------


def observation_line(session_id: str, obs: dict[str, Any]) -> str:
    topic = f' topic="{obs["topic"]}"' if obs.get("topic") else ""
    return (
        f'<observation session="{session_id}" kind="{obs.get("kind", "fact")}"{topic}>{obs["statement"]}</observation>'
    )


def batch_observations(items: list[tuple[str, dict[str, Any]]], batch_chars: int) -> list[list[list[Any]]]:
    """``(session_id, observation)`` pairs, in order, into batches of about ``batch_chars``."""
    batches: list[list[list[Any]]] = []
    current: list[list[Any]] = []
    size = 0
    for session_id, obs in items:
        cost = len(observation_line(session_id, obs)) + 1
        if current and size + cost > batch_chars:
            batches.append(current)
            current, size = [], 0
        current.append([session_id, obs])
        size += cost
    if current:
        batches.append(current)
    return batches


def consolidate_prompt(
    store: list[tuple[str, str]],
    batch: list[list[Any]],
    index: int,
    total: int,
    instructions: str | None,
) -> str:
    memories = "\n".join(f'<memory path="{path}">\n{content}\n</memory>' for path, content in store) or "(empty)"
    observations = "\n".join(observation_line(sid, obs) for sid, obs in batch) or "(none)"
    guidance = f"\n\nGuidance from the person who started this dream:\n{instructions}" if instructions else ""
    return (
        f"The memory store now ({len(store)} memories):\n<memory_store>\n{memories}\n</memory_store>\n\n"
        f"New observations, batch {index + 1} of {total}, oldest first:\n<observations>\n{observations}\n"
        f"</observations>{guidance}\n\nCall {CONSOLIDATE_TOOL} with the changes that curate the store."
    )
