"""Engine overhead of one evaluate-and-revise iteration of an outcome, beyond its model calls.

One iteration = the agent's work (a model call asking for ``write``, the tool call, a model call
that summarises) + collecting the deliverables + the grader's model call + the revision request.
The mock model answers every call after a fixed latency, so:

    overhead per iteration = (wall time of N iterations - wall time of 1 iteration) / (N - 1)
                             - model calls per iteration x mock latency

It is compared, in the same run, against a plain asyncio loop that makes the same model calls and
runs the same tool with no Temporal (what durability costs on top of the bare work).

    python bench/outcome_iteration.py [--iterations 6] [--latency 0.05] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
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

from managed_agents._client import SessionClient
from managed_agents._devserver import temporal_cli_path
from managed_agents._grader import GRADE_TOOL, GRADE_TOOL_DEFINITION, GRADER_SYSTEM, grader_prompt
from managed_agents._sandbox.tools import run_tool
from managed_agents._settings import ManagedAgentsSettings
from managed_agents._store import SessionStore
from managed_agents._worker import build_workers, run_workers
from managed_agents.testing.mock_claude import MockClaude, Turn

MODEL_CALLS_PER_ITERATION = 3
console = Console()


def script(iterations: int) -> list[Turn]:
    turns: list[Turn] = []
    for i in range(iterations):
        turns.append(Turn.tool_use("write", {"file_path": "report.md", "content": f"draft {i}\n"}))
        turns.append(Turn.text(f"wrote draft {i}"))
        satisfied = i == iterations - 1
        turns.append(
            Turn.tool_use(
                GRADE_TOOL,
                {
                    "criteria": [{"criterion": "final draft", "passed": satisfied, "reason": "checked"}],
                    "verdict": "satisfied" if satisfied else "needs_revision",
                    "explanation": "done" if satisfied else "revise it",
                },
            )
        )
    return turns


async def engine_run(sessions: SessionClient, mock: MockClaude, iterations: int) -> float:
    m = f"[bench-{uuid.uuid4().hex[:8]}]"
    mock.script_for(m, *script(iterations))
    body = {
        "agent": {"name": "bench", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]},
        "initial_events": [
            {
                "type": "user.define_outcome",
                "description": f"{m} write report.md",
                "rubric": {"type": "text", "content": "report.md is final"},
                "max_iterations": iterations,
            }
        ],
    }
    started = time.perf_counter()
    handle = await sessions.create(body)
    result = await handle.result()
    elapsed = time.perf_counter() - started
    [evaluation] = result.outcome_evaluations
    assert evaluation["result"] == "satisfied" and evaluation["iteration"] == iterations - 1, evaluation
    return elapsed


async def plain_run(mock: MockClaude, iterations: int, workspace: Path) -> float:
    """The same calls with no durability: what the work itself costs."""
    m = f"[bench-{uuid.uuid4().hex[:8]}]"
    mock.script_for(m, *script(iterations))
    client = anthropic.AsyncAnthropic(api_key="bench", base_url=mock.base_url, max_retries=0)
    started = time.perf_counter()
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": f"{m} write report.md"}]}]
    for _ in range(iterations):
        for _step in range(2):
            reply = await client.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=messages)  # type: ignore[arg-type]
            content = [b.model_dump(mode="json", exclude_none=True) for b in reply.content]
            messages.append({"role": "assistant", "content": content})
            uses = [b for b in content if b["type"] == "tool_use"]
            if uses:
                outcome = await run_tool(workspace, uses[0]["name"], uses[0]["input"])
                messages.append(
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": uses[0]["id"], "content": outcome.content}],
                    }
                )
        prompt = grader_prompt("write report.md", "report.md is final", "wrote", [("report.md", "x")], 0)
        await client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=1024,
            system=GRADER_SYSTEM,
            tools=[GRADE_TOOL_DEFINITION],  # type: ignore[list-item]
            tool_choice={"type": "tool", "name": GRADE_TOOL},
            messages=[{"role": "user", "content": [{"type": "text", "text": f"{m} {prompt}"}]}],
        )
        messages.append({"role": "user", "content": [{"type": "text", "text": "revise"}]})
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-outcome-"))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli_path()),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    stop = asyncio.Event()
    try:
        with MockClaude(latency=args.latency) as mock:
            settings = ManagedAgentsSettings(task_queue="bench-outcomes", data_dir=tmp / "data", sandbox_id="bench")
            client = anthropic.AsyncAnthropic(api_key="bench", base_url=mock.base_url, max_retries=0)
            workers = build_workers(
                env.client,
                settings,
                client_factory=lambda _m: client,
                store=SessionStore(settings.resolved_store_url()),
            )
            task = asyncio.create_task(run_workers(workers, stop))
            sessions = SessionClient(env.client, settings.task_queue)
            workspace = tmp / "plain"
            workspace.mkdir()
            await engine_run(sessions, mock, 2)  # warm up
            engine_one, engine_n, plain_one, plain_n = [], [], [], []
            for r in range(args.repeats):
                console.print(f"[dim]repeat {r + 1}/{args.repeats} …[/]")
                engine_one.append(await engine_run(sessions, mock, 1))
                engine_n.append(await engine_run(sessions, mock, args.iterations))
                plain_one.append(await plain_run(mock, 1, workspace))
                plain_n.append(await plain_run(mock, args.iterations, workspace))
            stop.set()
            await task
    finally:
        await env.shutdown()
    n = args.iterations
    per_engine = (statistics.median(engine_n) - statistics.median(engine_one)) / (n - 1)
    per_plain = (statistics.median(plain_n) - statistics.median(plain_one)) / (n - 1)
    model_time = MODEL_CALLS_PER_ITERATION * args.latency
    figures = {
        "iterations": n,
        "mock_latency_s": args.latency,
        "engine_s_per_iteration": round(per_engine, 4),
        "plain_s_per_iteration": round(per_plain, 4),
        "model_calls_s_per_iteration": round(model_time, 4),
        "engine_overhead_s_per_iteration": round(per_engine - model_time, 4),
        "plain_overhead_s_per_iteration": round(per_plain - model_time, 4),
        "engine_vs_plain_ratio": round(per_engine / per_plain, 2),
    }
    table = Table(title=f"One evaluate-and-revise iteration (median of {args.repeats}, mock latency {args.latency}s)")
    for col in ("", "per iteration", "of which model calls", "overhead beyond model calls"):
        table.add_column(col)
    table.add_row(
        "engine (Temporal)",
        f"{per_engine * 1000:.0f} ms",
        f"{model_time * 1000:.0f} ms",
        f"{(per_engine - model_time) * 1000:.0f} ms",
    )
    table.add_row(
        "plain asyncio loop",
        f"{per_plain * 1000:.0f} ms",
        f"{model_time * 1000:.0f} ms",
        f"{(per_plain - model_time) * 1000:.0f} ms",
    )
    console.print(table)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    code = 1
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(main(parser.parse_args()))
    os._exit(code)
