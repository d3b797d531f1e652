"""Coordinator fan-out: 25 specialists whose mock model takes 1 s per call.

Each specialist makes two model calls (a ``write`` tool call, then its answer): about 2 s of model
time. The coordinator's own calls are instant, so what it adds on top of its slowest specialist is
the engine's orchestration cost. Measured in one run:

* the coordinator fanning out to 25 specialists in parallel (one ``create_agent`` call each, then
  ``wait_for_agents``);
* one specialist alone, as its own session (the single slowest specialist's wall time);

The mock model and the worker run in their own processes, as in production (Claude is remote);
* the same 25 specialists one after another (``max_concurrent_threads: 1``).

Target: the coordinator's wall time under 1.3x its slowest specialist's (measured in the same run, from
the specialist's own event log). Also printed: against one specialist run alone, which on a 2-core
machine also counts the 25 specialists competing for CPU with each other and the Temporal server.

    python bench/multiagent_fanout.py [--specialists 25] [--latency 1.0] [--skip-sequential]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from managed_agents._client import SessionClient
from managed_agents._devserver import free_port, temporal_cli_path
from managed_agents.testing.mock_claude import Fault, MockClaude, Turn

ROOT = Path(__file__).resolve().parents[1]

console = Console()
TARGET = 1.3


def specialist_agent() -> dict[str, Any]:
    return {"name": "specialist", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]}


def fanout_responder(latency: float) -> Any:
    """The mock model, reading each request like a model would: a coordinator (it has the
    create_agent tool) fans out, waits, then merges; a specialist writes a file, then answers."""

    def respond(body: dict[str, Any]) -> Turn | Fault:
        step = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        first = body["messages"][0]["content"][0]["text"]
        if any(t.get("name") == "create_agent" for t in body.get("tools", [])):
            if step == 0:
                n = int(first.split("fan out ")[1].split()[0])
                return Turn.tool_uses(
                    [("create_agent", {"agent": "specialist", "task": f"part {i}"}) for i in range(n)]
                )
            if step == 1:
                return Turn.tool_use("wait_for_agents", {})
            return Turn.text("all merged")
        if step == 0:
            name = f"part-{uuid.uuid4().hex[:8]}"
            return Fault.slow(latency, then=Turn.tool_use("write", {"file_path": f"{name}.txt", "content": "done"}))
        return Fault.slow(latency, then=Turn.text("finished"))

    return respond


def serve_mock(port: int, latency: float) -> None:
    """Run in a separate process: the model is remote in production, not competing for our CPU."""
    with MockClaude(default=fanout_responder(latency), port=port):
        while True:
            time.sleep(3600)


async def coordinator(sessions: SessionClient, n: int, concurrency: int) -> tuple[float, float]:
    body = {
        "agent": {
            "name": "lead",
            "model": "claude-sonnet-4-6",
            "multiagent": {"type": "coordinator", "agents": [specialist_agent()]},
        },
        "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": f"fan out {n} parts"}]}],
        "options": {"max_concurrent_threads": concurrency},
    }
    started = time.perf_counter()
    handle = await sessions.create(body)
    result = await handle.result()
    elapsed = time.perf_counter() - started
    assert result.final_message == "all merged" and len(result.threads) == n, result
    # The slowest specialist of this very run: from its first event to its idle, by its own log.
    slowest = 0.0
    for thread in result.threads:
        events = await handle.thread(thread["id"]).events()
        idle = [e for e in events if e.type == "session.status_idle"]
        slowest = max(slowest, (idle[-1].processed_at - events[0].processed_at).total_seconds())
    return elapsed, slowest


async def single(sessions: SessionClient) -> float:
    body = {
        "agent": specialist_agent(),
        "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "one part alone"}]}],
    }
    started = time.perf_counter()
    result = await (await sessions.create(body)).result()
    assert result.final_message == "finished", result
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli_path()),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    port = free_port(0)
    mock = subprocess.Popen(
        [sys.executable, "-c", f"from bench.multiagent_fanout import serve_mock; serve_mock({port}, {args.latency})"],
        cwd=ROOT,
    )
    worker_env = {
        **os.environ,
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "MANAGED_AGENTS_LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen(
        [sys.executable, "worker.py", "--task-queue", "bench-fanout", "--data-dir", str(tmp), "--sandbox-id", "bench"],
        cwd=ROOT,
        env=worker_env,
    )
    figures: dict[str, Any] = {"specialists": args.specialists, "latency_s": args.latency}
    try:
        sessions = SessionClient(env.client, "bench-fanout")
        console.print("[dim]warming up …[/]")
        await single(sessions)
        console.print("[dim]one specialist alone …[/]")
        figures["single_specialist_s"] = round(min([await single(sessions) for _ in range(3)]), 3)
        console.print(f"[dim]coordinator with {args.specialists} specialists in parallel …[/]")
        runs = sorted([await coordinator(sessions, args.specialists, 25) for _ in range(args.repeats)])
        median = runs[len(runs) // 2]
        figures["coordinator_parallel_s"] = round(median[0], 3)
        figures["slowest_specialist_in_run_s"] = round(median[1], 3)
        if not args.skip_sequential:
            console.print(f"[dim]the same {args.specialists} one after another …[/]")
            figures["coordinator_sequential_s"] = round((await coordinator(sessions, args.specialists, 1))[0], 3)
    finally:
        worker.terminate()
        mock.terminate()
        worker.wait()
        mock.wait()
        await env.shutdown()
    ratio = figures["coordinator_parallel_s"] / figures["slowest_specialist_in_run_s"]
    figures["coordinator_vs_slowest_specialist_ratio"] = round(ratio, 3)
    figures["parallel_vs_standalone_specialist_ratio"] = round(
        figures["coordinator_parallel_s"] / figures["single_specialist_s"], 3
    )
    table = Table(title=f"{args.specialists} specialists, mock model {args.latency:.1f} s per call, 2 calls each")
    table.add_column("run")
    table.add_column("wall time", justify="right")
    table.add_column("vs one specialist", justify="right")
    for key, label in [
        ("single_specialist_s", "one specialist alone"),
        ("slowest_specialist_in_run_s", "slowest specialist, within the fan-out"),
        ("coordinator_parallel_s", f"coordinator, {args.specialists} in parallel"),
        ("coordinator_sequential_s", f"coordinator, {args.specialists} one after another"),
    ]:
        if key in figures:
            table.add_row(label, f"{figures[key]:.2f} s", f"{figures[key] / figures['single_specialist_s']:.2f}x")
    console.print(table)
    ok = ratio < TARGET
    console.print(
        f"coordinator / its slowest specialist = {ratio:.2f}x (target < {TARGET}x): {'PASS' if ok else 'FAIL'}; "
        f"coordinator / one specialist alone = {figures['parallel_vs_standalone_specialist_ratio']:.2f}x "
        "(on 2 cores the 25 specialists also slow each other down)"
    )
    print(json.dumps(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specialists", type=int, default=25)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="coordinator runs; the median is reported")
    code = 1
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(main(parser.parse_args()))
    os._exit(code)
