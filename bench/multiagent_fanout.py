"""Coordinator fan-out: 25 specialists whose mock model takes 1 s per call.

Each specialist makes two model calls (a ``write`` tool call, then its answer): about 2 s of model
time. The coordinator's own calls are instant, so what it adds on top of its slowest specialist is
the engine's orchestration cost. Measured in one run:

* the coordinator fanning out to 25 specialists in parallel (one ``create_agent`` call each, then
  ``wait_for_agents``);
* one specialist alone, as its own session (the single slowest specialist's wall time);
* the same 25 specialists one after another (``max_concurrent_threads: 1``).

Target: coordinator / single specialist under 1.3x.

    python bench/multiagent_fanout.py [--specialists 25] [--latency 1.0] [--skip-sequential]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anthropic
from rich.console import Console
from rich.table import Table
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from managed_agents.client import SessionClient
from managed_agents.config import WorkerSettings
from managed_agents.devserver import temporal_cli_path
from managed_agents.store import SessionStore
from managed_agents.testing.mock_claude import Fault, MockClaude, Turn
from managed_agents.worker import build_workers, run_workers

console = Console()
TARGET = 1.3


def specialist_agent() -> dict[str, Any]:
    return {"name": "specialist", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]}


def script_specialist(mock: MockClaude, task: str, latency: float) -> None:
    name = task.split()[0].strip("[]")
    mock.script_for(
        task,
        Fault.slow(latency, then=Turn.tool_use("write", {"file_path": f"{name}.txt", "content": "done"})),
        Fault.slow(latency, then=Turn.text(f"{name} finished")),
    )


async def coordinator(sessions: SessionClient, mock: MockClaude, n: int, latency: float, concurrency: int) -> float:
    m = f"[coord-{uuid.uuid4().hex[:8]}]"
    tasks = [f"[spec-{uuid.uuid4().hex[:8]}] part {i}" for i in range(n)]
    for task in tasks:
        script_specialist(mock, task, latency)
    mock.script_for(
        m,
        Turn.tool_uses([("create_agent", {"agent": "specialist", "task": t}) for t in tasks]),
        Turn.tool_use("wait_for_agents", {}),
        Turn.text("all merged"),
    )
    body = {
        "agent": {
            "name": "lead",
            "model": "claude-sonnet-4-6",
            "multiagent": {"type": "coordinator", "agents": [specialist_agent()]},
        },
        "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": f"{m} fan out"}]}],
        "options": {"max_concurrent_threads": concurrency},
    }
    started = time.perf_counter()
    handle = await sessions.create(body)
    result = await handle.result()
    elapsed = time.perf_counter() - started
    assert result.final_message == "all merged" and len(result.threads) == n, result
    return elapsed


async def single(sessions: SessionClient, mock: MockClaude, latency: float) -> float:
    task = f"[spec-{uuid.uuid4().hex[:8]}] alone"
    script_specialist(mock, task, latency)
    body = {
        "agent": specialist_agent(),
        "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": task}]}],
    }
    started = time.perf_counter()
    result = await (await sessions.create(body)).result()
    assert result.final_message and result.final_message.endswith("finished"), result
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli_path()),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    stop = asyncio.Event()
    figures: dict[str, Any] = {"specialists": args.specialists, "latency_s": args.latency}
    try:
        with MockClaude() as mock:
            settings = WorkerSettings(task_queue="bench-fanout", data_dir=tmp / "data", sandbox_id="bench")
            client = anthropic.AsyncAnthropic(api_key="bench", base_url=mock.base_url, max_retries=0)
            workers = build_workers(
                env.client,
                settings,
                client_factory=lambda _m: client,
                store=SessionStore(settings.resolved_store_url()),
            )
            task = asyncio.create_task(run_workers(workers, stop))
            sessions = SessionClient(env.client, settings.task_queue)
            console.print("[dim]warming up …[/]")
            await single(sessions, mock, 0.0)
            console.print("[dim]one specialist alone …[/]")
            figures["single_specialist_s"] = round(
                min([await single(sessions, mock, args.latency) for _ in range(2)]), 3
            )
            console.print(f"[dim]coordinator with {args.specialists} specialists in parallel …[/]")
            figures["coordinator_parallel_s"] = round(
                await coordinator(sessions, mock, args.specialists, args.latency, 25), 3
            )
            if not args.skip_sequential:
                console.print(f"[dim]the same {args.specialists} one after another …[/]")
                figures["coordinator_sequential_s"] = round(
                    await coordinator(sessions, mock, args.specialists, args.latency, 1), 3
                )
            stop.set()
            await task
    finally:
        await env.shutdown()
    ratio = figures["coordinator_parallel_s"] / figures["single_specialist_s"]
    figures["parallel_vs_single_ratio"] = round(ratio, 3)
    table = Table(title=f"{args.specialists} specialists, mock model {args.latency:.1f} s per call, 2 calls each")
    table.add_column("run")
    table.add_column("wall time", justify="right")
    table.add_column("vs one specialist", justify="right")
    for key, label in [
        ("single_specialist_s", "one specialist alone"),
        ("coordinator_parallel_s", f"coordinator, {args.specialists} in parallel"),
        ("coordinator_sequential_s", f"coordinator, {args.specialists} one after another"),
    ]:
        if key in figures:
            table.add_row(label, f"{figures[key]:.2f} s", f"{figures[key] / figures['single_specialist_s']:.2f}x")
    console.print(table)
    ok = ratio < TARGET
    console.print(f"parallel / single = {ratio:.2f}x (target < {TARGET}x): {'PASS' if ok else 'FAIL'}")
    print(json.dumps(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specialists", type=int, default=25)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--skip-sequential", action="store_true")
    code = 1
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(main(parser.parse_args()))
    os._exit(code)
