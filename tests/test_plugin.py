"""ManagedAgentsPlugin as a team uses it: their own project (tests/plugin_project, public names
only), their own workflow on their own task queue, starting a graded AgentSession as a child
workflow; in one worker process with both roles, and in two (brain, sandbox)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from managed_agents import ManagedAgentsPlugin, ManagedAgentsSettings, SessionClient
from managed_agents.testing.mock_claude import Fault, MockClaude, Turn

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "tests" / "plugin_project"


class ProjectWorker:
    """``python -m tests.plugin_project.worker``: the team's worker process."""

    def __init__(self, temporal_env: Any, mock: MockClaude, data_dir: Path, queue: str, roles: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / f"worker-{roles.replace(',', '-')}.log"
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": temporal_env.client.namespace,
            "BILLING_TASK_QUEUE": queue,
            "MANAGED_AGENTS_ROLES": roles,
            "MANAGED_AGENTS_DATA_DIR": str(data_dir),
            "MANAGED_AGENTS_SANDBOX_ID": "billing-host",
            "MANAGED_AGENTS_LOG_FORMAT": "json",
            "ANTHROPIC_API_KEY": "sk-test-not-a-secret",
            "ANTHROPIC_BASE_URL": mock.base_url,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.plugin_project.worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log.open("ab"),
            text=True,
        )
        started = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if "worker started" in line:
                    started.set()

        threading.Thread(target=read, daemon=True).start()
        if not started.wait(60):
            self.stop()
            raise AssertionError(f"the project's worker did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def identity_prefix(self) -> str:
        return f"{self.proc.pid}@"  # a worker's default identity is pid@host


async def who_ran(temporal_env: Any, session_id: str) -> dict[str, set[str]]:
    """From the session's history: activity type -> identities of the workers that ran it."""
    history = await temporal_env.client.get_workflow_handle(session_id).fetch_history()
    scheduled: dict[int, str] = {}
    ran: dict[str, set[str]] = {}
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.HasField("activity_task_started_event_attributes"):
            attrs = event.activity_task_started_event_attributes
            ran.setdefault(scheduled[attrs.scheduled_event_id], set()).add(attrs.identity)
    return ran


@pytest.fixture
def queue() -> str:
    return f"billing-{uuid.uuid4().hex[:8]}"


def script_review(mock: MockClaude, invoice_id: str) -> None:
    """The agent writes report.md and stops; the grader (its own context) finds it satisfied."""
    mock.script_for(
        invoice_id,
        Turn.tool_use("write", {"file_path": "report.md", "content": f"{invoice_id}: total 42 EUR"}),
        Turn.text("report.md states the total: 42 EUR"),
        Turn.tool_use(
            "submit_grade",
            {
                "criteria": [
                    {"criterion": "report.md exists", "passed": True, "reason": "it does"},
                    {"criterion": "it states the invoice total", "passed": True, "reason": "42 EUR"},
                ],
                "verdict": "satisfied",
                "explanation": "both criteria hold",
            },
        ),
    )


async def review(temporal_env: Any, queue: str, invoice_id: str) -> dict[str, str]:
    # Another service's client: the plugin on the client gives it the pydantic converter.
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        plugins=[ManagedAgentsPlugin(ManagedAgentsSettings())],
    )
    result: dict[str, str] = await client.execute_workflow(
        "InvoiceReview", invoice_id, id=f"invoice-{invoice_id}", task_queue=queue
    )
    return result


def check_review(result: dict[str, str], mock: MockClaude, invoice_id: str, data_dir: Path) -> None:
    assert result["verdict"] == "satisfied", result
    assert result["session_id"] == f"review-{invoice_id}"
    assert result["final_message"] == "report.md states the total: 42 EUR"
    # The team's own activity fed the agent: its text is in the model's first request.
    first = mock.requests_for(invoice_id)[0]
    assert "3 items, total 42 EUR" in str(first.body["messages"]), first.body
    # The grader ran in its own context: a forced submit_grade request.
    assert any(r.body.get("tool_choice", {}).get("name") == "submit_grade" for r in mock.requests_for(invoice_id))
    report = data_dir / "workspaces" / result["session_id"] / "report.md"
    assert report.read_text() == f"{invoice_id}: total 42 EUR"


