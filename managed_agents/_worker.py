"""Build and run workers: the brain (workflows and model calls) and the hands (sandbox tools).

One process runs both roles by default; ``--role brain`` or ``--role sandbox`` splits them across
hosts. The brain needs the model API and the store; a sandbox needs its workspace root and the
store (it writes tool results there, so a tool's output crosses Temporal history only once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence

from temporalio.client import Client
from temporalio.worker import Interceptor, PollerBehaviorAutoscaling, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from managed_agents._activities.bookkeeping import SessionBookkeepingActivities
from managed_agents._activities.dream import DreamActivities
from managed_agents._activities.heartbeat import HeartbeatInterceptor
from managed_agents._activities.model import ModelActivities, ModelClientFactory
from managed_agents._activities.outcome import GraderActivities, OutcomeSandboxActivities
from managed_agents._activities.sandbox import SandboxActivities
from managed_agents._activities.webhooks import WebhookActivities
from managed_agents._client import connect
from managed_agents._dreams.records import DreamRecords
from managed_agents._logging import configure_logging, get_logger
from managed_agents._memory import MemoryService
from managed_agents._settings import ManagedAgentsSettings, sandbox_private_queue, sandbox_shared_queue
from managed_agents._store import SessionStore
from managed_agents._webhooks.service import WebhookService
from managed_agents._workflows.dream import DreamWorkflow, ScheduledDream
from managed_agents._workflows.session import AgentSession
from managed_agents._workflows.webhook_event import WebhookEvent

log = get_logger("managed_agents.worker")

WORKFLOWS: list[type] = [AgentSession, WebhookEvent, DreamWorkflow, ScheduledDream]


def workflow_runner() -> SandboxedWorkflowRunner:
    """Temporal's sandbox, with this project's own modules passed through.

    Without this the sandbox re-imports (and re-compiles) the workflow modules for every new
    workflow run: a fan-out to 25 threads spent a fifth of its CPU there. They hold no mutable
    module state, so sharing them across runs is safe; the sandbox still guards everything else.
    """
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("managed_agents"))


def build_workers(
    client: Client,
    settings: ManagedAgentsSettings,
    *,
    client_factory: ModelClientFactory | None = None,
    store: SessionStore | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> list[Worker]:
    """The workers for ``settings.role``. ``interceptors`` run inside the heartbeat interceptor
    that every worker carries (so an activity they slow down still heartbeats)."""
    store = store or SessionStore(settings.resolved_store_url())
    workers: list[Worker] = []
    chain = [HeartbeatInterceptor(), *interceptors]
    limit = settings.max_concurrent_activities
    # Many sessions (and a coordinator's threads) run at once: let pollers scale with the backlog
    # instead of the SDK's fixed five.
    polling = {
        "workflow_task_poller_behavior": PollerBehaviorAutoscaling(),
        "activity_task_poller_behavior": PollerBehaviorAutoscaling(),
    }
    if settings.role in ("all", "brain"):
        model = ModelActivities(store, client_factory)
        grader = GraderActivities(store, client_factory)
        webhooks = WebhookActivities(WebhookService(store.engine))
        dreams = DreamActivities(store, MemoryService(store.engine), DreamRecords(store.engine), client_factory)
        bookkeeping = SessionBookkeepingActivities(webhooks, dreams)
        workers.append(
            Worker(
                client,
                task_queue=settings.task_queue,
                workflows=WORKFLOWS,
                workflow_runner=workflow_runner(),
                activities=[
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
                ],
                max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
                max_concurrent_activities=limit,
                interceptors=chain,
                **polling,  # type: ignore[arg-type]
            )
        )
    if settings.role in ("all", "sandbox"):
        sandbox = SandboxActivities(
            workspace_root=settings.resolved_workspace_root(),
            store=store,
            task_queue=settings.task_queue,
            sandbox_id=settings.sandbox_id,
            policy=settings.sandbox_policy(),
            runtimes=settings.runtimes,
            # Memory stores live in the session store's database (resolved_store_url): one service
            # (and connection pool) per worker, on the store's engine.
            memory=MemoryService(store.engine),
        )
        outcomes = OutcomeSandboxActivities(sandbox)
        workers.append(
            Worker(
                client,
                task_queue=sandbox_shared_queue(settings.task_queue),
                activities=[sandbox.provision],
                max_concurrent_activities=limit,
                interceptors=chain,
            )
        )
        workers.append(
            Worker(
                client,
                task_queue=sandbox_private_queue(settings.task_queue, settings.sandbox_id),
                activities=[*sandbox.tool_activities(), outcomes.read_rubric, outcomes.collect_deliverables],
                max_concurrent_activities=limit,
                interceptors=chain,
                activity_task_poller_behavior=PollerBehaviorAutoscaling(),
            )
        )
    return workers


def report_isolation(settings: ManagedAgentsSettings) -> bool:
    """Say, loudly if need be, how this worker will run the agents' bash commands."""
    from managed_agents._sandbox.isolation import bash_mode, isolation_available, process_limit_mechanism

    policy = settings.sandbox_policy()
    ok, why = isolation_available()
    mode, detail = bash_mode(policy)
    if mode == "isolated":
        log.info("bash isolation: bubblewrap", process_limit=process_limit_mechanism(policy)[1])
    elif mode == "unsandboxed":
        log.warning(
            "BASH RUNS UNSANDBOXED: agents' commands can read this host's files and reach its network", why=detail
        )
    else:
        log.error("bash is disabled on this worker: no isolation layer", why=detail or why)
    return ok


