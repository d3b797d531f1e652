"""MockClaude exercised through the real ``anthropic`` SDK (sync and async, no retries).

The point of the mock is that the SDK's HTTP, error-mapping and SSE code runs unmodified, so
every assertion here goes through ``Anthropic`` / ``AsyncAnthropic`` rather than raw HTTP.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic import Anthropic, AsyncAnthropic

from managed_agents._retry import classify_model_error
from managed_agents.testing.mock_claude import (
    NO_SCRIPT_MESSAGE,
    Fault,
    MockClaude,
    RecordedRequest,
    Turn,
    estimate_tokens,
    validate_messages_request,
)

MODEL = "claude-mock-1"
HELLO: list[Any] = [{"role": "user", "content": "hello"}]


@pytest.fixture
def mock() -> Iterator[MockClaude]:
    with MockClaude() as server:
        yield server


@pytest.fixture
def client(mock: MockClaude) -> Iterator[Anthropic]:
    sdk = Anthropic(base_url=mock.base_url, api_key="test-key", max_retries=0)
    yield sdk
    sdk.close()


def ask(client: Anthropic, messages: list[Any] = HELLO, **kwargs: Any) -> anthropic.types.Message:
    return client.messages.create(model=MODEL, max_tokens=256, messages=messages, **kwargs)


def stream_final(client: Anthropic, messages: list[Any] = HELLO, **kwargs: Any) -> Any:
    with client.messages.stream(model=MODEL, max_tokens=256, messages=messages, **kwargs) as stream:
        return stream.get_final_message()


def as_param(message: anthropic.types.Message) -> dict[str, Any]:
    """An assistant response turned back into a transcript message, as an engine does."""
    return {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]}


def first_text(message: Any) -> str:
    block = message.content[0]
    assert block.type == "text", block
    return str(block.text)


def error_of(exc: pytest.ExceptionInfo[anthropic.APIStatusError]) -> dict[str, Any]:
    """The ``error`` object of an API error body."""
    body = exc.value.body
    assert isinstance(body, dict), body
    return dict(body["error"])


def comparable(message: Any) -> dict[str, Any]:
    return {
        "content": [b.model_dump(exclude={"parsed_output"}) for b in message.content],
        "stop_reason": message.stop_reason,
        "model": message.model,
        "usage": message.usage.model_dump(),
    }


# --------------------------------------------------------------------------------------------
# Turns
# --------------------------------------------------------------------------------------------


def test_text_turn(mock: MockClaude, client: Anthropic) -> None:
    mock.add(Turn.text("hi there"))
    message = ask(client)
    assert message.id.startswith("msg_")
    assert message.model == MODEL
    assert message.role == "assistant"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "hi there")]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == estimate_tokens({"type": "text", "text": "hello"})
    assert message.usage.output_tokens == estimate_tokens([{"type": "text", "text": "hi there"}])

    [record] = mock.requests
    assert isinstance(record, RecordedRequest)
    assert (record.path, record.status, record.served, record.source, record.stream) == (
        "/v1/messages",
        200,
        "turn",
        "global",
        False,
    )
    assert record.headers["authorization"] == "Bearer test-key"  # anthropic 2.x sends api_key this way
    assert record.body["messages"] == HELLO
    assert mock.remaining() == 0


def test_tool_use_round_trip(mock: MockClaude, client: Anthropic) -> None:
    mock.add(Turn.tool_use("get_weather", {"city": "Paris"}, text="Let me check."), Turn.text("Sunny."))
    tools = [{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}]
    first = ask(client, tools=tools)
    assert first.stop_reason == "tool_use"
    text, call = first.content
    assert text.type == "text" and text.text == "Let me check."
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == {"city": "Paris"}
    assert call.id.startswith("toolu_")

    transcript = [
        *HELLO,
        as_param(first),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "22C"}]},
    ]
    second = ask(client, transcript, tools=tools)
    assert second.content[0].type == "text" and first_text(second) == "Sunny."
    assert mock.requests[-1].tool_results == [{"type": "tool_result", "tool_use_id": call.id, "content": "22C"}]


def test_parallel_tool_uses_and_explicit_ids(mock: MockClaude, client: Anthropic) -> None:
    turn = Turn.tool_uses([("read", {"path": "a"}), ("read", {"path": "b"}, "toolu_fixed")], text="both")
    assert turn.tool_use_ids[1] == "toolu_fixed"
    mock.add(turn, Turn.text("done"))
    message = ask(client)
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [c.input for c in calls] == [{"path": "a"}, {"path": "b"}]
    assert [c.id for c in calls] == turn.tool_use_ids
    assert len(set(turn.tool_use_ids)) == 2
    assert message.stop_reason == "tool_use"

    results = [{"type": "tool_result", "tool_use_id": c.id, "content": "ok"} for c in calls]
    final = ask(client, [*HELLO, as_param(message), {"role": "user", "content": results}])
    assert final.stop_reason == "end_turn"


def test_thinking_and_explicit_stop_reasons(mock: MockClaude, client: Anthropic) -> None:
    mock.add(
        Turn.text("42", thinking="let me think"),
        Turn(content=[{"type": "text", "text": "trunc"}], stop_reason="max_tokens"),
        Turn.text("", stop_reason="refusal"),
    )
    message = ask(client)
    thinking, text = message.content
    assert thinking.type == "thinking"
    assert (thinking.thinking, thinking.signature) == ("let me think", "mock-sig")
    assert text.type == "text" and text.text == "42"
    # The thinking block goes back in the transcript, like a real engine does with tool use.
    assert ask(client, [*HELLO, as_param(message), {"role": "user", "content": "go on"}]).stop_reason == ("max_tokens")
    assert ask(client).stop_reason == "refusal"
    with pytest.raises(ValueError):
        Turn.text("x", stop_reason="bogus")


STREAM_TURNS = {
    "text": lambda: Turn.text("The quick brown fox jumps over the lazy dog."),
    "tool_use": lambda: Turn.tool_use(
        "bash",
        {"command": 'echo "héllo\\n"\n\tdone \u0001', "nested": {"list": [1, 2.5, None, True]}},
        id="toolu_stream",
        text="Running it.",
    ),
    "empty_input": lambda: Turn.tool_use("noop", {}, id="toolu_empty"),
    "parallel": lambda: Turn.tool_uses([("a", {"x": 1}, "toolu_a"), ("b", {"y": "two"}, "toolu_b")]),
    "thinking": lambda: Turn.tool_use("t", {"q": "why"}, id="toolu_t", thinking="First, consider the problem."),
    "max_tokens": lambda: Turn.text("cut", stop_reason="max_tokens"),
}


@pytest.mark.parametrize("name", sorted(STREAM_TURNS))
def test_streaming_equals_non_streaming(mock: MockClaude, client: Anthropic, name: str) -> None:
    turn = STREAM_TURNS[name]()
    mock.add(turn, turn)
    plain = ask(client)
    streamed = stream_final(client)
    assert comparable(streamed) == comparable(plain)
    assert streamed.usage.output_tokens > 0
    assert [r.stream for r in mock.requests] == [False, True]


async def test_streaming_async_and_raw_events(mock: MockClaude) -> None:
    turn = Turn.tool_use("search", {"query": "a fairly long query string to split"}, id="toolu_x", thinking="hm")
    mock.add(turn, turn)
    client = AsyncAnthropic(base_url=mock.base_url, api_key="k", max_retries=0)
    try:
        async with client.messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
            final = await stream.get_final_message()
        assert final.content[1].type == "tool_use"
        assert final.content[1].input == {"query": "a fairly long query string to split"}

        raw = await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO, stream=True)
        events = [event async for event in raw]
    finally:
        await client.close()
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
    assert deltas.count("input_json_delta") > 1
    assert "thinking_delta" in deltas and "signature_delta" in deltas
    message_delta = events[-2]
    assert message_delta.type == "message_delta" and message_delta.delta.stop_reason == "tool_use"
    # The SDK drops pings before they reach us; check they are on the wire instead.
    with httpx2.Client() as http:
        body = {"model": MODEL, "max_tokens": 5, "messages": HELLO, "stream": True}
        mock.add(Turn.text("x"))
        wire = http.post(f"{mock.base_url}/v1/messages", json=body).text
    assert wire.startswith("event: message_start\ndata: {")
    assert 'event: ping\ndata: {"type": "ping"}\n\n' in wire


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


def test_rate_limited(mock: MockClaude, client: Anthropic) -> None:
    mock.add(Fault.rate_limited(retry_after=2), Fault.rate_limited(retry_after=0.25))
    with pytest.raises(anthropic.RateLimitError) as info:
        ask(client)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.response.headers["retry-after-ms"] == "2000"
    assert error_of(info)["type"] == "rate_limit_error"
    with pytest.raises(anthropic.RateLimitError) as info:
        ask(client)
    assert info.value.response.headers["retry-after"] == "0.25"
    assert [r.served for r in mock.requests] == ["fault:429", "fault:429"]


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [(Fault.overloaded(), 529, "overloaded_error"), (Fault.server_error(), 500, "api_error")],
)
def test_server_side_errors(mock: MockClaude, client: Anthropic, fault: Fault, status: int, error_type: str) -> None:
    mock.add(fault)
    with pytest.raises(anthropic.InternalServerError) as info:
        ask(client)
    assert info.value.status_code == status
    assert error_of(info)["type"] == error_type
    assert mock.requests[0].status == status


def test_bad_request_and_generic_status(mock: MockClaude, client: Anthropic) -> None:
    mock.add(
        Fault.bad_request("prompt is too long: 300000 tokens > 200000 maximum"),
        Fault.status(401, "authentication_error", "invalid x-api-key"),
        Fault.status(409, "conflict_error", "busy", headers={"x-extra": "1"}, x_should_retry=False),
        Fault.status(408, "timeout_error", "slow"),
    )
    with pytest.raises(anthropic.BadRequestError) as bad:
        ask(client)
    assert error_of(bad)["message"] == "prompt is too long: 300000 tokens > 200000 maximum"
    assert "prompt is too long" in bad.value.message
    with pytest.raises(anthropic.AuthenticationError):
        ask(client)
    with pytest.raises(anthropic.ConflictError) as conflict:
        ask(client)
    assert conflict.value.response.headers["x-extra"] == "1"
    assert conflict.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(anthropic.APIStatusError) as timeout:
        ask(client)
    assert timeout.value.status_code == 408


def test_sdk_retries_honour_fault_headers(mock: MockClaude) -> None:
    retrying = Anthropic(base_url=mock.base_url, api_key="k", max_retries=2)
    try:
        mock.add(
            Fault.rate_limited(retry_after=0.01),
            Fault.overloaded(headers={"retry-after-ms": "10"}),
            Turn.text("finally"),
        )
        assert first_text(retrying.messages.create(model=MODEL, max_tokens=5, messages=HELLO)) == "finally"
        assert [r.served for r in mock.requests] == ["fault:429", "fault:529", "turn"]

        mock.add(Fault.overloaded(x_should_retry=False), Turn.text("never"))
        with pytest.raises(anthropic.InternalServerError):
            retrying.messages.create(model=MODEL, max_tokens=5, messages=HELLO)
        assert mock.remaining() == 1
    finally:
        retrying.close()


def test_drop_connection(mock: MockClaude, client: Anthropic) -> None:
    mock.add(Fault.drop_connection(), Fault.drop_connection(), Turn.text("back"))
    with pytest.raises(anthropic.APIConnectionError):
        ask(client)
    with pytest.raises(anthropic.APIConnectionError):  # streaming: raised when the stream opens
        stream_final(client)
    assert first_text(ask(client)) == "back"
    assert [(r.served, r.status) for r in mock.requests] == [
        ("fault:drop", 0),
        ("fault:drop", 0),
        ("turn", 200),
    ]


def test_drop_connection_mid_stream(mock: MockClaude, client: Anthropic) -> None:
    mock.add(Fault.drop_connection(mid_stream=Turn.text("a long answer that gets cut off")))
    seen: list[str] = []
    # Which exception class the SDK raises for a body cut mid-read is its own business (httpx's
    # RemoteProtocolError before anthropic 2.17, APIConnectionError since). What the engine
    # promises is that it is a retryable connection failure, never a non-retryable error.
    with pytest.raises(Exception) as cut:
        with client.messages.stream(model=MODEL, max_tokens=5, messages=HELLO) as stream:
            seen.extend(event.type for event in stream)
    assert seen[0] == "message_start" and "message_stop" not in seen
    classified = classify_model_error(cut.value)
    assert classified.type == "model_request_failed_error" and not classified.non_retryable, classified


def test_stream_error_event(mock: MockClaude, client: Anthropic) -> None:
    mock.add(Fault.stream_error(after=Turn.text("partial answer")), Fault.stream_error())
    with pytest.raises(anthropic.APIStatusError) as info:
        stream_final(client)
    assert info.value.status_code == 200  # the HTTP status of the stream that carried the error
    assert error_of(info)["type"] == "overloaded_error"
    # The engine retries it like the 529 it stands for, not as a non-retryable 200.
    classified = classify_model_error(info.value)
    assert classified.type == "model_overloaded_error" and not classified.non_retryable, classified
    with pytest.raises(anthropic.InternalServerError) as plain:  # non-streaming: a real 529
        ask(client)
    assert plain.value.status_code == 529


def test_slow(mock: MockClaude, client: Anthropic) -> None:
    mock.add(Fault.slow(0.3, Turn.text("late")), Fault.slow(0.6, Turn.text("streamed late")))
    started = time.monotonic()
    assert first_text(ask(client)) == "late"
    assert time.monotonic() - started >= 0.3

    started = time.monotonic()
    with client.messages.stream(model=MODEL, max_tokens=5, messages=HELLO) as stream:
        first = next(iter(stream))
        first_at = time.monotonic() - started
        final = stream.get_final_message()
    assert first.type == "message_start"
    assert first_at < 0.3
    assert time.monotonic() - started >= 0.6
    assert first_text(final) == "streamed late"
    assert mock.requests[-1].served == "fault:slow"


def test_latency(client: Anthropic) -> None:
    with MockClaude(Turn.text("a"), latency=0.2) as slow:
        sdk = Anthropic(base_url=slow.base_url, api_key="k", max_retries=0)
        started = time.monotonic()
        ask(sdk)
        assert time.monotonic() - started >= 0.2
        sdk.close()


# --------------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------------


async def test_keyed_scripts_in_parallel(mock: MockClaude) -> None:
    mock.script_for("[session-a]", Turn.text("a1"), Turn.text("a2"))
    mock.script_for("[session-b]", Fault.slow(0.1, Turn.text("b1")), Turn.text("b2"))
    mock.add(Turn.text("global"))
    client = AsyncAnthropic(base_url=mock.base_url, api_key="k", max_retries=0)

    async def session(marker: str) -> list[str]:
        transcript: list[Any] = [{"role": "user", "content": f"task {marker}"}]
        answers = []
        for _ in range(2):
            message = await client.messages.create(model=MODEL, max_tokens=5, messages=transcript)
            answers.append(first_text(message))
            transcript += [as_param(message), {"role": "user", "content": "next"}]
        return answers

    try:
        a, b, plain = await asyncio.gather(
            session("[session-a]"),
            session("[session-b]"),
            client.messages.create(model=MODEL, max_tokens=5, messages=HELLO),
        )
        assert (a, b, first_text(plain)) == (["a1", "a2"], ["b1", "b2"], "global")
        assert mock.remaining() == 0
        assert [r.source for r in mock.requests_for("[session-b]")] == ["marker:[session-b]"] * 2

        # An exhausted keyed queue does not fall back to the global one.
        mock.add(Turn.text("not for session a"))
        with pytest.raises(anthropic.BadRequestError, match="no scripted response left"):
            await client.messages.create(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "[session-a] again"}]
            )
        assert mock.remaining() == 1
    finally:
        await client.close()


def test_script_exhausted_and_default(mock: MockClaude, client: Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        ask(client)
    assert error_of(info)["message"] == NO_SCRIPT_MESSAGE
    assert mock.requests[-1].served == "exhausted"

    calls: list[dict[str, Any]] = []

    def default(body: dict[str, Any]) -> Turn | Fault:
        calls.append(body)
        return Fault.overloaded() if len(calls) == 2 else Turn.text(f"default #{len(calls)}")

    with MockClaude(Turn.text("scripted"), default=default) as fallback:
        sdk = Anthropic(base_url=fallback.base_url, api_key="k", max_retries=0)
        assert first_text(ask(sdk)) == "scripted"
        assert first_text(ask(sdk)) == "default #1"
        with pytest.raises(anthropic.InternalServerError):
            ask(sdk)
        assert [r.source for r in fallback.requests] == ["global", "default", "default"]
        sdk.close()


def test_add_from_other_threads_while_serving() -> None:
    """Script items added from other threads while the server pops them are never lost or doubled."""
    with MockClaude(default=lambda body: Turn.text("default")) as server:

        def adder(k: int) -> None:
            for i in range(10):
                server.add(Turn.text(f"{k}-{i}"))
                time.sleep(0.001)

        async def burst() -> list[str]:
            client = AsyncAnthropic(base_url=server.base_url, api_key="k", max_retries=0)
            try:
                replies = await asyncio.gather(
                    *(client.messages.create(model=MODEL, max_tokens=5, messages=HELLO) for _ in range(40))
                )
            finally:
                await client.close()
            return [first_text(r) for r in replies]

        adders = [threading.Thread(target=adder, args=(k,)) for k in range(4)]
        for thread in adders:
            thread.start()
        texts = asyncio.run(burst())
        for thread in adders:
            thread.join()
        scripted = [t for t in texts if t != "default"]
        assert len(set(scripted)) == len(scripted)
        assert len(scripted) + server.remaining() == 40
        assert len(server.requests) == 40


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def test_transcript_validation(mock: MockClaude, client: Anthropic) -> None:
    mock.add(Turn.text("unused"))
    call = {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}
    bad_transcripts: list[tuple[list[Any], str]] = [
        ([*HELLO, {"role": "assistant", "content": [call]}, {"role": "user", "content": "hi"}], "toolu_1"),
        ([*HELLO, {"role": "assistant", "content": [call]}], "without `tool_result`"),
        (
            [*HELLO, {"role": "assistant", "content": "x"}, {"role": "user", "content": [result]}],
            "unexpected",
        ),
        (
            [
                *HELLO,
                {"role": "assistant", "content": [call]},
                {"role": "user", "content": [{"type": "text", "text": "first"}, result]},
            ],
            "must come first",
        ),
        ([{"role": "assistant", "content": "hi"}], 'first message must use the "user" role'),
        ([*HELLO, *HELLO], "alternate"),
        ([], "at least one message"),
        ([{"role": "user", "content": ""}], "non-empty content"),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}} for i in range(5)
                    ],
                }
            ],
            "maximum of 4",
        ),
    ]
    for transcript, problem in bad_transcripts:
        with pytest.raises(anthropic.BadRequestError) as info:
            ask(client, transcript)
        assert problem in error_of(info)["message"], transcript
        assert error_of(info)["type"] == "invalid_request_error"
    assert {r.served for r in mock.requests} == {"invalid"}
    assert mock.remaining() == 1  # rejected requests do not consume the script

    ok = [*HELLO, {"role": "assistant", "content": [call]}, {"role": "user", "content": [result]}]
    assert first_text(ask(client, ok)) == "unused"


def test_validate_messages_request_fields() -> None:
    assert validate_messages_request({"model": MODEL, "messages": HELLO}) == "max_tokens: Field required"
    assert validate_messages_request({"max_tokens": 1, "messages": HELLO}) == "model: Field required"
    assert validate_messages_request({"model": MODEL, "max_tokens": 1, "messages": HELLO}) is None
    assert validate_messages_request({"model": MODEL, "messages": HELLO}, require_max_tokens=False) is None
    tools = [{"name": "x"}, {"name": "x"}]
    assert "unique" in str(
        validate_messages_request({"model": MODEL, "max_tokens": 1, "messages": HELLO, "tools": tools})
    )
    # The final assistant message (prefill) may be empty.
    prefill = [*HELLO, {"role": "assistant", "content": ""}]
    assert validate_messages_request({"model": MODEL, "max_tokens": 1, "messages": prefill}) is None


def test_api_key_check() -> None:
    with MockClaude(Turn.text("welcome"), require_api_key="sekret") as guarded:
        wrong = Anthropic(base_url=guarded.base_url, api_key="nope", max_retries=0)
        right = Anthropic(base_url=guarded.base_url, api_key="sekret", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as info:
            ask(wrong)
        assert error_of(info)["type"] == "authentication_error"
        assert first_text(ask(right)) == "welcome"
        body = {"model": MODEL, "max_tokens": 5, "messages": HELLO}
        with httpx2.Client(base_url=guarded.base_url) as http:
            assert http.post("/v1/messages", json=body).status_code == 401
            guarded.add(Turn.text("x"))
            assert http.post("/v1/messages", json=body, headers={"x-api-key": "sekret"}).status_code == 200
        assert [r.served for r in guarded.requests] == ["unauthorized", "turn", "unauthorized", "turn"]
        wrong.close()
        right.close()


def test_unknown_route_is_a_json_404(mock: MockClaude, client: Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-x")
    assert mock.requests[-1].served == "not_found"


# --------------------------------------------------------------------------------------------
# Usage and prompt caching
# --------------------------------------------------------------------------------------------


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


EPHEMERAL = {"type": "ephemeral"}


def test_cache_accounting_follows_a_moving_breakpoint(mock: MockClaude, client: Anthropic) -> None:
    mock.add(Turn.text("answer one"), Turn.text("answer two"), Turn.text("other model"))
    system = "You are a meticulous agent. " * 20
    tokens = {
        "system": estimate_tokens(text(system)),
        "q1": estimate_tokens(text("first question")),
        "a1": estimate_tokens(text("answer one")),
        "q2": estimate_tokens(text("second question")),
        "tail": estimate_tokens(text("trailing, uncached")),
    }

    first = ask(
        client,
        [{"role": "user", "content": [text("first question", cache_control=EPHEMERAL)]}],
        system=system,
    )
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation_input_tokens == tokens["system"] + tokens["q1"]
    assert first.usage.input_tokens == 0
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == tokens["system"] + tokens["q1"]

    # The breakpoint moves to the newest message; the old one is gone but its prefix is cached.
    transcript: list[Any] = [
        {"role": "user", "content": [text("first question")]},
        {"role": "assistant", "content": [text("answer one")]},
        {
            "role": "user",
            "content": [text("second question", cache_control=EPHEMERAL), text("trailing, uncached")],
        },
    ]
    second = ask(client, transcript, system=system)
    assert second.usage.cache_read_input_tokens == tokens["system"] + tokens["q1"]
    assert second.usage.cache_creation_input_tokens == tokens["a1"] + tokens["q2"]
    assert second.usage.input_tokens == tokens["tail"]
    total = sum(tokens.values())
    assert client.messages.count_tokens(model=MODEL, messages=transcript, system=system).input_tokens == total

    # The model is part of the cache key.
    third = client.messages.create(model="claude-other", max_tokens=5, messages=transcript, system=system)
    assert first_text(third) == "other model"
    assert third.usage.cache_read_input_tokens == 0
    assert mock.requests[-2].served == "count_tokens"


def test_cache_ttl_split_tools_and_top_level_cache_control(mock: MockClaude, client: Anthropic) -> None:
    mock.add(Turn.text("one"), Turn.text("two"), Turn.text("three"))
    tool = {"name": "bash", "description": "run", "input_schema": {"type": "object"}}
    system = [text("rules", cache_control={"type": "ephemeral", "ttl": "1h"})]
    messages = [{"role": "user", "content": [text("go", cache_control=EPHEMERAL)]}]
    t_tool, t_sys, t_msg = estimate_tokens(tool), estimate_tokens(text("rules")), estimate_tokens(text("go"))

    usage = ask(client, messages, system=system, tools=[tool]).usage
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_1h_input_tokens == t_tool + t_sys
    assert usage.cache_creation.ephemeral_5m_input_tokens == t_msg
    assert usage.cache_creation_input_tokens == t_tool + t_sys + t_msg

    # Top-level cache_control marks the last block; the identical prefix is now a full hit.
    usage = ask(
        client,
        [{"role": "user", "content": "go"}],
        system=[text("rules")],
        tools=[tool],
        extra_body={"cache_control": EPHEMERAL},
    ).usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens, usage.input_tokens) == (
        t_tool + t_sys + t_msg,
        0,
        0,
    )
    # No breakpoint at all: nothing is read or written.
    usage = ask(client, [{"role": "user", "content": "go"}], system=[text("rules")], tools=[tool]).usage
    assert (usage.cache_read_input_tokens, usage.input_tokens) == (0, t_tool + t_sys + t_msg)


def test_cache_lookback_limit() -> None:
    with MockClaude(Turn.text("a"), Turn.text("b"), cache_lookback_blocks=2) as limited:
        sdk = Anthropic(base_url=limited.base_url, api_key="k", max_retries=0)
        ask(sdk, [{"role": "user", "content": [text("q", cache_control=EPHEMERAL)]}])
        later = [{"role": "user", "content": [text("q"), text("w"), text("e"), text("r", cache_control=EPHEMERAL)]}]
        assert ask(sdk, later).usage.cache_read_input_tokens == 0  # hit is 3 blocks back: too far
        sdk.close()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def test_cli_echo_server() -> None:
    command = [sys.executable, "-m", "managed_agents.testing.mock_claude", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")
            sdk = Anthropic(base_url=base_url, api_key="k", max_retries=0)
            reply = ask(sdk, [{"role": "user", "content": "ping " + "x" * 300}])
            assert first_text(reply) == "mock-claude: " + ("ping " + "x" * 300)[:200]
            sdk.close()
        finally:
            process.terminate()
            process.wait(timeout=10)
