"""Claude through the Anthropic API, Amazon Bedrock or Google Vertex AI, chosen per worker.

Sessions run through ``python worker.py`` processes whose provider and credentials come only from
their environment, against the mock's wire paths for each provider, through the SDK's own clients
(SigV4 signing and AWS event-stream decoding for Bedrock, the Vertex URL scheme): a provider that
works here speaks the wire protocol the real one does.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anthropic
import httpx2
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from temporalio.testing import WorkflowEnvironment

from managed_agents._client import SessionClient
from managed_agents._dreams.client import start_dream
from managed_agents._providers import (
    VERTEX_ACCESS_TOKEN_ENV,
    ModelProvider,
    ModelProviderError,
    as_provider,
    model_provider,
)
from managed_agents._retry import classify_model_error
from managed_agents._settings import ManagedAgentsSettings
from managed_agents._worker import build_workers, run_workers
from managed_agents.testing.dreamer import dreamer_responder
from managed_agents.testing.mock_claude import (
    EVENT_STREAM_CONTENT_TYPE,
    Fault,
    MockClaude,
    RecordedRequest,
    Turn,
    event_stream_message,
)
from tests.conftest import Harness
from tests.helpers import marker, spawn_worker
from tests.test_dreams import contents, dream_body, memory_of, seeded_store, write_transcript
from tests.test_outcomes import PASS, outcome_input, work

AGENT_MODEL = "claude-sonnet-4-6"
BEDROCK_ID = "us.anthropic.claude-sonnet-4-6-v1:0"
AWS_KEY_ID = "AKIDMOCKPROVIDERS"
VERTEX_TOKEN = "ya29.mock-vertex-token"
PROJECT = "mock-project"
REGION = "us-east5"
VERTEX_MODELS = f"/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models"

#: Everything that could point a client elsewhere or supply other credentials, removed ("" removes
#: a variable in spawn_worker), so each worker sees only what its case gives it.
CLEAN = dict.fromkeys(
    [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_BEDROCK_BASE_URL",
        "ANTHROPIC_VERTEX_BASE_URL",
        "ANTHROPIC_VERTEX_PROJECT_ID",
        VERTEX_ACCESS_TOKEN_ENV,
        "CLOUD_ML_REGION",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_BEARER_TOKEN_BEDROCK",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "MANAGED_AGENTS_MODEL_PROVIDER",
        "MANAGED_AGENTS_MODEL_MAP",
    ],
    "",
)
#: No ~/.aws files, no instance metadata: an AWS credential is only what a case sets.
NO_AMBIENT_AWS = {
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def provider_env(provider: str, mock: MockClaude) -> dict[str, str]:
    """The worker environment of each case: the SDK's own variables, pointed at the mock."""
    env = {**CLEAN, **NO_AMBIENT_AWS, "MANAGED_AGENTS_MODEL_PROVIDER": provider}
    if provider == "anthropic":
        env |= {"ANTHROPIC_API_KEY": "sk-test-not-a-secret", "ANTHROPIC_BASE_URL": mock.base_url}
    elif provider == "bedrock":
        env |= {
            "ANTHROPIC_BEDROCK_BASE_URL": mock.base_url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": "mock-secret-not-a-secret",
            "MANAGED_AGENTS_MODEL_MAP": json.dumps({AGENT_MODEL: BEDROCK_ID}),
        }
    else:
        env |= {
            # The SDK's default endpoint ends in /v1, as does the mock's Vertex path.
            "ANTHROPIC_VERTEX_BASE_URL": f"{mock.base_url}/v1",
            "CLOUD_ML_REGION": REGION,
            "ANTHROPIC_VERTEX_PROJECT_ID": PROJECT,
            VERTEX_ACCESS_TOKEN_ENV: VERTEX_TOKEN,
        }
    return env


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process's environment as ``CLEAN`` and ``NO_AMBIENT_AWS`` leave a worker's."""
    for name in CLEAN:
        monkeypatch.delenv(name, raising=False)
    for name, value in NO_AMBIENT_AWS.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


# --- sessions, through worker processes configured by their environment ---------------------------


@pytest.mark.parametrize(
    ("provider", "path_prefix", "model_id"),
    [
        ("anthropic", "/v1/messages", AGENT_MODEL),
        ("bedrock", f"/model/{BEDROCK_ID}/", BEDROCK_ID),  # mapped by MANAGED_AGENTS_MODEL_MAP
        ("vertex", f"{VERTEX_MODELS}/{AGENT_MODEL}:", AGENT_MODEL),
    ],
)
async def test_session_through_provider(
    temporal_env: WorkflowEnvironment,
    settings: ManagedAgentsSettings,
    mock_claude: MockClaude,
    provider: str,
    path_prefix: str,
    model_id: str,
) -> None:
    m = marker()
    # The agent writes a file and answers (two streamed requests); the grader answers (a plain one).
    mock_claude.script_for(m, *work("the answer is 42"), PASS)
    worker = spawn_worker(temporal_env.client, settings, env=provider_env(provider, mock_claude))
    try:
        sessions = SessionClient(temporal_env.client, settings.task_queue)
        handle = await sessions.create(outcome_input(m))
        result = await asyncio.wait_for(handle.result(), 120)
    finally:
        stop(worker)
    assert result.status == "terminated" and result.final_message == "wrote: the answer is 42"
    assert [e["result"] for e in result.outcome_evaluations] == ["satisfied"]
    # Priced by the agent's model name, whatever id the provider was asked for.
    assert result.usage.list_cost is not None and result.usage.output_tokens > 0

    requests = mock_claude.requests_for(m)
    assert len(requests) == 3 and all(r.status == 200 and r.served == "turn" for r in requests)
    assert {r.api for r in requests} == {provider}
    assert all(r.path.startswith(path_prefix) and r.model == model_id for r in requests), [r.path for r in requests]
    agent, grader = requests[:2], requests[2]
    assert all(r.stream for r in agent) and not grader.stream, "sessions stream; the grader asks plainly"
    assert grader.body["tool_choice"]["name"] == "submit_grade"
    assert_wire(provider, requests)


async def test_dream_through_vertex_with_a_mapped_model(
    temporal_env: WorkflowEnvironment, settings: ManagedAgentsSettings, clean_env: pytest.MonkeyPatch
) -> None:
    """The dream's model calls (plain, forced-tool requests) take the provider and its ids too: an
    in-process worker built by ``build_workers`` from settings, with no client factory given."""
    vertex_id = "claude-sonnet-4-6@20260101"
    with MockClaude(default=dreamer_responder) as mock:
        for name, value in provider_env("vertex", mock).items():
            if value:
                clean_env.setenv(name, value)
        configured = settings.model_copy(update={"model_provider": "vertex", "model_map": {AGENT_MODEL: vertex_id}})
        h = Harness(temporal_env.client, configured, mock)
        store = h.store
        memory = memory_of(h)
        store_id = seeded_store(memory)
        write_transcript(h, "sesn_vertex_dream", ["remember: cloud = vertex", "Noted."])
        stop_workers = asyncio.Event()
        running = asyncio.create_task(
            run_workers(build_workers(temporal_env.client, configured, store=store), stop_workers)
        )
        try:
            handle = await start_dream(
                temporal_env.client, dream_body(store_id, ["sesn_vertex_dream"]), task_queue=configured.task_queue
            )
            result = await asyncio.wait_for(handle.result(), 120)
        finally:
            stop_workers.set()
            await running
    assert result["status"] == "completed", result
    assert "cloud: vertex" in contents(memory, result["outputs"][0]["memory_store_id"])["/facts.md"]
    assert result["progress"]["model_requests"] == 2 and result["usage"]["output_tokens"] > 0
    assert len(mock.requests) == 2
    for r in mock.requests:
        assert r.api == "vertex" and r.model == vertex_id and not r.stream
        assert r.path == f"{VERTEX_MODELS}/{vertex_id}:rawPredict" and "model" not in r.body


def assert_wire(provider: str, requests: list[RecordedRequest]) -> None:
    """What each provider's client put on the wire: the path's verb, the body, the credentials."""
    for r in requests:
        auth = r.headers.get("authorization", "")
        if provider == "anthropic":
            assert r.body["model"] == AGENT_MODEL and "anthropic_version" not in r.body
            assert auth == "Bearer sk-test-not-a-secret" or r.headers.get("x-api-key") == "sk-test-not-a-secret"
            continue
        assert "model" not in r.body and r.body["anthropic_version"]
        if provider == "bedrock":
            assert r.path.endswith("/invoke-with-response-stream" if r.stream else "/invoke")
            assert "stream" not in r.body
            assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/")
            assert "/us-east-1/bedrock/aws4_request" in auth
        else:
            assert r.path.endswith(":streamRawPredict" if r.stream else ":rawPredict")
            assert auth == f"Bearer {VERTEX_TOKEN}"


async def test_misconfigured_provider_stops_the_worker_at_start(
    temporal_env: WorkflowEnvironment, settings: ManagedAgentsSettings, mock_claude: MockClaude
) -> None:
    env = provider_env("vertex", mock_claude) | {"CLOUD_ML_REGION": ""}
    worker = spawn_worker(temporal_env.client, settings, env=env)
    try:
        code = await asyncio.to_thread(worker.wait, 60)
    finally:
        if worker.poll() is None:
            stop(worker)
    log = (settings.data_dir / "worker.log").read_text()
    assert code == 2, log[-2000:]
    # One log line that says what is missing, before the worker connects; no traceback.
    assert "the model provider is not configured" in log and "CLOUD_ML_REGION is not set" in log, log[-2000:]
    assert "Traceback" not in log and "worker started" not in log, log[-2000:]


@pytest.mark.parametrize(
    ("provider", "env", "named"),
    [
        ("vertex", {}, "CLOUD_ML_REGION"),
        ("vertex", {"CLOUD_ML_REGION": REGION, VERTEX_ACCESS_TOKEN_ENV: "t"}, "ANTHROPIC_VERTEX_PROJECT_ID"),
        ("vertex", {"CLOUD_ML_REGION": REGION, "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json"}, "GOOGLE"),
        ("bedrock", {}, "AWS_REGION"),
        ("bedrock", {"AWS_REGION": "us-east-1"}, "AWS_ACCESS_KEY_ID"),
        ("bedrock", {"AWS_REGION": "us-east-1", "AWS_PROFILE": "no-such-profile"}, "no-such-profile"),
    ],
)
def test_build_workers_refuses_a_misconfigured_provider(
    temporal_env: WorkflowEnvironment,
    settings: ManagedAgentsSettings,
    clean_env: pytest.MonkeyPatch,
    provider: str,
    env: dict[str, str],
    named: str,
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    configured = settings.model_copy(update={"model_provider": provider})
    with pytest.raises(ModelProviderError, match=named):
        build_workers(temporal_env.client, configured)


# --- the provider ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "client_type"),
    [
        ("anthropic", anthropic.AsyncAnthropic),
        ("bedrock", anthropic.AsyncAnthropicBedrock),
        ("vertex", anthropic.AsyncAnthropicVertex),
    ],
)
def test_model_provider_from_settings(
    clean_env: pytest.MonkeyPatch, mock_claude: MockClaude, provider: str, client_type: type
) -> None:
    for name, value in provider_env(provider, mock_claude).items():
        if value:
            clean_env.setenv(name, value)
    settings = ManagedAgentsSettings()  # from the environment, as a worker reads it
    assert settings.model_provider == provider
    built = model_provider(settings)
    client = built.client(AGENT_MODEL)
    assert isinstance(client, client_type) and client.max_retries == 0
    assert built.client("claude-haiku-4-5") is client, "one client (one connection pool) per worker"
    assert built(AGENT_MODEL) is client, "a provider is also a client factory"
    assert built.model_id(AGENT_MODEL) == (BEDROCK_ID if provider == "bedrock" else AGENT_MODEL)
    assert built.model_id("claude-haiku-4-5") == "claude-haiku-4-5"


def test_a_bare_factory_is_a_provider_with_ids_unchanged() -> None:
    client = anthropic.AsyncAnthropic(api_key="k", base_url="http://127.0.0.1:9", max_retries=0)
    wrapped = as_provider(lambda _model: client)
    assert wrapped.client(AGENT_MODEL) is client and wrapped.model_id(AGENT_MODEL) == AGENT_MODEL
    mapped = ModelProvider("custom", lambda _model: client, {AGENT_MODEL: "other"})
    assert as_provider(mapped) is mapped and mapped.model_id(AGENT_MODEL) == "other"


def test_settings_read_the_provider_and_map_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MANAGED_AGENTS_MODEL_PROVIDER", "vertex")
    clean_env.setenv("MANAGED_AGENTS_MODEL_MAP", json.dumps({AGENT_MODEL: "claude-sonnet-4-6@20260101"}))
    settings = ManagedAgentsSettings()
    assert settings.model_provider == "vertex"
    assert settings.model_map == {AGENT_MODEL: "claude-sonnet-4-6@20260101"}
    with pytest.raises(ValueError, match="model_provider"):
        ManagedAgentsSettings(model_provider="azure")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        ManagedAgentsSettings(model_map={AGENT_MODEL: " "})


# --- the mock's wire paths ------------------------------------------------------------------------


def test_event_stream_messages_decode_with_botocore() -> None:
    """The mock's Bedrock framing, read by the decoder the SDK uses, fed in arbitrary pieces."""
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    frames = [event_stream_message(headers, json.dumps({"n": i, "text": "é" * i}).encode()) for i in range(3)]
    data = b"".join(frames)
    buffer = EventStreamBuffer()
    decoded = []
    for start in range(0, len(data), 7):
        buffer.add_data(data[start : start + 7])
        decoded.extend(buffer)
    assert [json.loads(d.payload) for d in decoded] == [{"n": i, "text": "é" * i} for i in range(3)]
    assert all(d.headers == headers for d in decoded)
    corrupt = bytearray(frames[0])
    corrupt[-5] ^= 0xFF  # a payload byte: the message checksum no longer matches
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(corrupt))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