async def run_workers(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        await stop.wait()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="worker.py",
        description="Run a managed-agents worker against any Temporal server. Temporal connection settings come "
        "from TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TEMPORAL_API_KEY (or a temporal.toml profile); the model API "
        "from ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL; everything else from MANAGED_AGENTS_* or these flags.",
    )
    parser.add_argument("--address", help="Temporal frontend host:port (default: $TEMPORAL_ADDRESS or localhost:7233)")
    parser.add_argument("--namespace", help="Temporal namespace (default: $TEMPORAL_NAMESPACE or default)")
    parser.add_argument("--task-queue", help="workflow task queue (default: managed-agents)")
    parser.add_argument("--role", choices=["all", "brain", "sandbox"], help="which part to run (default: all)")
    parser.add_argument("--data-dir", help="where the SQLite store and workspaces live (default: ./.managed-agents)")
    parser.add_argument(
        "--store-url", help="SQLAlchemy URL of the session log store (sqlite:/// or postgresql+psycopg://)"
    )
    parser.add_argument("--workspace-root", help="directory holding session workspaces")
    parser.add_argument("--sandbox-id", help="stable id of this sandbox worker (default: hostname)")
    parser.add_argument(
        "--isolation", choices=["bubblewrap", "none"], help="how bash is isolated (default: bubblewrap)"
    )
    parser.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        default=None,
        help="run bash without isolation when bubblewrap is unavailable (default: refuse bash)",
    )
    parser.add_argument("--runtime-root", help="read-only root the commands see (default: a minimal view of /)")
    parser.add_argument("--log-format", choices=["auto", "json", "console"])
    parser.add_argument("--log-level")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> ManagedAgentsSettings:
    overrides = {
        key: value
        for key, value in {
            "task_queue": args.task_queue,
            "role": args.role,
            "data_dir": args.data_dir,
            "store_url": args.store_url,
            "workspace_root": args.workspace_root,
            "sandbox_id": args.sandbox_id,
            "log_format": args.log_format,
            "sandbox_isolation": args.isolation,
            "allow_unsandboxed": args.allow_unsandboxed,
            "runtime_root": args.runtime_root,
            "log_level": args.log_level,
        }.items()
        if value is not None
    }
    return ManagedAgentsSettings(**overrides)


async def amain(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from_args(args)
    configure_logging(settings.log_format, settings.log_level)
    if (
        settings.role != "sandbox"
        and not os.environ.get("ANTHROPIC_API_KEY")
        and not os.environ.get("ANTHROPIC_AUTH_TOKEN")
    ):
        log.warning("ANTHROPIC_API_KEY is not set: model requests will fail unless ANTHROPIC_BASE_URL points at a mock")
    if settings.role != "brain":
        report_isolation(settings)
    client = await connect(args.address, args.namespace)
    workers = build_workers(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker started",
        role=settings.role,
        task_queue=settings.task_queue,
        sandbox_id=settings.sandbox_id,
        temporal=client.service_client.config.target_host,
        namespace=client.namespace,
    )
    await run_workers(workers, stop)
    log.info("worker stopped")


def main(argv: Sequence[str] | None = None) -> None:
    try:
        asyncio.run(amain(argv))
    except KeyboardInterrupt:
        pass
    # Temporal's Rust bridge threads can abort the interpreter at exit (sdk-python#300): leave hard
    # once the workers have shut down cleanly.
    os._exit(0)
