"""A Claude-compatible mock of the Anthropic Messages API, served over real HTTP.

Why a real server rather than patching the SDK: the engine talks to Claude through the
official ``anthropic`` SDK, and the interesting failure modes (429 with ``retry-after``,
529 overloads, connections that die, streams that stall) live in the SDK's HTTP, retry and
SSE layers. Pointing a real client at ``MockClaude.base_url`` exercises all of that code,
so a test that passes here fails the same way against the real API.

Typical use::

    from anthropic import Anthropic
    from managed_agents.testing.mock_claude import Fault, MockClaude, Turn

    with MockClaude(
        Turn.tool_use("bash", {"command": "ls"}),
        Fault.overloaded(),
        Turn.text("done"),
    ) as mock:
        client = Anthropic(base_url=mock.base_url, api_key="test", max_retries=0)
        ...
        assert mock.remaining() == 0

Scripts are FIFO queues of :class:`Turn` (a scripted assistant response) and :class:`Fault`
(an HTTP-level failure). :meth:`MockClaude.script_for` gives parallel sessions in one test
their own queue, selected by a marker string in the first user message. Requests are
validated the way the real API does (alternating roles, every ``tool_use`` answered by a
``tool_result`` in the next message, at most 4 cache breakpoints), so an engine bug that
would earn a 400 from Claude also earns one here. ``usage`` includes deterministic
prompt-cache accounting so caching strategies can be asserted on.

The same scripts answer on the wire paths of Claude on the cloud platforms, so sessions run
offline through the SDK's ``AsyncAnthropicBedrock`` and ``AsyncAnthropicVertex`` clients too:

- Amazon Bedrock (``ANTHROPIC_BEDROCK_BASE_URL=<base_url>``): ``POST /model/{modelId}/invoke``
  and ``/model/{modelId}/invoke-with-response-stream``, whose stream is AWS event-stream binary
  framing (``application/vnd.amazon.eventstream``: ``chunk`` events carrying
  ``{"bytes": base64(event JSON)}``); errors are AWS-shaped (``{"message"}`` and
  ``x-amzn-ErrorType``; mid-stream, an ``exception`` message).
- Google Vertex AI (``ANTHROPIC_VERTEX_BASE_URL=<base_url>/v1``):
  ``POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict``
  and ``:streamRawPredict`` (server-sent events, as the Messages API).

Their bodies carry ``anthropic_version`` and no ``model`` (the model is in the path; requests
that break this get a 400, as on the platforms); :class:`RecordedRequest` keeps which ``api``,
path and ``model`` id each request used. Markers, faults and validation work alike on every path.

Run ``python -m managed_agents.testing.mock_claude --port 8765`` for a stand-alone echo
server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import hashlib
import itertools
import json
import logging
import math
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

__all__ = [
    "EVENT_STREAM_CONTENT_TYPE",
    "NO_SCRIPT_MESSAGE",
    "STOP_REASONS",
    "Api",
    "Fault",
    "MockClaude",
    "RecordedRequest",
    "Responder",
    "Turn",
    "estimate_tokens",
    "event_stream_message",
    "validate_messages_request",
]

log = logging.getLogger(__name__)

#: Message of the 400 answered when a request finds no scripted item and no ``default``.
NO_SCRIPT_MESSAGE = "mock-claude: no scripted response left for this request"

#: Stop reasons a :class:`Turn` may carry (the values the real API can return).
STOP_REASONS = frozenset(
    {
        "end_turn",
        "tool_use",
        "max_tokens",
        "refusal",
        "stop_sequence",
        "pause_turn",
        "model_context_window_exceeded",
    }
)

#: Signature put on thinking blocks the mock produces.
MOCK_SIGNATURE = "mock-sig"

#: Which API a request came in through: the Messages API, Amazon Bedrock or Google Vertex AI.
Api = Literal["anthropic", "bedrock", "vertex"]

#: Content type of Bedrock's streamed answers (AWS event-stream binary framing).
EVENT_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

# How long one sleep step of a slow fault lasts, and how often it sends a keep-alive ping.
_SLOW_STEP_SECONDS = 0.05
_SLOW_PING_SECONDS = 1.0
# Pieces a streamed text / thinking / tool input is split into (so clients really assemble deltas).
_STREAM_CHUNKS = 3
# Real Claude rejects requests with more cache_control breakpoints than this.
_MAX_CACHE_BREAKPOINTS = 4


# --------------------------------------------------------------------------------------------
# Token estimation
# --------------------------------------------------------------------------------------------


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def estimate_tokens(value: Any) -> int:
    """The mock's token estimate: ``ceil(len(canonical_json(value)) / 4)``.

    Deterministic and public so tests can compute the exact ``usage`` numbers they expect
    (e.g. ``estimate_tokens({"type": "text", "text": "hi"})`` for a one-block prompt).
    ``cache_control`` fields are *not* stripped here; the mock strips them from prompt blocks
    before estimating, so moving a breakpoint never changes a block's size.
    """
    return math.ceil(len(_canonical_json(value)) / 4)


# --------------------------------------------------------------------------------------------
# Script items
# --------------------------------------------------------------------------------------------


def _new_tool_use_id() -> str:
    return f"toolu_mock_{uuid.uuid4().hex[:20]}"


@dataclass
class Turn:
    """One scripted assistant response.

    ``content`` holds Anthropic content-block dicts exactly as the API returns them
    (``{"type": "text", "text": ...}``, ``{"type": "tool_use", "id", "name", "input"}``, ...).
    ``tool_use`` blocks without an ``id`` get a unique ``toolu_...`` one, so scripts stay short.

    ``stop_reason`` defaults to ``"tool_use"`` when the content has a ``tool_use`` block and
    ``"end_turn"`` otherwise; set it to ``"max_tokens"`` / ``"refusal"`` / ... to script those.
    ``thinking`` prepends ``{"type": "thinking", "thinking": ..., "signature": "mock-sig"}``.
    ``usage`` (optional) overrides keys of the computed ``usage`` object, for tests that need
    particular token counts.

    Ids are fixed when the Turn is built, so serving one Turn object twice repeats its
    ``tool_use`` ids; script a fresh Turn for each response of one transcript (the mock
    rejects duplicate ``tool_use`` ids like the real API does).
    """

    content: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    thinking: str | None = None
    usage: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # Own copies: the same Turn may be served to several requests, and callers may keep
        # mutating the dicts they passed in.
        blocks = copy.deepcopy(list(self.content))
        for index, block in enumerate(blocks):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise ValueError(f"Turn.content[{index}] must be a dict with a string 'type': {block!r}")
            if block["type"] == "tool_use":
                if not isinstance(block.get("name"), str):
                    raise ValueError(f"Turn.content[{index}]: tool_use block needs a string 'name'")
                block.setdefault("id", _new_tool_use_id())
                block.setdefault("input", {})
                if not isinstance(block["input"], dict):
                    raise ValueError(f"Turn.content[{index}]: tool_use 'input' must be a dict")
        self.content = blocks
        if self.stop_reason is not None and self.stop_reason not in STOP_REASONS:
            raise ValueError(f"unknown stop_reason {self.stop_reason!r}; expected one of {sorted(STOP_REASONS)}")

    # -- builders --------------------------------------------------------------------------

    @classmethod
    def text(cls, text: str, *, thinking: str | None = None, stop_reason: str | None = None) -> Turn:
        """A plain text answer (``stop_reason`` ``"end_turn"`` unless given)."""
        return cls(content=[{"type": "text", "text": text}], stop_reason=stop_reason, thinking=thinking)

    @classmethod
    def tool_use(
        cls,
        name: str,
        input: Mapping[str, Any],
        *,
        id: str | None = None,
        text: str | None = None,
        thinking: str | None = None,
    ) -> Turn:
        """A single tool call, optionally preceded by a text block (as Claude often does)."""
        return cls.tool_uses([(name, input, id)], text=text, thinking=thinking)

    @classmethod
    def tool_uses(
        cls,
        calls: Iterable[tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], str | None]],
        text: str | None = None,
        *,
        thinking: str | None = None,
    ) -> Turn:
        """Several parallel tool calls in one response: ``[(name, input), (name, input, id), ...]``."""
        blocks: list[dict[str, Any]] = []
        if text is not None:
            blocks.append({"type": "text", "text": text})
        for name, tool_input, *rest in calls:
            tool_id = rest[0] if rest else None
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_id or _new_tool_use_id(),
                    "name": name,
                    "input": dict(tool_input),
                }
            )
        if not any(b["type"] == "tool_use" for b in blocks):
            raise ValueError("Turn.tool_uses needs at least one call")
        return cls(content=blocks, thinking=thinking)

    # -- derived ---------------------------------------------------------------------------

    @property
    def resolved_stop_reason(self) -> str:
        """The stop reason served: explicit, else ``tool_use`` / ``end_turn`` from the content."""
        if self.stop_reason is not None:
            return self.stop_reason
        return "tool_use" if self.tool_use_ids else "end_turn"

    @property
    def tool_use_ids(self) -> list[str]:
        """Ids of the ``tool_use`` blocks, in order (handy for building ``tool_result`` replies)."""
        return [str(b["id"]) for b in self.content if b.get("type") == "tool_use"]

    def response_content(self) -> list[dict[str, Any]]:
        """The content blocks served: the thinking block (if any) followed by ``content``."""
        blocks = copy.deepcopy(self.content)
        if self.thinking is not None:
            blocks.insert(0, {"type": "thinking", "thinking": self.thinking, "signature": MOCK_SIGNATURE})
        return blocks


FaultKind = Literal["status", "drop_connection", "slow", "stream_error"]


@dataclass
class Fault:
    """One scripted failure (or delay) instead of a normal answer.

    Build with the class methods; each accepts ``headers`` (extra response headers) and
    ``x_should_retry`` (sends ``x-should-retry: true|false``, which the SDK obeys over its
    status-code rules). Fields are public so tests can inspect a script, but the builders are
    the supported way to make one.
    """

    kind: FaultKind
    status_code: int = 500
    error_type: str = "api_error"
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    x_should_retry: bool | None = None
    seconds: float = 0.0
    then: Turn | None = None

    # -- HTTP error answers ----------------------------------------------------------------

    @classmethod
    def status(
        cls,
        code: int,
        error_type: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        x_should_retry: bool | None = None,
    ) -> Fault:
        """Any HTTP error answer, e.g. ``Fault.status(401, "authentication_error", "bad key")``."""
        return cls(
            kind="status",
            status_code=code,
            error_type=error_type,
            message=message,
            headers=dict(headers or {}),
            x_should_retry=x_should_retry,
        )

    @classmethod
    def rate_limited(
        cls,
        retry_after: float | None = 1.0,
        *,
        message: str = "mock-claude: rate limited",
        headers: Mapping[str, str] | None = None,
        x_should_retry: bool | None = None,
    ) -> Fault:
        """HTTP 429 ``rate_limit_error`` with ``retry-after`` (seconds) and ``retry-after-ms``."""
        all_headers: dict[str, str] = {}
        if retry_after is not None:
            seconds = float(retry_after)
            all_headers["retry-after"] = str(int(seconds)) if seconds.is_integer() else repr(seconds)
            all_headers["retry-after-ms"] = str(round(seconds * 1000))
        all_headers.update(headers or {})
        return cls.status(429, "rate_limit_error", message, all_headers, x_should_retry=x_should_retry)

    @classmethod
    def overloaded(
        cls,
        message: str = "Overloaded",
        *,
        headers: Mapping[str, str] | None = None,
        x_should_retry: bool | None = None,
    ) -> Fault:
        """HTTP 529 ``overloaded_error`` (the SDK raises ``OverloadedError``, an ``InternalServerError``)."""
        return cls.status(529, "overloaded_error", message, headers, x_should_retry=x_should_retry)

    @classmethod
    def server_error(
        cls,
        message: str = "Internal server error",
        *,
        headers: Mapping[str, str] | None = None,
        x_should_retry: bool | None = None,
    ) -> Fault:
        """HTTP 500 ``api_error``."""
        return cls.status(500, "api_error", message, headers, x_should_retry=x_should_retry)

    @classmethod
    def bad_request(
        cls,
        message: str = "mock-claude: scripted bad request",
        *,
        headers: Mapping[str, str] | None = None,
        x_should_retry: bool | None = None,
    ) -> Fault:
        """HTTP 400 ``invalid_request_error`` with ``message``."""
        return cls.status(400, "invalid_request_error", message, headers, x_should_retry=x_should_retry)

    # -- transport-level faults ------------------------------------------------------------

    @classmethod
    def drop_connection(
        cls,
        *,
        mid_stream: Turn | None = None,
        headers: Mapping[str, str] | None = None,
        x_should_retry: bool | None = None,
    ) -> Fault:
        """Close the TCP connection without sending a response (the SDK sees a connection error).

        With ``mid_stream`` and a streaming request, the server instead answers 200, streams
        the first half of that turn's SSE events and then closes the connection, like a
        network failure in the middle of generation. Non-streaming requests ignore
        ``mid_stream`` and drop before any byte is sent.
        """
        return cls(
            kind="drop_connection",
            status_code=0,
            error_type="",
            headers=dict(headers or {}),
            x_should_retry=x_should_retry,
            then=mid_stream,
        )

    @classmethod
    def slow(
        cls,
        seconds: float,
        then: Turn,
        *,
        headers: Mapping[str, str] | None = None,
        x_should_retry: bool | None = None,
    ) -> Fault:
        """Wait ``seconds``, then serve ``then``.

        Streaming requests get ``message_start`` (and a ``ping``) immediately, then the wait
        (with a ``ping`` every second), then the rest, so a client can tell a slow model from
        a dead connection.
        """
        if not isinstance(then, Turn):
            raise TypeError("Fault.slow(..., then=) must be a Turn")
        return cls(
            kind="slow",
            status_code=200,
            error_type="",
            seconds=float(seconds),
            then=then,
            headers=dict(headers or {}),
            x_should_retry=x_should_retry,
        )

    @classmethod
    def stream_error(
        cls,
        error_type: str = "overloaded_error",
        message: str = "Overloaded",
        *,
        after: Turn | None = None,
        status_if_not_streaming: int = 529,
        headers: Mapping[str, str] | None = None,
        x_should_retry: bool | None = None,
    ) -> Fault:
        """An ``event: error`` inside a 200 SSE stream, as the real API sends mid-stream overloads.

        The stream carries ``message_start`` and, with ``after``, the first half of that turn's
        events before the error. A non-streaming request gets a plain HTTP error with
        ``status_if_not_streaming`` instead.
        """
        return cls(
            kind="stream_error",
            status_code=status_if_not_streaming,
            error_type=error_type,
            message=message,
            then=after,
            headers=dict(headers or {}),
            x_should_retry=x_should_retry,
        )

    # -- derived ---------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """Short description recorded in :attr:`RecordedRequest.served`."""
        if self.kind == "status":
            return f"fault:{self.status_code}"
        if self.kind == "drop_connection":
            return "fault:drop"
        if self.kind == "slow":
            return "fault:slow"
        return "fault:stream_error"

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.x_should_retry is not None:
            headers["x-should-retry"] = "true" if self.x_should_retry else "false"
        return headers


#: ``default=`` callable: given the parsed request body, return what to serve.
Responder = Callable[[dict[str, Any]], "Turn | Fault"]


@dataclass
class RecordedRequest:
    """One request the mock received.

    Appended as soon as the request arrives (in arrival order); ``status`` and ``served`` are
    filled in before the answer is sent (``status`` stays 0 when the connection was dropped
    without an answer). ``served`` is ``"turn"``, ``"fault:<status>"``, ``"fault:drop"``,
    ``"fault:slow"``, ``"fault:stream_error"``, ``"invalid"`` (rejected by validation),
    ``"unauthorized"``, ``"exhausted"`` (nothing scripted), ``"default_error"`` (the
    ``default`` responder raised; answered 400), ``"count_tokens"`` or ``"not_found"``.
    ``source`` says which queue answered: ``"global"``, ``"marker:<marker>"``, ``"default"``
    or ``""``. ``api`` is the API whose wire path the request used and ``model`` the model id
    it named (in the body for the Messages API, in the path on Bedrock and Vertex); ``body`` is
    the body as sent (so without ``model`` on Bedrock and Vertex).
    """

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    stream: bool
    status: int = 0
    served: str = ""
    source: str = ""
    api: Api = "anthropic"
    model: str = ""
    #: ``time.monotonic()`` when the request arrived (to check retry delays).
    received_at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def first_user_text(self) -> str:
        """Text of the first user message (what :meth:`MockClaude.script_for` markers match)."""
        return _first_user_text(self.body)

    @property
    def last_user_text(self) -> str:
        """Text of the last user message that has any text blocks."""
        return _last_user_text(self.body)

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The ``tool_result`` blocks of the last message (what the engine just answered)."""
        if not self.messages:
            return []
        content = self.messages[-1].get("content")
        if not isinstance(content, list):
            return []
        return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


