"""``worker.py`` with one difference, for crash tests: the activity types named in
``STALL_ACTIVITIES`` (comma-separated) run as usual, then do not return.

Same arguments, settings and workers as ``python worker.py`` (``managed_agents._worker``), plus
one worker interceptor. For a named activity type the interceptor runs the real activity (its
work is done: stored, cloned, asked of the model), writes the marker file
``<data dir>/stalled-<activity type>-<activity id>-<attempt>`` and then sleeps instead of
returning the result, as a worker that dies at the worst moment would leave it. It runs inside
every worker's ``HeartbeatInterceptor``, so the stalled attempt keeps heartbeating while this
process lives; a test kills the process with SIGKILL and starts a new worker.

With ``WORKER_START_FILE`` set, the process imports everything, then waits for that file to
exist before it connects: a replacement worker can be made ready while the worker it replaces
still runs, and start polling only once that one is killed (importing takes seconds here).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from managed_agents._client import connect
from managed_agents._logging import configure_logging, get_logger
from managed_agents._worker import build_workers, parse_args, run_workers, settings_from_args

log = get_logger("tests.stalling_worker")

STALL_SECONDS = 3600.0


def marker_name(activity_type: str, activity_id: str, attempt: int) -> str:
    return f"stalled-{activity_type}-{activity_id}-{attempt}"


class StallInterceptor(Interceptor):
    def __init__(self, activity_types: set[str], marker_dir: Path) -> None:
        self.activity_types = activity_types
        self.marker_dir = marker_dir

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _StallInbound(next, self)


class _StallInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: StallInterceptor) -> None:
        super().__init__(next)
        self.owner = owner

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        info = activity.info()
        if info.activity_type not in self.owner.activity_types:
            return result
        marker = self.owner.marker_dir / marker_name(info.activity_type, info.activity_id, info.attempt)
        marker.write_text(str(os.getpid()))
        log.info("activity stalled", activity_type=info.activity_type, attempt=info.attempt)
        await asyncio.sleep(STALL_SECONDS)
        return result


async def amain(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from_args(args)
    configure_logging(settings.log_format, settings.log_level)
    stalled = {name.strip() for name in os.environ.get("STALL_ACTIVITIES", "").split(",") if name.strip()}
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    client = await connect(args.address, args.namespace)
    workers = build_workers(client, settings, interceptors=[StallInterceptor(stalled, settings.data_dir)])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker started", task_queue=settings.task_queue, stalls=sorted(stalled))
    await run_workers(workers, stop)


def main() -> None:
    start_file = os.environ.get("WORKER_START_FILE")
    while start_file and not Path(start_file).exists():
        time.sleep(0.02)
    try:
        asyncio.run(amain())
    except KeyboardInterrupt:
        pass
    os._exit(0)  # as worker.py: Temporal's Rust bridge threads can abort the interpreter at exit


if __name__ == "__main__":
    main()