async def test_own_workflow_runs_a_graded_session_on_a_plugin_worker(
    temporal_env: Any, mock_claude: MockClaude, tmp_path: Path, queue: str
) -> None:
    invoice_id = f"inv-{uuid.uuid4().hex[:10]}"
    script_review(mock_claude, invoice_id)
    worker = ProjectWorker(temporal_env, mock_claude, tmp_path / "data", queue, "brain,sandbox")
    try:
        result = await review(temporal_env, queue, invoice_id)
    finally:
        worker.stop()
    check_review(result, mock_claude, invoice_id, tmp_path / "data")
    ran = await who_ran(temporal_env, result["session_id"])
    assert all(i.startswith(worker.identity_prefix) for ids in ran.values() for i in ids), ran
    assert "managed_agents.tool.write" in ran and "managed_agents.model_request" in ran, ran


async def test_brain_and_sandbox_in_two_plugin_worker_processes(
    temporal_env: Any, mock_claude: MockClaude, tmp_path: Path, queue: str
) -> None:
    invoice_id = f"inv-{uuid.uuid4().hex[:10]}"
    script_review(mock_claude, invoice_id)
    data_dir = tmp_path / "data"  # the shared store and workspace root
    brain = ProjectWorker(temporal_env, mock_claude, data_dir, queue, "brain")
    sandbox = ProjectWorker(temporal_env, mock_claude, data_dir, queue, "sandbox")
    try:
        result = await review(temporal_env, queue, invoice_id)
    finally:
        brain.stop()
        sandbox.stop()
    check_review(result, mock_claude, invoice_id, data_dir)
    ran = await who_ran(temporal_env, result["session_id"])
    on_sandbox = {
        "managed_agents.sandbox.provision",
        "managed_agents.tool.write",
        "managed_agents.outcome.collect_deliverables",
    }
    assert on_sandbox <= set(ran), ran
    for activity_type, identities in ran.items():
        expected = sandbox if activity_type in on_sandbox else brain
        assert all(i.startswith(expected.identity_prefix) for i in identities), (activity_type, identities)


def test_the_project_imports_only_public_names() -> None:
    import managed_agents

    for path in PROJECT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("managed_agents"):
                assert node.module == "managed_agents", f"{path.name} imports {node.module}"
                assert {a.name for a in node.names} <= set(managed_agents.__all__), path.name
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("managed_agents.") for a in node.names), path.name


def test_a_sandbox_only_worker_on_the_wrong_queue_says_which_queue() -> None:
    plugin = ManagedAgentsPlugin(ManagedAgentsSettings(roles={"sandbox"}))
    with pytest.raises(ValueError, match=r"'billing-sandbox'"):
        plugin._agent_queue("billing")


def test_a_foreign_payload_converter_is_refused_by_name() -> None:
    import dataclasses

    import temporalio.converter

    class OwnPayloads(temporalio.converter.CompositePayloadConverter):
        def __init__(self) -> None:
            super().__init__(temporalio.converter.JSONPlainPayloadConverter())

    foreign = dataclasses.replace(temporalio.converter.DataConverter.default, payload_converter_class=OwnPayloads)
    with pytest.raises(TypeError, match="OwnPayloads"):
        ManagedAgentsPlugin().configure_client({"data_converter": foreign})  # type: ignore[typeddict-item]


async def test_a_child_session_gets_a_follow_up_from_its_parent_workflow(
    temporal_env: Any, mock_claude: MockClaude, tmp_path: Path, queue: str
) -> None:
    topic = f"topic-{uuid.uuid4().hex[:10]}"
    # The first answer is slow, so the follow-up (a signal from the parent) arrives mid-turn.
    mock_claude.script_for(topic, Fault.slow(1.5, Turn.text("first answer")), Turn.text("second answer"))
    worker = ProjectWorker(temporal_env, mock_claude, tmp_path / "data", queue, "brain,sandbox")
    try:
        client = temporal_env.client
        result = await client.execute_workflow("FollowUp", topic, id=f"follow-{topic}", task_queue=queue)
        events = await SessionClient(client, queue).get(result["session_id"]).events()
    finally:
        worker.stop()
    assert result["final_message"] == "second answer", result
    messages = [e.model_extra["content"][0]["text"] for e in events if e.type == "user.message"]
    assert messages == [topic, f"{topic}: and a follow-up"]
    assert [e.model_extra["content"][0]["text"] for e in events if e.type == "agent.message"] == [
        "first answer",
        "second answer",
    ]