@pytest.fixture
def clients(mock_claude: MockClaude) -> Iterator[dict[str, Any]]:
    yield {
        "anthropic": anthropic.AsyncAnthropic(api_key="k", base_url=mock_claude.base_url, max_retries=0),
        "bedrock": anthropic.AsyncAnthropicBedrock(
            aws_access_key=AWS_KEY_ID,
            aws_secret_key="s",
            aws_region="us-east-1",
            base_url=mock_claude.base_url,
            max_retries=0,
        ),
        "vertex": anthropic.AsyncAnthropicVertex(
            region=REGION,
            project_id=PROJECT,
            access_token=VERTEX_TOKEN,
            base_url=f"{mock_claude.base_url}/v1",
            max_retries=0,
        ),
    }


async def test_scripts_and_faults_alike_on_every_wire_path(mock_claude: MockClaude, clients: dict[str, Any]) -> None:
    """One script per API, under its own marker: the same answers and the same failures, as the
    engine classifies them (retryable or not, after how long), whichever wire path served them."""
    outcomes: dict[str, list[Any]] = {}
    for api, client in clients.items():
        m = marker()
        mock_claude.script_for(
            m,
            Fault.rate_limited(3),
            Fault.overloaded(),
            Fault.stream_error(after=Turn.text("half an answer")),
            Fault.drop_connection(mid_stream=Turn.text("cut off midway")),
            Fault.slow(1.2, Turn.text("slowly")),
            Turn.tool_use("bash", {"command": "ls"}, text="Looking.", thinking="hmm"),
        )
        seen: list[Any] = []
        for _ in range(6):
            try:
                request = {"model": AGENT_MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": m}]}
                async with client.messages.stream(**request) as stream:
                    message = await stream.get_final_message()
                seen.append([b.model_dump(exclude={"id", "parsed_output"}) for b in message.content])
                seen.append((message.stop_reason, message.usage.output_tokens))
            except Exception as err:
                failure = classify_model_error(err)
                seen.append((type(err).__name__, failure.type, failure.non_retryable, failure.next_retry_delay))
        outcomes[api] = seen
        served = mock_claude.requests_for(m)
        assert [r.api for r in served] == [api] * 6 and all(r.source == f"marker:{m}" for r in served)
        assert [r.served for r in served] == [
            "fault:429",
            "fault:529",
            "fault:stream_error",
            "fault:drop",
            "fault:slow",
            "turn",
        ]
    assert outcomes["bedrock"] == outcomes["anthropic"] == outcomes["vertex"]
    assert outcomes["anthropic"][0] == ("RateLimitError", "model_rate_limited_error", False, timedelta(seconds=3))


async def test_bedrock_answers_like_aws(mock_claude: MockClaude, clients: dict[str, Any]) -> None:
    m = marker()
    mock_claude.script_for(m, Turn.text("framed"), Fault.bad_request("no such thing"))
    bedrock = clients["bedrock"]
    stream = await bedrock.messages.create(
        model=BEDROCK_ID, max_tokens=10, messages=[{"role": "user", "content": m}], stream=True
    )
    assert stream.response.headers["content-type"] == EVENT_STREAM_CONTENT_TYPE
    texts = [e.delta.text async for e in stream if e.type == "content_block_delta"]
    assert "".join(texts) == "framed"
    with pytest.raises(anthropic.BadRequestError) as failure:
        await bedrock.messages.create(model=BEDROCK_ID, max_tokens=10, messages=[{"role": "user", "content": m}])
    assert failure.value.response.headers["x-amzn-errortype"] == "ValidationException"
    assert failure.value.body == {"message": "no such thing"}


def test_platform_paths_refuse_what_the_platforms_refuse(mock_claude: MockClaude) -> None:
    body = {"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    bedrock = f"{mock_claude.base_url}/model/{BEDROCK_ID}/invoke"
    vertex = f"{mock_claude.base_url}/v1/projects/p/locations/{REGION}/publishers/anthropic/models/{AGENT_MODEL}"
    sigv4 = {"authorization": f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/20260101/us-east-1/bedrock/aws4_request"}
    bearer = {"authorization": f"Bearer {VERTEX_TOKEN}"}
    with httpx2.Client() as http:
        unsigned = http.post(bedrock, json={**body, "anthropic_version": "v"})
        assert unsigned.status_code == 403
        with_model = http.post(bedrock, json={**body, "anthropic_version": "v", "model": AGENT_MODEL}, headers=sigv4)
        assert with_model.status_code == 400 and "extraneous key [model]" in with_model.json()["message"]
        no_version = http.post(f"{vertex}:rawPredict", json=body, headers=bearer)
        assert no_version.status_code == 400 and "anthropic_version" in no_version.json()["error"]["message"]
        no_token = http.post(f"{vertex}:rawPredict", json={**body, "anthropic_version": "v"})
        assert no_token.status_code == 401
        unknown = http.post(f"{vertex}:predict", json={**body, "anthropic_version": "v"}, headers=bearer)
        assert unknown.status_code == 404