# --------------------------------------------------------------------------------------------
# Request helpers
# --------------------------------------------------------------------------------------------


def _content_blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    return []


def _text_of(content: Any) -> str:
    return "\n".join(
        str(b.get("text", "")) for b in _content_blocks(content) if isinstance(b, dict) and b.get("type") == "text"
    )


def _first_user_text(body: Mapping[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return ""
    first = messages[0]
    if not isinstance(first, dict) or first.get("role") != "user":
        return ""
    return _text_of(first.get("content"))


def _last_user_text(body: Mapping[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text_of(message.get("content"))
            if text:
                return text
    return ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_messages_request(body: Any, *, require_max_tokens: bool = True) -> str | None:
    """Return the problem the real API would answer 400 for, or ``None`` if the body is fine.

    Deliberately minimal but strict where engines go wrong: required fields, roles alternating
    from ``user``, non-empty content, every ``tool_use`` answered by a ``tool_result`` in the
    *next* message (results first in that message, no stray results), unique ``tool_use``
    ids, unique tool names and at most 4 ``cache_control`` breakpoints.
    """
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if require_max_tokens:
        if "max_tokens" not in body:
            return "max_tokens: Field required"
        if not _is_int(body["max_tokens"]) or body["max_tokens"] < 1:
            return "max_tokens: must be a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list):
        return "messages: Field required" if messages is None else "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"

    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        names: set[str] = set()
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                return f"tools.{i}.name: Field required"
            if tool["name"] in names:
                return f"tools: Tool names must be unique. Duplicate: {tool['name']!r}"
            names.add(tool["name"])

    seen_tool_use_ids: set[str] = set()
    pending: list[str] = []  # tool_use ids of the previous (assistant) message
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        expected = "user" if i % 2 == 0 else "assistant"
        if i == 0 and role != "user":
            return 'messages: first message must use the "user" role'
        if role != expected:
            return (
                'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row (messages.{i})'
            )
        content = message.get("content")
        if not isinstance(content, str | list):
            return f"messages.{i}.content: Field required"
        is_final_assistant = role == "assistant" and i == len(messages) - 1
        if not content and not is_final_assistant:
            return (
                f"messages.{i}: all messages must have non-empty content except for the optional "
                "final assistant message"
            )
        blocks = _content_blocks(content)
        for j, block in enumerate(blocks):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                return f"messages.{i}.content.{j}: each content block must be an object with a 'type'"

        if role == "user":
            result_ids: list[str] = []
            seen_other = False
            for j, block in enumerate(blocks):
                if block["type"] == "tool_result":
                    if seen_other:
                        return (
                            f"messages.{i}.content.{j}: tool_result blocks must come first in the "
                            "content of a user message, before any other content"
                        )
                    tool_use_id = block.get("tool_use_id")
                    if tool_use_id not in pending:
                        return (
                            f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                            f"blocks: {tool_use_id}. Each `tool_result` block must have a corresponding "
                            "`tool_use` block in the previous message."
                        )
                    result_ids.append(str(tool_use_id))
                else:
                    seen_other = True
            missing = [tid for tid in pending if tid not in result_ids]
            if missing:
                return (
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message."
                )
            pending = []
        else:
            pending = []
            for j, block in enumerate(blocks):
                if block["type"] != "tool_use":
                    continue
                tool_use_id = block.get("id")
                if not isinstance(tool_use_id, str) or not tool_use_id:
                    return f"messages.{i}.content.{j}.id: Field required"
                if tool_use_id in seen_tool_use_ids:
                    return f"messages.{i}.content.{j}: `tool_use` ids must be unique: {tool_use_id}"
                seen_tool_use_ids.add(tool_use_id)
                pending.append(tool_use_id)
    if pending:
        return (
            f"messages.{len(messages) - 1}: `tool_use` ids were found without `tool_result` blocks "
            f"immediately after: {', '.join(pending)}. Each `tool_use` block must have a corresponding "
            "`tool_result` block in the next message."
        )

    breakpoints = len(_prompt_items(body)[1])
    if breakpoints > _MAX_CACHE_BREAKPOINTS:
        return f"A maximum of {_MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {breakpoints}."
    return None


# --------------------------------------------------------------------------------------------
# Prompt-cache accounting
# --------------------------------------------------------------------------------------------


def _strip_cache_control(block: Any) -> Any:
    """The block without its ``cache_control`` (also inside a tool_result's content blocks)."""
    if not isinstance(block, dict):
        return block
    stripped = {k: v for k, v in block.items() if k != "cache_control"}
    inner = stripped.get("content")
    if isinstance(inner, list):
        stripped["content"] = [_strip_cache_control(b) for b in inner]
    return stripped


def _prompt_items(body: Mapping[str, Any]) -> tuple[list[tuple[str, Any]], dict[int, str]]:
    """The prompt as ``(tag, block)`` items (tools, system, message blocks) plus breakpoints.

    Breakpoints map an item index to its ttl (``"5m"`` / ``"1h"``); a top-level
    ``cache_control`` (automatic caching) marks the last item.
    """
    items: list[tuple[str, Any]] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        items.extend(("tool", tool) for tool in tools)
    system = body.get("system")
    if isinstance(system, str):
        if system:
            items.append(("system", {"type": "text", "text": system}))
    elif isinstance(system, list):
        items.extend(("system", block) for block in system)
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                role = str(message.get("role"))
                items.extend((role, block) for block in _content_blocks(message.get("content")))
    breakpoints: dict[int, str] = {}
    for index, (_, block) in enumerate(items):
        control = block.get("cache_control") if isinstance(block, dict) else None
        if isinstance(control, dict):
            breakpoints[index] = str(control.get("ttl") or "5m")
    top_level = body.get("cache_control")
    if isinstance(top_level, dict) and items and (len(items) - 1) not in breakpoints:
        breakpoints[len(items) - 1] = str(top_level.get("ttl") or "5m")
    return items, breakpoints


@dataclass
class _PromptAnalysis:
    hashes: list[str]  # hashes[i]: the prefix through item i (model included, cache_control ignored)
    cumulative: list[int]  # cumulative[i]: tokens of items 0..i
    breakpoints: dict[int, str]

    @property
    def total(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0

    def tokens_through(self, index: int) -> int:
        return self.cumulative[index] if index >= 0 else 0


def _analyse_prompt(body: Mapping[str, Any]) -> _PromptAnalysis:
    items, breakpoints = _prompt_items(body)
    digest = hashlib.sha256(_canonical_json(body.get("model")).encode()).digest()
    hashes: list[str] = []
    cumulative: list[int] = []
    total = 0
    for tag, block in items:
        stripped = _strip_cache_control(block)
        # A chained hash is a function of the whole prefix, without re-hashing it per item.
        digest = hashlib.sha256(digest + _canonical_json([tag, stripped]).encode()).digest()
        hashes.append(digest.hex())
        total += estimate_tokens(stripped)
        cumulative.append(total)
    return _PromptAnalysis(hashes=hashes, cumulative=cumulative, breakpoints=breakpoints)


class _PromptCache:
    """Server-wide set of cached prefix hashes (entries never expire; see ``clear``)."""

    def __init__(self, lookback_blocks: int | None) -> None:
        self._hashes: set[str] = set()
        self._lock = threading.Lock()
        self._lookback = lookback_blocks

    def clear(self) -> None:
        with self._lock:
            self._hashes.clear()

    def account(self, analysis: _PromptAnalysis) -> dict[str, Any]:
        """Compute the input side of ``usage`` for a request, then cache its breakpoints."""
        total = analysis.total
        if not analysis.breakpoints:
            return _input_usage(input_tokens=total, read=0, created_5m=0, created_1h=0)
        ordered = sorted(analysis.breakpoints)
        last = ordered[-1]
        if self._lookback is None:
            candidates: Iterable[int] = range(last + 1)
        else:
            window: set[int] = set()
            for bp in ordered:
                window.update(range(max(0, bp - self._lookback), bp + 1))
            candidates = window
        with self._lock:
            read_end = max((i for i in candidates if analysis.hashes[i] in self._hashes), default=-1)
            created = {"5m": 0, "1h": 0}
            segment_start = read_end
            for bp in ordered:
                if bp <= read_end:
                    continue
                ttl = "1h" if analysis.breakpoints[bp] == "1h" else "5m"
                created[ttl] += analysis.tokens_through(bp) - analysis.tokens_through(segment_start)
                segment_start = bp
            self._hashes.update(analysis.hashes[bp] for bp in ordered)
        return _input_usage(
            input_tokens=total - analysis.tokens_through(last),
            read=analysis.tokens_through(read_end),
            created_5m=created["5m"],
            created_1h=created["1h"],
        )


def _input_usage(*, input_tokens: int, read: int, created_5m: int, created_1h: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": created_5m + created_1h,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": created_5m, "ephemeral_1h_input_tokens": created_1h},
    }


# --------------------------------------------------------------------------------------------
# SSE rendering
# --------------------------------------------------------------------------------------------


def _split(text: str, pieces: int = _STREAM_CHUNKS) -> list[str]:
    if not text:
        return [""]
    size = max(1, math.ceil(len(text) / pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _split_json(text: str, pieces: int = _STREAM_CHUNKS) -> list[str]:
    """Split serialized JSON into about ``pieces`` chunks, never inside an escape sequence."""
    unsafe: set[int] = set()  # cut positions that would fall inside a "\n" or "\uXXXX" escape
    in_string = False
    i = 0
    while i < len(text):
        char = text[i]
        if in_string and char == "\\":
            length = 6 if text[i + 1 : i + 2] == "u" else 2
            unsafe.update(range(i + 1, i + length))
            i += length
            continue
        if char == '"':
            in_string = not in_string
        i += 1
    step = max(1, math.ceil(len(text) / pieces))
    cuts = [0]
    for target in range(step, len(text), step):
        cut = target
        while cut in unsafe:
            cut += 1
        if cuts[-1] < cut < len(text):
            cuts.append(cut)
    cuts.append(len(text))
    return [text[start:end] for start, end in itertools.pairwise(cuts)] or [""]


def _block_events(index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    """``content_block_start`` / ``_delta``... / ``_stop`` events for one content block."""
    kind = block.get("type")
    events: list[dict[str, Any]] = []
    if kind == "text":
        start = {k: v for k, v in block.items() if k != "text"}
        start["text"] = ""
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events.extend(
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
            for piece in _split(str(block.get("text", "")))
        )
    elif kind in ("tool_use", "server_tool_use"):
        start = {k: v for k, v in block.items() if k != "input"}
        start["input"] = {}
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        serialized = json.dumps(block.get("input", {}), ensure_ascii=False) if block.get("input") else ""
        events.extend(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            for piece in _split_json(serialized)
        )
    elif kind == "thinking":
        events.append(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            }
        )
        events.extend(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "thinking_delta", "thinking": piece},
            }
            for piece in _split(str(block.get("thinking", "")))
        )
        events.append(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "signature_delta", "signature": str(block.get("signature", ""))},
            }
        )
    else:
        # redacted_thinking, server tool results, ...: sent whole in the start event.
        events.append({"type": "content_block_start", "index": index, "content_block": block})
    events.append({"type": "content_block_stop", "index": index})
    return events


def _sse(event: Mapping[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


def _error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}


# --------------------------------------------------------------------------------------------
# Amazon Bedrock framing
# --------------------------------------------------------------------------------------------


def event_stream_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message, as Bedrock streams them.

    A prelude (total length, headers length, both big-endian uint32) and its CRC32, the headers
    (each: name length byte, name, value type 7 = string, uint16 value length, value), the payload,
    then the CRC32 of everything before it. botocore's ``EventStreamBuffer``, which the SDK's
    Bedrock client decodes with, checks both checksums.
    """
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack(">B", len(raw_name)) + raw_name + b"\x07"
        encoded += struct.pack(">H", len(raw_value)) + raw_value
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _bedrock_chunk(event: Mapping[str, Any]) -> bytes:
    """A streamed Messages event as Bedrock frames it: a ``chunk`` event whose JSON payload holds
    the event's JSON, base64-encoded, in ``bytes``."""
    data = base64.b64encode(json.dumps(event, ensure_ascii=False).encode()).decode()
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    return event_stream_message(headers, json.dumps({"bytes": data}).encode())


#: The Bedrock stream exception a mid-stream error of each Anthropic type arrives as.
_BEDROCK_STREAM_EXCEPTIONS = {
    "overloaded_error": "serviceUnavailableException",
    "rate_limit_error": "throttlingException",
    "invalid_request_error": "validationException",
    "api_error": "internalServerException",
    "timeout_error": "modelTimeoutException",
}

#: Bedrock's error name (``x-amzn-ErrorType``) for an HTTP status.
_BEDROCK_ERRORS = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    503: "ServiceUnavailableException",
    529: "ServiceUnavailableException",
}


def _bedrock_exception(error_type: str, message: str) -> bytes:
    """A mid-stream failure as Bedrock sends it: an ``exception`` message (the SDK turns it into
    an ``error`` event, typed by the exception name)."""
    headers = {
        ":exception-type": _BEDROCK_STREAM_EXCEPTIONS.get(error_type, "modelStreamErrorException"),
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return event_stream_message(headers, json.dumps({"message": message}).encode())


def _platform_body_problem(api: Api, body: Mapping[str, Any]) -> str | None:
    """What Bedrock or Vertex refuses in a body the Messages API would take: the model belongs in
    the path, the API version in ``anthropic_version`` (Bedrock also refuses ``stream``)."""
    extra = [key for key in ("model", "stream") if key in body and (key == "model" or api == "bedrock")]
    if extra:
        return f"extraneous key [{extra[0]}] is not permitted"
    version = body.get("anthropic_version")
    if not isinstance(version, str) or not version:
        return "anthropic_version: Field required"
    return None


def _new_request_id() -> str:
    return f"req_mock_{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class MockClaude:
    """A scripted, Claude-compatible Messages API on a background thread.

    ``script`` items are served in order to requests that have no keyed script; ``default``
    answers when the relevant queue is empty (otherwise: a 400 with :data:`NO_SCRIPT_MESSAGE`,
    so an under-scripted test fails fast instead of hanging or retrying). ``latency`` is added
    before every successful answer. With ``require_api_key`` set, requests that carry neither
    ``x-api-key: <key>`` nor ``Authorization: Bearer <key>`` get a 401 ``authentication_error``.

    ``cache_lookback_blocks`` (extra): ``None`` (default) lets a cache hit end at any earlier
    block boundary; set ``20`` to mimic the real API, which only looks about 20 blocks back
    from each breakpoint, to catch caching layouts that would miss in production. Cached
    prefixes never expire and have no minimum length here (real Claude: 5 min / 1 h and
    1024+ tokens).

    All public methods are thread-safe: the script is typically extended from the test thread
    while the server thread serves. ``default`` runs on the server's event loop thread, so
    it must not block for long.
    """

    def __init__(
        self,
        *script: Turn | Fault,
        default: Responder | None = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        require_api_key: str | None = None,
        cache_lookback_blocks: int | None = None,
    ) -> None:
        self._check_items(script)
        self.default = default
        self.latency = float(latency)
        self.host = host
        self.require_api_key = require_api_key
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._global: deque[Turn | Fault] = deque(script)
        self._keyed: dict[str, deque[Turn | Fault]] = {}
        self._requests: list[RecordedRequest] = []
        self._cache = _PromptCache(cache_lookback_blocks)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> MockClaude:
        """Start serving on a background thread; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("MockClaude is already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                try:
                    if self._runner is not None:
                        loop.run_until_complete(self._runner.cleanup())
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="mock-claude", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30):
            raise RuntimeError("mock-claude: server did not start within 30 s")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop the server (in-flight requests are cut off) and join its thread. Idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._thread = None
        self._loop = None
        self._runner = None

    def __enter__(self) -> MockClaude:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("MockClaude is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>``, for ``Anthropic(base_url=...)``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._handle_messages)
        app.router.add_post("/v1/messages/count_tokens", self._handle_count_tokens)
        # aiohttp hands the segments over decoded: an ARN's %2F is a "/" in the model id.
        app.router.add_post("/model/{model}/{action:invoke|invoke-with-response-stream}", self._handle_bedrock)
        app.router.add_post(
            "/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{target}", self._handle_vertex
        )
        app.router.add_route("*", "/{tail:.*}", self._handle_not_found)
        # handler_cancellation: a client that gives up on a slow answer frees the handler.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    # -- scripting -------------------------------------------------------------------------

    @staticmethod
    def _check_items(items: Sequence[object]) -> None:
        for item in items:
            if not isinstance(item, Turn | Fault):
                raise TypeError(f"script items must be Turn or Fault, got {type(item).__name__}")

    def add(self, *items: Turn | Fault) -> None:
        """Append items to the global FIFO script."""
        self._check_items(items)
        with self._lock:
            self._global.extend(items)

    def script_for(self, marker: str, *items: Turn | Fault) -> None:
        """Append items to the queue of requests whose first user message contains ``marker``.

        Such requests are served only from this queue (then ``default``), never from the
        global one, so parallel sessions in one test cannot steal each other's turns. When
        several markers match, the one registered first wins.
        """
        if not marker:
            raise ValueError("marker must be a non-empty string")
        self._check_items(items)
        with self._lock:
            self._keyed.setdefault(marker, deque()).extend(items)

    def remaining(self) -> int:
        """Items left in the global and all keyed queues."""
        with self._lock:
            return len(self._global) + sum(len(q) for q in self._keyed.values())

    def remaining_for(self, marker: str) -> int:
        """Items left in one keyed script."""
        with self._lock:
            return len(self._keyed.get(marker, ()))

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order (a snapshot copy of the list)."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, marker: str) -> list[RecordedRequest]:
        """The recorded requests whose first user message contains ``marker``."""
        return [r for r in self.requests if marker in r.first_user_text]

    def clear_cache(self) -> None:
        """Forget every cached prompt prefix (as if the cache entries had expired)."""
        self._cache.clear()

    def _next_item(self, body: dict[str, Any]) -> tuple[Turn | Fault | None, str]:
        text = _first_user_text(body)
        with self._lock:
            queue, source = self._global, "global"
            for marker, keyed in self._keyed.items():
                if marker in text:
                    queue, source = keyed, f"marker:{marker}"
                    break
            if queue:
                return queue.popleft(), source
        if self.default is None:
            return None, ""
        item = self.default(body)
        if not isinstance(item, Turn | Fault):
            raise TypeError(f"default responder returned {type(item).__name__}, expected Turn or Fault")
        return item, "default"

    # -- handlers --------------------------------------------------------------------------

    def _record(
        self,
        request: web.Request,
        body: dict[str, Any],
        *,
        api: Api = "anthropic",
        model: str | None = None,
        stream: bool | None = None,
    ) -> RecordedRequest:
        record = RecordedRequest(
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            stream=body.get("stream") is True if stream is None else stream,
            api=api,
            model=model if model is not None else str(body.get("model") or ""),
        )
        with self._lock:
            self._requests.append(record)
        return record

    def _error(
        self,
        record: RecordedRequest,
        status: int,
        error_type: str,
        message: str,
        *,
        served: str,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        record.status, record.served = status, served
        request_id = _new_request_id()
        if record.api == "bedrock":  # AWS-shaped: the error's name in a header, a bare message
            name = _BEDROCK_ERRORS.get(status, "InternalServerException" if status >= 500 else "ValidationException")
            aws_headers = {"x-amzn-requestid": request_id, "x-amzn-errortype": name, **(headers or {})}
            return web.json_response({"message": message}, status=status, headers=aws_headers)
        all_headers = {"request-id": request_id, **(headers or {})}
        return web.json_response(_error_body(error_type, message, request_id), status=status, headers=all_headers)

    async def _read_body(self, request: web.Request) -> tuple[dict[str, Any], str | None]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return {}, "mock-claude: request body is not valid JSON"
        if not isinstance(body, dict):
            return {}, "request body must be a JSON object"
        return body, None

    def _unauthorized(self, request: web.Request, api: Api = "anthropic") -> bool:
        """Whether the request lacks the credentials its API needs.

        The Messages API is checked only with ``require_api_key``: the key may come as
        ``x-api-key`` (the documented API header, sent by older SDKs and by curl users) or as
        ``Authorization: Bearer <key>`` (what ``anthropic`` 2.x sends for ``api_key=``).
        Bedrock needs a SigV4 signature (the signature itself is not checked; with
        ``require_api_key``, that access key id) or a Bedrock API key as a bearer token; Vertex
        needs a bearer token (with ``require_api_key``, that one).
        """
        auth = request.headers.get("authorization", "")
        key = self.require_api_key
        bearer = auth.startswith("Bearer ") and len(auth) > len("Bearer ") and (key is None or auth == f"Bearer {key}")
        if api == "bedrock":
            sigv4 = auth.startswith("AWS4-HMAC-SHA256 Credential=")
            signed = sigv4 and (key is None or auth.startswith(f"AWS4-HMAC-SHA256 Credential={key}/"))
            return not (signed or bearer)
        if api == "vertex":
            return not bearer
        if key is None:
            return False
        if request.headers.get("x-api-key") == key:
            return False
        return auth != f"Bearer {key}"

    async def _handle_not_found(self, request: web.Request) -> web.StreamResponse:
        record = self._record(request, {})
        return self._error(
            record,
            404,
            "not_found_error",
            f"mock-claude: no route for {request.method} {request.path}",
            served="not_found",
        )

    async def _handle_count_tokens(self, request: web.Request) -> web.StreamResponse:
        body, problem = await self._read_body(request)
        record = self._record(request, body)
        if self._unauthorized(request):
            return self._error(record, 401, "authentication_error", "invalid x-api-key", served="unauthorized")
        problem = problem or validate_messages_request(body, require_max_tokens=False)
        if problem:
            return self._error(record, 400, "invalid_request_error", problem, served="invalid")
        record.status, record.served = 200, "count_tokens"
        total = _analyse_prompt(body).total
        return web.json_response({"input_tokens": total}, headers={"request-id": _new_request_id()})

    async def _handle_messages(self, request: web.Request) -> web.StreamResponse:
        body, problem = await self._read_body(request)
        return await self._answer(request, self._record(request, body), body, problem)

    async def _handle_bedrock(self, request: web.Request) -> web.StreamResponse:
        body, problem = await self._read_body(request)
        model, streamed = request.match_info["model"], request.match_info["action"] == "invoke-with-response-stream"
        record = self._record(request, body, api="bedrock", model=model, stream=streamed)
        return await self._answer(request, record, body, problem)

    async def _handle_vertex(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].rpartition(":")
        if not model or method not in ("rawPredict", "streamRawPredict"):
            return await self._handle_not_found(request)
        if model == "count-tokens":  # the SDK's count_tokens on Vertex (the model is in the body)
            return await self._handle_count_tokens(request)
        body, problem = await self._read_body(request)
        record = self._record(request, body, api="vertex", model=model, stream=method == "streamRawPredict")
        return await self._answer(request, record, body, problem)

    async def _answer(
        self, request: web.Request, record: RecordedRequest, body: dict[str, Any], problem: str | None
    ) -> web.StreamResponse:
        """Answer a Messages request that came in through any API's wire path (``record.api``)."""
        if self._unauthorized(request, record.api):
            status = 403 if record.api == "bedrock" else 401  # AWS refuses a bad signature with 403
            message = "invalid x-api-key" if record.api == "anthropic" else "missing or invalid credentials"
            return self._error(record, status, "authentication_error", message, served="unauthorized")
        if record.api != "anthropic":
            problem = problem or _platform_body_problem(record.api, body)
            # From here on the body reads as a Messages API body: validation, the marker scripts
            # and the answer's ``model`` work the same on every path.
            body = {**body, "model": record.model}
        problem = problem or validate_messages_request(body)
        if problem:
            return self._error(record, 400, "invalid_request_error", problem, served="invalid")
        try:
            item, source = self._next_item(body)
        except Exception as exc:
            log.exception("mock-claude: default responder failed")
            return self._error(
                record,
                400,
                "invalid_request_error",
                f"mock-claude: default responder raised {exc!r}",
                served="default_error",
                headers={"x-should-retry": "false"},
            )
        record.source = source
        if item is None:
            return self._error(record, 400, "invalid_request_error", NO_SCRIPT_MESSAGE, served="exhausted")
        if isinstance(item, Turn):
            record.served = "turn"
            return await self._serve_turn(request, record, body, item)
        return await self._serve_fault(request, record, body, item)

    async def _serve_fault(
        self, request: web.Request, record: RecordedRequest, body: dict[str, Any], fault: Fault
    ) -> web.StreamResponse:
        record.served = fault.label
        headers = fault.response_headers()
        if fault.kind == "status":
            return self._error(
                record,
                fault.status_code,
                fault.error_type,
                fault.message,
                served=fault.label,
                headers=headers,
            )
        if fault.kind == "slow":
            assert fault.then is not None
            return await self._serve_turn(request, record, body, fault.then, delay=fault.seconds, headers=headers)
        if fault.kind == "drop_connection":
            if fault.then is not None and record.stream:
                return await self._serve_turn(
                    request, record, body, fault.then, cut_off="drop", headers=headers, apply_latency=False
                )
            record.status = 0
            transport = request.transport
            if transport is not None:
                transport.close()
            # aiohttp's attempt to send this response fails quietly on the closed transport.
            return web.Response(status=500)
        # stream_error
        if not record.stream:
            return self._error(
                record,
                fault.status_code,
                fault.error_type,
                fault.message,
                served=fault.label,
                headers=headers,
            )
        return await self._serve_turn(
            request,
            record,
            body,
            fault.then or Turn(),
            cut_off="error",
            error=fault,
            headers=headers,
            apply_latency=False,
        )

    def _message(self, body: Mapping[str, Any], turn: Turn) -> dict[str, Any]:
        content = turn.response_content()
        usage = self._cache.account(_analyse_prompt(body))
        usage["output_tokens"] = estimate_tokens(content) if content else 0
        if turn.usage:
            usage.update(copy.deepcopy(turn.usage))
        return {
            "id": f"msg_mock_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": turn.resolved_stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    async def _serve_turn(
        self,
        request: web.Request,
        record: RecordedRequest,
        body: dict[str, Any],
        turn: Turn,
        *,
        delay: float = 0.0,
        headers: Mapping[str, str] | None = None,
        cut_off: Literal["drop", "error"] | None = None,
        error: Fault | None = None,
        apply_latency: bool = True,
    ) -> web.StreamResponse:
        message = self._message(body, turn)
        all_headers = {"request-id": _new_request_id(), **(headers or {})}
        if not record.stream:
            await asyncio.sleep(delay + (self.latency if apply_latency else 0.0))
            record.status = 200
            return web.json_response(message, headers=all_headers)

        if apply_latency and self.latency:
            await asyncio.sleep(self.latency)
        bedrock = record.api == "bedrock"
        frame = _bedrock_chunk if bedrock else _sse
        events = self._stream_events(message)
        head, tail = events[:2], events[2:]  # message_start + ping go out before any delay
        if cut_off is not None:
            blocks = tail[:-2]  # without message_delta / message_stop
            tail = blocks[: len(blocks) // 2]
        record.status = 200
        response = web.StreamResponse(
            status=200,
            headers={
                "content-type": EVENT_STREAM_CONTENT_TYPE if bedrock else "text/event-stream",
                "cache-control": "no-cache",
                **all_headers,
            },
        )
        try:
            await response.prepare(request)
            for event in head:
                await response.write(frame(event))
            await self._wait_alive(response, delay, frame)
            for event in tail:
                await response.write(frame(event))
            if cut_off == "drop":
                transport = request.transport
                if transport is not None:
                    transport.close()
                return response
            if cut_off == "error" and error is not None:
                if bedrock:
                    await response.write(_bedrock_exception(error.error_type, error.message))
                else:
                    await response.write(_sse(_error_body(error.error_type, error.message, _new_request_id())))
            await response.write_eof()
        except ConnectionError:
            log.debug("mock-claude: client went away mid-stream")
        return response

    @staticmethod
    async def _wait_alive(
        response: web.StreamResponse, seconds: float, frame: Callable[[Mapping[str, Any]], bytes] = _sse
    ) -> None:
        """Sleep ``seconds`` in small steps, sending a ``ping`` every second meanwhile."""
        if seconds <= 0:
            return
        deadline = time.monotonic() + seconds
        next_ping = time.monotonic() + _SLOW_PING_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(_SLOW_STEP_SECONDS, left))
            if time.monotonic() >= next_ping and deadline - time.monotonic() > 0:
                await response.write(frame({"type": "ping"}))
                next_ping += _SLOW_PING_SECONDS

    @staticmethod
    def _stream_events(message: dict[str, Any]) -> list[dict[str, Any]]:
        """The SSE events for a message, exactly as the API frames a streamed response."""
        usage = message["usage"]
        start_message = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
        start_message["usage"] = {**usage, "output_tokens": min(1, int(usage.get("output_tokens", 0)))}
        events: list[dict[str, Any]] = [{"type": "message_start", "message": start_message}, {"type": "ping"}]
        for index, block in enumerate(message["content"]):
            events.extend(_block_events(index, block))
        delta_usage = {
            key: usage[key]
            for key in (
                "input_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "output_tokens",
            )
            if key in usage
        }
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": delta_usage,
            }
        )
        events.append({"type": "message_stop"})
        return events


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def echo_responder(body: dict[str, Any]) -> Turn:
    """The CLI's default: ``"mock-claude: <first 200 chars of the last user text>"``."""
    return Turn.text(f"mock-claude: {_last_user_text(body)[:200]}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m managed_agents.testing.mock_claude",
        description="Serve a mock Claude Messages API that echoes the last user text.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--require-api-key", default=None, help="answer 401 unless x-api-key matches")
    args = parser.parse_args(argv)
    mock = MockClaude(
        default=echo_responder,
        latency=args.latency,
        host=args.host,
        port=args.port,
        require_api_key=args.require_api_key,
    )
    mock.start()
    print(mock.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        mock.stop()


if __name__ == "__main__":
    main()