async def test_a_mistyped_session_body_fails_the_callers_workflow_naming_the_field(
    temporal_env: Any, mock_claude: MockClaude, tmp_path: Path, queue: str
) -> None:
    worker = ProjectWorker(temporal_env, mock_claude, tmp_path / "data", queue, "brain,sandbox")
    try:
        with pytest.raises(WorkflowFailureError) as failed:
            await temporal_env.client.execute_workflow(
                "MistypedRequest", id=f"mistyped-{uuid.uuid4().hex[:8]}", task_queue=queue
            )
    finally:
        worker.stop()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "invalid_request_error", cause
    assert cause.non_retryable and "agent.model" in cause.message, cause.message


# The SDK warns when a pydantic model goes through its default converter: every worker the plugin
# starts must carry the client's pydantic converter.
@pytest.mark.filterwarnings("error::UserWarning")
async def test_the_plugin_on_a_client_serves_workers_on_two_queues(
    temporal_env: Any, mock_claude: MockClaude, tmp_path: Path
) -> None:
    """Registered once, on the client: every worker built from it gets the plugin, each on its own
    queue with its own sandbox queues, sharing one store."""
    import anthropic
    from temporalio.worker import Worker

    from tests.helpers import marker, session_input

    settings = ManagedAgentsSettings(data_dir=tmp_path / "data", sandbox_id="shared-host")
    model = anthropic.AsyncAnthropic(api_key="mock", base_url=mock_claude.base_url, max_retries=0)
    plugin = ManagedAgentsPlugin(settings, model_client_factory=lambda _m: model)
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        plugins=[plugin],
    )
    queues = [f"team-a-{uuid.uuid4().hex[:6]}", f"team-b-{uuid.uuid4().hex[:6]}"]
    workers = [Worker(client, task_queue=q) for q in queues]  # nothing registered by hand
    async with workers[0], workers[1]:
        for queue in queues:
            m = marker()
            mock_claude.script_for(
                m, Turn.tool_use("bash", {"command": f"echo on {queue}"}), Turn.text(f"done on {queue}")
            )
            handle = await SessionClient(client, queue).create(session_input(f"{m} go"))
            result = await handle.result()
            assert result.final_message == f"done on {queue}"
            outputs = [
                e.model_extra["content"][0]["text"] for e in await handle.events() if e.type == "agent.tool_result"
            ]
            assert outputs == [f"on {queue}\n"], outputs
            ran = await who_ran(temporal_env, handle.id)
            assert "managed_agents.tool.bash" in ran
    assert (tmp_path / "data" / "sessions.db").exists(), "one store in the settings' data directory"


async def test_a_worker_level_plugin_takes_over_from_the_clients(
    temporal_env: Any, mock_claude: MockClaude, tmp_path: Path
) -> None:
    """On the client (both roles) and on a worker (brain only): the worker's settings win, nothing
    is registered twice, and the client's instance starts no sandbox workers for it."""
    import anthropic
    from temporalio.worker import Worker

    from tests.helpers import marker, session_input

    model = anthropic.AsyncAnthropic(api_key="mock", base_url=mock_claude.base_url, max_retries=0)
    on_client = ManagedAgentsPlugin(
        ManagedAgentsSettings(data_dir=tmp_path / "client-data"), model_client_factory=lambda _m: model
    )
    on_worker = ManagedAgentsPlugin(
        ManagedAgentsSettings(data_dir=tmp_path / "worker-data", roles={"brain"}), model_client_factory=lambda _m: model
    )
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        plugins=[on_client],
    )
    queue = f"takeover-{uuid.uuid4().hex[:6]}"
    worker = Worker(client, task_queue=queue, plugins=[on_worker])
    config = worker.config(active_config=True)
    names = [a.__temporal_activity_definition.name for a in config["activities"]]  # type: ignore[attr-defined]
    assert len(names) == len(set(names)) and "managed_agents.model_request" in names
    assert on_worker._heartbeats in config["interceptors"] and on_client._heartbeats not in config["interceptors"]
    m = marker()
    mock_claude.script_for(m, Turn.text("no tools needed"))
    async with worker:
        handle = await SessionClient(client, queue).create(
            session_input(f"{m} go", options={"sandbox_provision_seconds": 2})
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    # Brain only: nobody prepared the workspace (the client's instance started no sandbox worker).
    assert "SandboxUnavailable" in str(failed.value.cause) or "sandbox" in str(failed.value.cause), failed.value.cause
    assert (tmp_path / "worker-data" / "sessions.db").exists() and not (tmp_path / "client-data").exists()
