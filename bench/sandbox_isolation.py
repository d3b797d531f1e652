"""Added cost of the bubblewrap sandbox per bash tool call.

Runs the same bash calls through :func:`managed_agents._sandbox.tools.run_tool` bare (``policy=None``:
a plain ``bash -c`` in the workspace) and isolated (``policy=SandboxPolicy()``: bwrap with fresh
namespaces, the read-only runtime view, rlimits, the per-command cgroup when there is one, and the
workspace quota measured before and after), interleaved in one run, and prints the median and p90
wall time per call and the ratio.

    python bench/sandbox_isolation.py [--calls 50] [--workspace-files 0]

``--workspace-files`` fills the workspace with that many small files first (the quota walk is
proportional to the number of files).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from managed_agents._sandbox.isolation import SandboxPolicy, isolation_available, process_limit_mechanism
from managed_agents._sandbox.tools import run_tool

COMMANDS = ("echo hi", "python3 -c pass")
console = Console()


async def one_call(workspace: Path, command: str, policy: SandboxPolicy | None) -> float:
    start = time.perf_counter()
    outcome = await run_tool(workspace, "bash", {"command": command}, policy=policy)
    elapsed = time.perf_counter() - start
    if outcome.is_error:
        raise SystemExit(f"{command!r} failed ({'isolated' if policy else 'bare'}): {outcome.content}")
    return elapsed


def p90(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(len(xs) * 0.9) - 1)]


async def bench_sandbox(calls: int, workspace_files: int) -> None:
    ok, reason = isolation_available()
    if not ok:
        raise SystemExit(f"bubblewrap isolation is not available here: {reason}")
    policy = SandboxPolicy()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        workspace = Path(tmp)
        for i in range(workspace_files):
            (workspace / f"f{i // 1000}").mkdir(exist_ok=True)
            (workspace / f"f{i // 1000}" / f"{i}.txt").write_text("x" * 100)
        timings: dict[tuple[str, str], list[float]] = {}
        for command in COMMANDS:
            for pol in (None, policy):  # warm-up (probe, caches)
                await one_call(workspace, command, pol)
            for _ in range(calls):
                for mode, pol in (("bare", None), ("isolated", policy)):
                    timings.setdefault((command, mode), []).append(await one_call(workspace, command, pol))

    table = Table(title=f"bash tool call wall time, {calls} calls each ({workspace_files} files in the workspace)")
    for col in ("command", "bare median", "isolated median", "added", "ratio", "bare p90", "isolated p90"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for command in COMMANDS:
        bare, iso = timings[(command, "bare")], timings[(command, "isolated")]
        mb, mi = statistics.median(bare), statistics.median(iso)
        table.add_row(
            command,
            f"{mb * 1000:.1f} ms",
            f"{mi * 1000:.1f} ms",
            f"{(mi - mb) * 1000:+.1f} ms",
            f"{mi / mb:.2f}x",
            f"{p90(bare) * 1000:.1f} ms",
            f"{p90(iso) * 1000:.1f} ms",
        )
    console.print(table)
    console.print(f"process limit: {process_limit_mechanism(policy)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--workspace-files", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(bench_sandbox(args.calls, args.workspace_files))


if __name__ == "__main__":
    main()
