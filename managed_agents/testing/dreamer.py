"""A rule-following stand-in for the model in dream pipelines, for tests, benchmarks and offline demos.

It reads the real requests the pipeline sends and answers the way the prompts ask, with simple,
checkable rules, so a test can predict the curated store from its inputs:

* reading a transcript part (``record_observations``): every line saying
  ``remember: <topic> = <value>`` becomes the observation ``<topic>: <value>``;
* consolidating (``write_memory_store``): the store's ``<topic>: <value>`` lines, then the
  observations in order (a later value replaces an earlier one), become one ``/facts.md`` with
  each topic once, sorted; topics mentioned in two or more sessions are listed in
  ``/patterns.md``; memories whose every line moved into ``/facts.md`` are deleted.
"""

from __future__ import annotations

import html
import re
from typing import Any

from managed_agents._dreams.pipeline import CONSOLIDATE_TOOL, EXTRACT_TOOL
from managed_agents.testing.mock_claude import Turn

REMEMBER = re.compile(r"remember:\s*([\w.-]+)\s*=\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
FACT = re.compile(r"^([\w.-]+):\s*(.+?)\s*$")
PATTERN = re.compile(r"^- ([\w.-]+): mentioned in sessions (.+)$")
MEMORY = re.compile(r'<memory path="([^"]+)">\n(.*?)\n</memory>', re.DOTALL)
OBSERVATION = re.compile(r'<observation session="([^"]+)"[^>]*>(.*?)</observation>', re.DOTALL)
FACTS_PATH = "/facts.md"
PATTERNS_PATH = "/patterns.md"


def _prompt(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    first = messages[0].get("content") if messages else ""
    if isinstance(first, str):
        return first
    return "\n".join(b.get("text", "") for b in first or [] if isinstance(b, dict) and b.get("type") == "text")


def _forced_tool(body: dict[str, Any]) -> str | None:
    choice = body.get("tool_choice") or {}
    return choice.get("name") if choice.get("type") == "tool" else None


def is_dream_request(body: dict[str, Any]) -> bool:
    return _forced_tool(body) in (EXTRACT_TOOL, CONSOLIDATE_TOOL)


def dreamer_responder(body: dict[str, Any]) -> Turn:
    tool = _forced_tool(body)
    prompt = _prompt(body)
    if tool == EXTRACT_TOOL:
        return Turn.tool_use(EXTRACT_TOOL, {"observations": extract(prompt)})
    if tool == CONSOLIDATE_TOOL:
        return Turn.tool_use(CONSOLIDATE_TOOL, consolidate(prompt))
    return Turn.text("dreamer: not a dream request")


def extract(prompt: str) -> list[dict[str, str]]:
    transcript = prompt.split("<transcript>", 1)[-1].rsplit("</transcript>", 1)[0]
    return [
        {"kind": "fact", "topic": topic, "statement": f"{topic}: {value}"}
        for topic, value in REMEMBER.findall(transcript)
    ]


def consolidate(prompt: str) -> dict[str, Any]:
    store = prompt.split("<memory_store>", 1)[-1].split("</memory_store>", 1)[0]
    facts: dict[str, str] = {}
    sessions: dict[str, set[str]] = {}
    deletes: list[str] = []
    for path, content in MEMORY.findall(store):
        lines = [line for line in content.splitlines() if line.strip()]
        if path == PATTERNS_PATH:
            for line in lines:
                if found := PATTERN.match(line):
                    sessions.setdefault(found[1], set()).update(s.strip() for s in found[2].split(","))
            continue
        parsed = [FACT.match(line) for line in lines]
        for match in parsed:
            if match:
                facts[match[1]] = match[2]
        if path != FACTS_PATH and parsed and all(parsed):
            deletes.append(path)
    observations = prompt.split("<observations>", 1)[-1].split("</observations>", 1)[0]
    for session_id, statement in OBSERVATION.findall(observations):
        if match := FACT.match(html.unescape(statement).strip()):
            facts[match[1]] = match[2]  # later wins
            sessions.setdefault(match[1], set()).add(session_id)
    writes = [{"path": FACTS_PATH, "content": "\n".join(f"{k}: {v}" for k, v in sorted(facts.items())) + "\n"}]
    recurring = {k: v for k, v in sorted(sessions.items()) if len(v) >= 2}
    if recurring:
        lines = [f"- {k}: mentioned in sessions {', '.join(sorted(v))}" for k, v in recurring.items()]
        writes.append({"path": PATTERNS_PATH, "content": "\n".join(lines) + "\n"})
    return {"writes": writes, "deletes": deletes}
