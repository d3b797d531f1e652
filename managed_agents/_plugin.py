"""``ManagedAgentsPlugin``: Managed Agents' workflows and activities on any Temporal worker.

One plugin object (``temporalio.plugin.SimplePlugin``) for the client, the worker and the
replayer. On a client it installs the pydantic data converter. On a worker it registers, for the
roles in its settings:

* **brain**: the workflows (``AgentSession``, ``Dream``, ``ScheduledDream``, ``WebhookEvent``)
  and the activities that call the model and the store, on the worker's own task queue;
* **sandbox**: the agents' tools, which run where the session workspaces live. A session's
  workspace is prepared on ``<queue>-sandbox`` (any sandbox worker) and its tool calls go to
  ``<queue>-sandbox-<sandbox id>`` (the worker that holds it), so the plugin runs those two
  task queues beside the worker, as workers of their own, for as long as the worker runs.

plus the heartbeat interceptor every activity relies on, the workflow sandbox's passthrough
modules, and this plugin's error types as workflow failures. Worker-side resources (the store,
the model client, the sandbox) are built from the settings when a worker is configured, never
on a client, and credentials never leave the worker.

Register it once, on the client (every worker built from that client gets it) or on a worker.
Registered on both, the worker's takes over that worker, so a client can carry the converter
with default settings and a worker its own roles and store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import temporalio.activity
import temporalio.converter
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.plugin import SimplePlugin
from temporalio.worker import (
    Interceptor,
    PollerBehaviorAutoscaling,
    ReplayerConfig,
    Worker,
    WorkerConfig,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from managed_agents._activities.heartbeat import HeartbeatInterceptor
from managed_agents._contract import sandbox_private_queue, sandbox_shared_queue
from managed_agents._errors import WORKFLOW_FAILURES
from managed_agents._settings import ManagedAgentsSettings
from managed_agents._workflows.dream import DreamWorkflow, ScheduledDream
from managed_agents._workflows.session import AgentSession
from managed_agents._workflows.webhook_event import WebhookEvent

PLUGIN_NAME = "managed_agents.ManagedAgentsPlugin"
#: What the plugin registers on a brain worker (and a replayer).
WORKFLOWS: list[type] = [AgentSession, WebhookEvent, DreamWorkflow, ScheduledDream]
#: Every activity this plugin registers is named ``managed_agents.<...>``: that is how a second
#: ManagedAgentsPlugin on the same worker finds (and replaces) the first one's registrations.
ACTIVITY_PREFIX = "managed_agents."

#: Modules the workflow sandbox shares across workflow runs instead of re-importing them for each:
#: the third-party packages workflow code uses, and this package's pure type modules (pydantic
#: models, names and errors: no I/O, no mutable module state).
TYPE_PASSTHROUGH_MODULES = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_extensions",
    "managed_agents._contract",
    "managed_agents._errors",
    "managed_agents._models",
    "managed_agents._dreams.models",
    "managed_agents._webhooks.models",
)
#: ... and, unless ``strict_workflow_sandbox``, the workflow code and the pure helpers it calls
#: (tests/test_workflow_purity.py proves none of them imports an I/O module). Re-imported into the
#: sandbox for every run, they cost ~18 ms of CPU per new workflow run and their sandboxed calls
#: ~3 ms per step (bench/session_steps.py). The strict mode re-imports them, so the sandbox also
#: checks what they call at run time; the test suite runs sessions that way.
PASSTHROUGH_MODULES = (
    *TYPE_PASSTHROUGH_MODULES,
    "managed_agents._workflows",
    "managed_agents._prompt",
    "managed_agents._grader",
    "managed_agents._coordination",
    "managed_agents._content_hash",
    "managed_agents._pricing",
)

# The SDK warns when one plugin type is on a client and a worker built from it ("it may run
# twice"). This one does not: the worker's instance takes over (see configure_worker).
warnings.filterwarnings("ignore", message=r"The same plugin type .*ManagedAgentsPlugin.* is present")

ModelClientFactory = Callable[[str], Any]


class ManagedAgentsPlugin(SimplePlugin):
    """Managed Agents' mechanics on a Temporal client and worker.

    Args:
        settings: What this worker does and where its data lives. ``None`` reads the same
            environment as ``python worker.py`` (``MANAGED_AGENTS_*``; ``ANTHROPIC_*`` and
            ``TEMPORAL_*`` are read by their own SDKs).
        model_client_factory: Builds the model client for a model name, on the worker. ``None``
            builds Anthropic's client from the environment (the testing kit passes the mock).
        interceptors: Extra worker interceptors for this plugin's workers, inside the heartbeat
            interceptor (so an activity they slow down still heartbeats).
    """

    def __init__(
        self,
        settings: ManagedAgentsSettings | None = None,
        *,
        model_client_factory: ModelClientFactory | None = None,
        interceptors: Sequence[Interceptor] = (),
    ) -> None:
        self.settings = settings if settings is not None else ManagedAgentsSettings()
        self._model_client_factory = model_client_factory
        self._heartbeats = HeartbeatInterceptor()
        self._interceptors = [self._heartbeats, *interceptors]
        #: agent task queue -> _resources.WorkerResources, built when a worker needs them
        self._resources: dict[str, Any] = {}
        super().__init__(
            PLUGIN_NAME,
            data_converter=_with_pydantic_payloads,
            workflow_runner=self._with_passthrough,
            workflow_failure_exception_types=list(WORKFLOW_FAILURES),
        )

    # --- worker ------------------------------------------------------------------------------------

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        if any(isinstance(p, ManagedAgentsPlugin) and p is not self for p in config.get("plugins") or []):
            return config  # this is the client's instance, and the worker has its own: that one configures it
        config = super().configure_worker(config)
        queue = config.get("task_queue")
        if not queue:
            raise ValueError("ManagedAgentsPlugin: the worker has no task_queue")
        agent_queue, sandbox_only = self._agent_queue(queue)
        # A ManagedAgentsPlugin that configured this worker before (the client's) gives way.
        activities = [a for a in config.get("activities") or [] if not _is_ours(a)]
        workflows = [w for w in config.get("workflows") or [] if w not in WORKFLOWS]
        interceptors = [i for i in config.get("interceptors") or [] if not isinstance(i, HeartbeatInterceptor)]
        resources = self._worker_resources(agent_queue)
        if sandbox_only:
            activities += resources.provision_activities()
        elif "brain" in self.settings.roles:
            # The model client is built now: a provider missing its region, project or credentials
            # stops the worker at start, naming the variable, not at its first model request.
            resources.model_clients  # noqa: B018
            workflows += WORKFLOWS
            activities += resources.brain_activities()
        config["activities"] = activities
        config["workflows"] = workflows
        config["interceptors"] = [*self._interceptors, *interceptors]
        return config

    async def run_worker(self, worker: Worker, next: Callable[[Worker], Awaitable[None]]) -> None:
        if self._heartbeats not in (worker.config(active_config=True).get("interceptors") or []):
            await next(worker)  # another ManagedAgentsPlugin took this worker over
            return
        queue = worker.task_queue
        agent_queue, sandbox_only = self._agent_queue(queue)
        async with contextlib.AsyncExitStack() as stack:
            for extra in self._sandbox_workers(worker.client, agent_queue, include_shared=not sandbox_only):
                await stack.enter_async_context(extra)
            await next(worker)

    def _agent_queue(self, queue: str) -> tuple[str, bool]:
        """The task queue sessions run on, and whether this worker is a sandbox-only worker
        polling that queue's shared sandbox queue (``python worker.py --role sandbox``)."""
        if "brain" in self.settings.roles:
            return queue, False
        if queue.endswith("-sandbox"):
            return queue.removesuffix("-sandbox"), True
        raise ValueError(
            f"ManagedAgentsPlugin with roles={{'sandbox'}} on task queue {queue!r}: a sandbox-only worker polls "
            f"the sessions' sandbox queue, {sandbox_shared_queue(queue)!r} for sessions on {queue!r} "
            "(Worker(task_queue=sandbox_task_queue(queue), ...)); or give it the brain role too"
        )

    def _sandbox_workers(self, client: Client, agent_queue: str, *, include_shared: bool) -> list[Worker]:
        if "sandbox" not in self.settings.roles:
            return []
        resources = self._worker_resources(agent_queue)
        # A client without plugins: the sandbox workers are this plugin's own, and a plugin on the
        # client must not configure them again (the data converter is carried over as it is).
        config = client.config(active_config=True)
        config["plugins"] = []
        own = Client(**config)
        limit = self.settings.max_concurrent_activities
        workers = []
        if include_shared:
            workers.append(
                Worker(
                    own,
                    task_queue=sandbox_shared_queue(agent_queue),
                    activities=resources.provision_activities(),
                    interceptors=self._interceptors,
                    max_concurrent_activities=limit,
                )
            )
        workers.append(
            Worker(
                own,
                task_queue=sandbox_private_queue(agent_queue, self.settings.sandbox_id),
                activities=resources.tool_activities(),
                interceptors=self._interceptors,
                max_concurrent_activities=limit,
                activity_task_poller_behavior=PollerBehaviorAutoscaling(),
            )
        )
        return workers

    def _worker_resources(self, agent_queue: str) -> Any:
        """One set per task queue of sessions (the sandbox routes tool calls by it), sharing one store:
        a client with the plugin may build workers on several queues."""
        from managed_agents._resources import WorkerResources

        if agent_queue not in self._resources:
            first = next(iter(self._resources.values()), None)
            self._resources[agent_queue] = WorkerResources(
                self.settings,
                agent_queue,
                self._model_client_factory,
                store=first.store if first else None,
            )
        return self._resources[agent_queue]

    def _with_passthrough(self, existing: WorkflowRunner | None) -> WorkflowRunner:
        if existing is None:
            existing = SandboxedWorkflowRunner()
        if not isinstance(existing, SandboxedWorkflowRunner):
            return existing  # an unsandboxed runner needs no passthrough
        modules = TYPE_PASSTHROUGH_MODULES if self.settings.strict_workflow_sandbox else PASSTHROUGH_MODULES
        return dataclasses.replace(existing, restrictions=existing.restrictions.with_passthrough_modules(*modules))

    # --- replayer ----------------------------------------------------------------------------------

    def configure_replayer(self, config: ReplayerConfig) -> ReplayerConfig:
        config = super().configure_replayer(config)
        workflows = [w for w in config.get("workflows") or [] if w not in WORKFLOWS]
        config["workflows"] = [*workflows, *WORKFLOWS]
        return config


def _is_ours(fn: Callable[..., Any]) -> bool:
    defn = temporalio.activity._Definition.from_callable(fn)
    return defn is not None and bool(defn.name) and str(defn.name).startswith(ACTIVITY_PREFIX)


def _with_pydantic_payloads(
    existing: temporalio.converter.DataConverter | None,
) -> temporalio.converter.DataConverter:
    """Pydantic payloads, keeping the rest of the user's converter (codec, failure converter)."""
    if existing is None:
        return pydantic_data_converter
    payloads = existing.payload_converter_class
    if issubclass(payloads, PydanticPayloadConverter):
        return existing
    if payloads is temporalio.converter.DefaultPayloadConverter:
        return dataclasses.replace(existing, payload_converter_class=PydanticPayloadConverter)
    raise TypeError(
        f"ManagedAgentsPlugin needs pydantic payloads (temporalio.contrib.pydantic), but the client's data "
        f"converter uses {payloads.__module__}.{payloads.__qualname__}: build it on PydanticPayloadConverter"
    )
