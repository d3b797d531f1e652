"""What a worker holds: the store, the model client, the sandbox, and the activities built on them.

Built on the worker from ``ManagedAgentsSettings`` (the plugin calls this when it configures a
worker), once per process and plugin: one database engine and connection pool, one model client.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from managed_agents._settings import ManagedAgentsSettings


class WorkerResources:
    def __init__(
        self,
        settings: ManagedAgentsSettings,
        agent_queue: str,
        model_client_factory: Callable[[str], Any] | None = None,
        store: Any = None,
    ) -> None:
        self.settings = settings
        self.agent_queue = agent_queue
        self._model_client_factory = model_client_factory
        if store is not None:  # shared with the caller (the testing harness reads it)
            self.store = store

    @functools.cached_property
    def store(self) -> Any:
        from managed_agents._store import SessionStore

        return SessionStore(self.settings.resolved_store_url())

    @functools.cached_property
    def memory(self) -> Any:
        from managed_agents._memory.service import MemoryService

        # Memory stores live in the session store's database: one engine and pool per worker.
        return MemoryService(self.store.engine)

    @functools.cached_property
    def model_clients(self) -> Any:
        """The model provider (Anthropic, Bedrock, Vertex) from the settings, or the given factory."""
        from managed_agents._providers import as_provider

        return as_provider(self._model_client_factory, self.settings)

    def brain_activities(self) -> list[Callable[..., Any]]:
        from managed_agents._activities.bookkeeping import SessionBookkeepingActivities
        from managed_agents._activities.dream import DreamActivities
        from managed_agents._activities.model import ModelActivities
        from managed_agents._activities.outcome import GraderActivities
        from managed_agents._activities.webhooks import WebhookActivities
        from managed_agents._dreams.records import DreamRecords
        from managed_agents._webhooks.service import WebhookService

        model = ModelActivities(self.store, self.model_clients)
        grader = GraderActivities(self.store, self.model_clients)
        webhooks = WebhookActivities(WebhookService(self.store.engine))
        dreams = DreamActivities(self.store, self.memory, DreamRecords(self.store.engine), self.model_clients)
        bookkeeping = SessionBookkeepingActivities(webhooks, dreams)
        return [
            model.register_session,
            model.model_request,
            grader.grade,
            webhooks.enqueue,
            webhooks.fanout,
            webhooks.deliver,
            webhooks.give_up,
            dreams.prepare,
            dreams.extract,
            dreams.plan_consolidation,
            dreams.consolidate,
            dreams.finish,
            dreams.select_sessions,
            dreams.record_session,
            bookkeeping.bookkeeping,
        ]

    @functools.cached_property
    def sandbox(self) -> Any:
        from managed_agents._activities.sandbox import SandboxActivities

        return SandboxActivities(
            workspace_root=self.settings.resolved_workspace_root(),
            store=self.store,
            task_queue=self.agent_queue,
            sandbox_id=self.settings.sandbox_id,
            policy=self.settings.sandbox_policy(),
            runtimes=self.settings.runtimes,
            memory=self.memory,
        )

    def provision_activities(self) -> list[Callable[..., Any]]:
        """For the shared sandbox queue: any sandbox worker prepares a new session's workspace."""
        return [self.sandbox.provision]

    def tool_activities(self) -> list[Callable[..., Any]]:
        """For this sandbox worker's own queue: the tools of the sessions whose workspace it holds."""
        from managed_agents._activities.outcome import OutcomeSandboxActivities

        outcomes = OutcomeSandboxActivities(self.sandbox)
        return [*self.sandbox.tool_activities(), outcomes.read_rubric, outcomes.collect_deliverables]
