"""Dream wall time, model calls and peak worker memory over 10 and 100 sessions.

The mock model (``managed_agents.testing.dreamer``) answers every request after a fixed latency.
Each session is a stored transcript of about ``--session-kb`` kB, so it is read in several parts.
The worker runs as its own process (``python worker.py``), so its memory is its own.

Compared in the same run against:

* the **model-call floor**: the time the same requests take when made back to back with the
  pipeline's parallelism and no engine: ceil(sessions / parallel) x parts per session x latency
  + consolidation batches x latency. ``wall / floor`` is what durability and bookkeeping add;
* the worker's **idle memory**: its peak RSS (VmHWM) before any dream. ``peak / idle`` is what a
  dream costs in memory.

    python bench/dream_pipeline.py [--sessions 10,100] [--latency 0.05] [--session-kb 24]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from managed_agents._devserver import DEV_SERVER_TUNING, temporal_cli_path  # noqa: E402
from managed_agents._dreams.client import start_dream  # noqa: E402
from managed_agents._dreams.records import DreamRecords  # noqa: E402
from managed_agents._memory.models import user_actor  # noqa: E402
from managed_agents._memory.service import MemoryService  # noqa: E402
from managed_agents._settings import ManagedAgentsSettings  # noqa: E402
from managed_agents._store import SessionStore  # noqa: E402
from managed_agents.testing.dreamer import dreamer_responder  # noqa: E402
from managed_agents.testing.mock_claude import MockClaude  # noqa: E402

console = Console(width=160)
PARALLEL = 8
CHUNK_CHARS = 8_000
BATCH_CHARS = 4_000


def peak_rss_kb(pid: int) -> int:
    """VmHWM: the process's peak resident set size so far (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc (Linux only)")


def seed(store: SessionStore, records: DreamRecords, store_id: str, prefix: str, n: int, kb: int) -> list[str]:
    ids = [f"sesn_{prefix}_{i:03d}" for i in range(n)]
    start = datetime.now(UTC) - timedelta(days=1)
    for i, sid in enumerate(ids):
        lines = [f"remember: topic{i % 13} = value{i}", f"remember: session{i} = seen"]
        while sum(len(x) for x in lines) < kb * 1024:
            lines.append(f"working on step {len(lines)}: " + "lorem ipsum dolor sit amet " * 12)
        messages = [
            {"role": "user" if k % 2 == 0 else "assistant", "content": [{"type": "text", "text": line}]}
            for k, line in enumerate(lines)
        ]
        store.write_messages(sid, 0, messages, step=0, attempt=1)
        records.record_session(sid, [store_id], start + timedelta(seconds=i))
    return ids


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="10,100")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--session-kb", type=int, default=24)
    args = parser.parse_args()
    sizes = [int(x) for x in args.sessions.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="dream-bench-"))
    settings = ManagedAgentsSettings(task_queue="dream-bench", data_dir=tmp / "data", sandbox_id="bench")
    settings.data_dir.mkdir(parents=True)
    store = SessionStore(settings.resolved_store_url())
    records = DreamRecords(store.engine)
    memory = MemoryService(store.engine)
    mock = MockClaude(default=dreamer_responder, latency=args.latency).start()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli_path()),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        dev_server_extra_args=list(DEV_SERVER_TUNING),
    )
    worker_env = {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "ANTHROPIC_BASE_URL": mock.base_url,
        "ANTHROPIC_API_KEY": "sk-bench-not-a-secret",
        "MANAGED_AGENTS_LOG_LEVEL": "warning",
    }
    command = [sys.executable, str(ROOT / "worker.py"), "--task-queue", settings.task_queue]
    command += ["--data-dir", str(settings.data_dir), "--sandbox-id", "bench"]
    worker = subprocess.Popen(command, env=worker_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(3)  # the worker connects and registers
        idle_kb = peak_rss_kb(worker.pid)
        for n in sizes:
            store_obj = memory.create_store(f"bench-{n}")
            for k in range(20):
                memory.create_memory(store_obj.id, f"/notes/{k}.md", f"topic{k}: old{k}\n", actor=user_actor("bench"))
            ids = seed(store, records, store_obj.id, f"b{n}", n, args.session_kb)
            console.print(f"[bench] dream over {n} sessions ({args.session_kb} kB each) ...")
            body = {
                "inputs": [
                    {"type": "memory_store", "memory_store_id": store_obj.id},
                    {"type": "sessions", "session_ids": ids},
                ],
                "model": "claude-sonnet-4-6",
                "options": {
                    "max_parallel_sessions": PARALLEL,
                    "transcript_chunk_chars": CHUNK_CHARS,
                    "consolidation_batch_chars": BATCH_CHARS,
                },
            }
            started = time.perf_counter()
            handle = await start_dream(env.client, body, task_queue=settings.task_queue)
            shown = -1
            while True:
                dream = await handle.query("dream")
                done = dream["progress"]["sessions_read"]
                if done != shown and done % 10 == 0:
                    console.print(f"      sessions {done}/{n}  ({time.perf_counter() - started:.1f} s)")
                    shown = done
                if dream["status"] in ("completed", "failed", "canceled"):
                    break
                await asyncio.sleep(0.25)
            result = await handle.result()
            wall = time.perf_counter() - started
            p = result["progress"]
            parts = (p["model_requests"] - p["batches_total"]) / n
            floor = math.ceil(n / PARALLEL) * parts * args.latency + p["batches_total"] * args.latency
            history = len((await handle.fetch_history()).to_json())
            rows.append(
                {
                    "sessions": n,
                    "status": result["status"],
                    "wall_s": round(wall, 2),
                    "model_requests": p["model_requests"],
                    "parts_per_session": round(parts, 2),
                    "batches": p["batches_total"],
                    "floor_s": round(floor, 2),
                    "wall_over_floor": round(wall / floor, 2),
                    "history_kb": round(history / 1024, 1),
                    "peak_rss_mb": round(peak_rss_kb(worker.pid) / 1024, 1),
                    "idle_rss_mb": round(idle_kb / 1024, 1),
                }
            )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        await env.shutdown()
        mock.stop()

    table = Table(title=f"Dream pipeline (mock latency {args.latency * 1000:.0f} ms, {PARALLEL} sessions at once)")
    for column in (
        "sessions",
        "status",
        "wall s",
        "model calls",
        "batches",
        "floor s",
        "wall/floor",
        "history",
        "peak RSS",
        "idle RSS",
        "peak/idle",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r["sessions"]),
            r["status"],
            f"{r['wall_s']:.2f}",
            str(r["model_requests"]),
            str(r["batches"]),
            f"{r['floor_s']:.2f}",
            f"{r['wall_over_floor']:.2f}x",
            f"{r['history_kb']:.0f} KB",
            f"{r['peak_rss_mb']:.0f} MB",
            f"{r['idle_rss_mb']:.0f} MB",
            f"{r['peak_rss_mb'] / r['idle_rss_mb']:.2f}x",
        )
    console.print(table)
    print(json.dumps({"latency_s": args.latency, "session_kb": args.session_kb, "rows": rows}))
    return 0 if all(r["status"] == "completed" for r in rows) else 1


if __name__ == "__main__":
    code = asyncio.run(main())
    sys.stdout.flush()
    os._exit(code)
