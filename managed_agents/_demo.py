"""The main job on a fresh machine: an embedded Temporal dev server (SQLite), a worker, and one
example session end to end, followed live in the terminal.

It uses the same data directory as every other command (``ManagedAgentsSettings.data_dir``:
``$MANAGED_AGENTS_DATA_DIR`` or ``./.managed-agents``), so a memory store or webhook endpoint
created with the CLI is there for the demo's worker, and the demo's sessions are there for
``managed-agents dream``. SIGTERM, SIGHUP and Ctrl-C stop the server and worker it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import anthropic
from rich.console import Console

from managed_agents._client import SessionClient, connect, new_session_id
from managed_agents._devserver import DevServer, free_port
from managed_agents._logging import configure_logging
from managed_agents._render import render_event, session_table
from managed_agents._settings import ManagedAgentsSettings
from managed_agents._worker import build_workers, run_workers
from managed_agents.testing.demo_model import DEMO_TASK, demo_responder
from managed_agents.testing.mock_claude import MockClaude

DEFAULT_MODEL = "claude-sonnet-4-6"


async def run_demo(
    console: Console,
    *,
    data_dir: Path,
    task: str = DEMO_TASK,
    model: str = DEFAULT_MODEL,
    port: int = 7233,
    ui_port: int = 8233,
    keep_running: bool = False,
) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    # SIGTERM / SIGHUP cancel the demo like Ctrl-C does, so the finally below stops the dev server
    # (its own process group, so it would otherwise outlive us).
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, main.cancel)
    # The terminal shows the session's events; the worker's structured logs go to a file.
    configure_logging("json", "INFO", log_file=data_dir / "worker.log")
    use_claude = bool(os.environ.get("ANTHROPIC_API_KEY"))
    mock: MockClaude | None = None
    if use_claude:
        console.print(f"[bold]Model:[/] Claude ({model}) through the Anthropic API (ANTHROPIC_API_KEY is set)")
        model_client = anthropic.AsyncAnthropic(max_retries=0)
    else:
        mock = MockClaude(default=demo_responder).start()
        console.print(
            "[bold yellow]No ANTHROPIC_API_KEY set: using the bundled mock model[/] "
            f"(a scripted stand-in for Claude at {mock.base_url}); set ANTHROPIC_API_KEY to use Claude."
        )
        model_client = anthropic.AsyncAnthropic(api_key="mock-key", base_url=mock.base_url, max_retries=0)

    server = DevServer(data_dir / "temporal.db", port=free_port(port), ui_port=free_port(ui_port))
    console.print(f"[bold]Temporal:[/] starting the dev server ({server.address}, SQLite at {server.db_file}) …")
    server.start(data_dir / "temporal-server.log")
    stop = asyncio.Event()
    worker_task: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(server.wait_ready)
        console.print(f"[bold]Temporal UI:[/] {server.ui_url}")
        client = await connect(server.address, server.namespace)
        settings = ManagedAgentsSettings(data_dir=data_dir)
        from managed_agents._sandbox.isolation import isolation_available

        isolated, why = isolation_available()
        if isolated:
            console.print("[bold]Sandbox:[/] bash runs isolated with bubblewrap (no network, read-only runtime)")
        else:
            settings = ManagedAgentsSettings(data_dir=data_dir, allow_unsandboxed=True)
            console.print(
                f"[bold red]Sandbox: {why}: the demo runs bash UNSANDBOXED.[/] "
                "Install bubblewrap (apt-get install bubblewrap) to isolate it."
            )
        workers = build_workers(client, settings, client_factory=lambda _m: model_client)
        worker_task = asyncio.create_task(run_workers(workers, stop))
        console.print(
            f"[bold]Worker:[/] running (task queue {settings.task_queue}, workspaces in {data_dir / 'workspaces'})"
        )

        sessions = SessionClient(client, settings.task_queue)
        session_id = new_session_id()
        body = {
            "agent": {
                "name": "demo-engineer",
                "model": model,
                "system": "You are a careful software engineer. Use the tools to do the work, then report briefly.",
                "tools": [{"type": "agent_toolset_20260401"}],
            },
            "title": "managed-agents demo",
            "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": task}]}],
        }
        handle = await sessions.create(body, session_id=session_id)
        console.print(f"[bold]Session:[/] {session_id} (workflow AgentSession) — following its events:\n")
        async for event in handle.stream():
            render_event(console, event, session_id)
        result = await handle.result()
        console.print()
        console.print(session_table(result, server.ui_url if keep_running else None))
        workspace = data_dir / "workspaces" / session_id
        console.print(f"Files the agent wrote: {workspace}\nWorker logs (JSON): {data_dir / 'worker.log'}")
        if not keep_running:
            console.print(
                "The dev server stops now. `managed-agents demo --keep-running` keeps it, the worker and the "
                "Temporal UI up, to send more messages, run a dream over this session, or browse its history."
            )
        if keep_running:
            console.print(
                f"\nKeeping the server and worker up: TEMPORAL_ADDRESS={server.address}, Temporal UI at "
                f"{server.ui_url}/namespaces/default/workflows/{session_id}. Ctrl-C (or SIGTERM) to stop.",
                soft_wrap=True,
            )
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
        return 0 if result.stop_reason and result.stop_reason.type == "end_turn" else 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        stop.set()
        if worker_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker_task, 15)
        server.stop()
        if mock is not None:
            mock.stop()
