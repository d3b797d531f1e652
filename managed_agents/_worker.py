"""``python worker.py``: ``ManagedAgentsPlugin`` on a worker of its own, configured by flags and
the environment.

One process takes both roles by default; ``--role brain`` or ``--role sandbox`` splits them across
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

from managed_agents._activities.model import ModelClientFactory
from managed_agents._client import connect
from managed_agents._contract import sandbox_shared_queue
from managed_agents._logging import configure_logging, get_logger
from managed_agents._plugin import ManagedAgentsPlugin
from managed_agents._providers import ModelProviderError, as_provider
from managed_agents._resources import WorkerResources
from managed_agents._settings import ManagedAgentsSettings
from managed_agents._store import SessionStore

log = get_logger("managed_agents.worker")


def build_workers(
    client: Client,
    settings: ManagedAgentsSettings,
    *,
    client_factory: ModelClientFactory | None = None,
    store: SessionStore | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> list[Worker]:
    """``python worker.py``'s worker: the plugin on a worker of its own, tuned by the settings.

    With the brain role it polls ``settings.task_queue``; sandbox-only, the sessions' shared
    sandbox queue. The plugin runs the sandbox task queues beside it. ``interceptors`` run
    inside the heartbeat interceptor (so an activity they slow down still heartbeats).
    """
    plugin = ManagedAgentsPlugin(settings, model_client_factory=client_factory, interceptors=interceptors)
    if store is not None:  # shared with the caller (the testing harness reads it)
        plugin._resources[settings.task_queue] = WorkerResources(
            settings, settings.task_queue, client_factory, store=store
        )
    brain = "brain" in settings.roles
    return [
        Worker(
            client,
            task_queue=settings.task_queue if brain else sandbox_shared_queue(settings.task_queue),
            plugins=[plugin],
            max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
            max_concurrent_activities=settings.max_concurrent_activities,
            # Many sessions (and a coordinator's threads) run at once: let pollers scale with the
            # backlog instead of the SDK's fixed five.
            workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
            activity_task_poller_behavior=PollerBehaviorAutoscaling(),
        )
    ]


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
    provider = None
    if "brain" in settings.roles:
        try:  # before connecting: a provider missing its configuration stops here, saying what is missing
            provider = as_provider(None, settings)
        except ModelProviderError as err:
            log.error("the model provider is not configured", provider=settings.model_provider, error=str(err))
            raise SystemExit(2) from None
    if (
        "brain" in settings.roles
        and settings.model_provider == "anthropic"
        and not os.environ.get("ANTHROPIC_API_KEY")
        and not os.environ.get("ANTHROPIC_AUTH_TOKEN")
    ):
        log.warning("ANTHROPIC_API_KEY is not set: model requests will fail unless ANTHROPIC_BASE_URL points at a mock")
    if "sandbox" in settings.roles:
        report_isolation(settings)
    client = await connect(args.address, args.namespace)
    workers = build_workers(client, settings, client_factory=provider)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker started",
        roles=sorted(settings.roles),
        task_queue=settings.task_queue,
        sandbox_id=settings.sandbox_id,
        temporal=client.service_client.config.target_host,
        namespace=client.namespace,
    )
    await run_workers(workers, stop)
    log.info("worker stopped")


def main(argv: Sequence[str] | None = None) -> None:
    code = 0
    try:
        asyncio.run(amain(argv))
    except KeyboardInterrupt:
        pass
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    # Temporal's Rust bridge threads can abort the interpreter at exit (sdk-python#300): leave hard
    # once the workers have shut down cleanly.
    os._exit(code)
