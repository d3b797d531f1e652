"""The dream pipeline's activities (brain worker: they need the model API and the database).

Every stage records its result in ``dream_stage_results`` before it reports done, and looks there
first: a retried attempt, or a worker started after a crash, reuses what a finished stage produced
instead of calling the model again. Only counts and usage cross Temporal history; transcripts,
observations and memories stay in the database.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from temporalio import activity

from managed_agents._activities.forced_tool import ForcedToolAnswer, call_forced_tool, validation_problems
from managed_agents._activities.model import ModelClientFactory
from managed_agents._contract import (
    DREAM_CONSOLIDATE,
    DREAM_EXTRACT,
    DREAM_FINISH,
    DREAM_PLAN_CONSOLIDATION,
    DREAM_PREPARE,
    DREAM_SELECT_SESSIONS,
    SESSIONS_RECORD,
)
from managed_agents._dreams import pipeline
from managed_agents._dreams.models import (
    ConsolidateInput,
    ConsolidateResult,
    DreamError,
    DreamUsage,
    ExtractInput,
    ExtractResult,
    FinishDreamInput,
    PlanConsolidationInput,
    PlanConsolidationResult,
    PrepareDreamInput,
    PrepareDreamResult,
    RecordSessionInput,
    SelectSessionsInput,
    SelectSessionsResult,
    SkippedPart,
)
from managed_agents._dreams.records import DreamRecords
from managed_agents._logging import get_logger
from managed_agents._memory.errors import MemoryNotFound, MemoryStoreNotFound
from managed_agents._memory.models import MemoryStoreProposal, ServiceAccountActor
from managed_agents._memory.service import MemoryService
from managed_agents._providers import ModelProvider, as_provider
from managed_agents._store import SessionStore, call_store

log = get_logger("managed_agents.dream")


def dream_actor(dream_id: str) -> ServiceAccountActor:
    """Who the dream's writes are attributed to in the output store's versions."""
    return ServiceAccountActor(service_account_id=dream_id)


class DreamActivities:
    def __init__(
        self,
        store: SessionStore,
        memory: MemoryService,
        records: DreamRecords,
        client_factory: ModelProvider | ModelClientFactory | None = None,
    ) -> None:
        self.store = store
        self.memory = memory
        self.records = records
        self.provider = as_provider(client_factory)

    # --- stage 1: check the inputs, clone the store ----------------------------------------------

    @activity.defn(name=DREAM_PREPARE)
    async def prepare(self, inp: PrepareDreamInput) -> PrepareDreamResult:
        return await asyncio.to_thread(self._prepare, inp)

    def _prepare(self, inp: PrepareDreamInput) -> PrepareDreamResult:
        try:
            source = self.memory.retrieve_store(inp.memory_store_id)
        except MemoryStoreNotFound:
            return _failed("input_memory_store_unavailable", f"memory store {inp.memory_store_id} does not exist")
        if source.archived_at is not None:
            return _failed("input_memory_store_unavailable", f"memory store {inp.memory_store_id} is archived")
        snapshot = self.memory.snapshot(inp.memory_store_id)
        size = sum(len(e.content.encode()) for e in snapshot)
        if size > inp.max_store_bytes:
            return _failed(
                "input_memory_store_too_large",
                f"memory store {inp.memory_store_id} holds {size:,} bytes in {len(snapshot)} memories; a dream "
                f"reads at most {inp.max_store_bytes:,} (options.max_store_bytes)",
            )
        lengths = {sid: self.store.transcript_length(sid) for sid in inp.session_ids}
        missing = [sid for sid, n in lengths.items() if n == 0]
        if missing:
            return _failed(
                "input_session_unavailable",
                f"no transcript for session{'s' if len(missing) > 1 else ''} {', '.join(missing[:10])} "
                f"in the session store",
            )
        # Oldest finished first, so a later statement replaces an earlier one when consolidating.
        finished = self.records.finished_at(inp.session_ids)
        order = sorted(inp.session_ids, key=lambda s: (finished[s].isoformat() if s in finished else "", s))
        output = self._clone_once(inp, source.name)
        return PrepareDreamResult(output_memory_store_id=output, session_messages={s: lengths[s] for s in order})

    def _clone_once(self, inp: PrepareDreamInput, source_name: str) -> str:
        recorded = self.records.stage_result(inp.dream_id, "clone")
        if recorded is not None:
            return str(recorded["memory_store_id"])
        clone = self.memory.clone_store(
            inp.memory_store_id,
            f"{source_name} (dream {inp.dream_id})"[:255],
            actor=dream_actor(inp.dream_id),
            proposal=MemoryStoreProposal(
                status="proposed", source_memory_store_id=inp.memory_store_id, dream_id=inp.dream_id
            ),
        )
        # The clone as made is the base a promotion compares the input store against later.
        base = {e.path: e.content_sha256 for e in self.memory.snapshot(clone.id)}
        kept = self.records.put_stage_result(inp.dream_id, "clone", {"memory_store_id": clone.id, "base": base})
        if kept["memory_store_id"] != clone.id:  # a concurrent attempt cloned first: keep one output
            self.memory.delete_store(clone.id)
        return str(kept["memory_store_id"])

    # --- stage 2: read each session --------------------------------------------------------------

    @activity.defn(name=DREAM_EXTRACT)
    async def extract(self, inp: ExtractInput) -> ExtractResult:
        key = f"extract:{inp.session_id}"
        done = await asyncio.to_thread(self.records.stage_result, inp.dream_id, key)
        if done is not None:
            return ExtractResult.model_validate({**done["result"], "reused": True})
        bound = log.bind(dream_id=inp.dream_id, session_id=inp.session_id, activity="dream.extract")
        activity.heartbeat("reading transcript")  # details; the worker's interceptor keeps beating
        chunks = await asyncio.to_thread(self._chunks, inp)
        client = self.provider.client(inp.model)
        result = ExtractResult(chunks=len(chunks))
        observations: list[dict[str, Any]] = []
        for index, chunk in enumerate(chunks):
            chunk_key = f"{key}:{index:05d}"
            recorded = await asyncio.to_thread(self.records.stage_result, inp.dream_id, chunk_key)
            if recorded is None:
                answer = await call_forced_tool(
                    client,
                    model=self.provider.model_id(inp.model),
                    max_tokens=inp.max_tokens,
                    system=pipeline.EXTRACT_SYSTEM,
                    tool=pipeline.EXTRACT_TOOL_DEFINITION,
                    prompt=pipeline.extract_prompt(inp.session_id, chunk, index, len(chunks), inp.instructions),
                    validate=_validate(pipeline.ExtractAnswer),
                )
                if answer.value is None:
                    # The rest of the session is still worth reading; the workflow decides whether a
                    # dream with a part missing may complete (options.skip_unreadable_parts).
                    bound.warning("transcript part unreadable", part=index, error=answer.error)
                found = [o.model_dump(exclude_none=True) for o in answer.value.observations] if answer.value else []
                recorded = await asyncio.to_thread(
                    self.records.put_stage_result,
                    inp.dream_id,
                    chunk_key,
                    {"observations": found, "usage": answer.usage, "requests": answer.requests, "error": answer.error},
                )
            if recorded.get("error"):
                # From the part's record, not the answer: a retried attempt reusing it reports it too.
                result.skipped_parts.append(
                    SkippedPart(
                        session_id=inp.session_id, part=index + 1, parts=len(chunks), reason=str(recorded["error"])
                    )
                )
            observations.extend(recorded["observations"])
            result.usage.add(DreamUsage.model_validate(recorded["usage"]))
            result.model_requests += int(recorded["requests"])
            activity.heartbeat(f"part {index + 1}/{len(chunks)}")
        result.observations = len(observations)
        await asyncio.to_thread(
            self.records.put_stage_result,
            inp.dream_id,
            key,
            {"observations": observations, "result": result.model_dump(mode="json")},
        )
        bound.info("session read", parts=len(chunks), observations=len(observations), skipped=len(result.skipped_parts))
        return result

    def _chunks(self, inp: ExtractInput) -> list[str]:
        lines = pipeline.render_transcript(self.store.iter_transcript(inp.session_id))
        return pipeline.chunk_lines(lines, inp.chunk_chars)

    # --- stage 3: consolidate, batch by batch ----------------------------------------------------

    @activity.defn(name=DREAM_PLAN_CONSOLIDATION)
    async def plan_consolidation(self, inp: PlanConsolidationInput) -> PlanConsolidationResult:
        return await asyncio.to_thread(self._plan, inp)

    def _plan(self, inp: PlanConsolidationInput) -> PlanConsolidationResult:
        plan = self.records.stage_result(inp.dream_id, "plan")
        if plan is None:
            items: list[tuple[str, dict[str, Any]]] = []
            for sid in inp.session_ids:  # already in the order the sessions finished
                read = self.records.stage_result(inp.dream_id, f"extract:{sid}")
                items.extend((sid, obs) for obs in (read or {}).get("observations", []))
            # Even with no observations there is one batch: the store itself gets curated.
            batches = pipeline.batch_observations(items, inp.batch_chars) or [[]]
            plan = self.records.put_stage_result(inp.dream_id, "plan", {"batches": batches})
        batches = plan["batches"]
        return PlanConsolidationResult(batches=len(batches), observations=sum(len(b) for b in batches))

    @activity.defn(name=DREAM_CONSOLIDATE)
    async def consolidate(self, inp: ConsolidateInput) -> ConsolidateResult:
        key = f"consolidate:{inp.batch:05d}"
        recorded = await asyncio.to_thread(self.records.stage_result, inp.dream_id, key)
        reused = recorded is not None
        if recorded is None:
            plan = await asyncio.to_thread(self.records.stage_result, inp.dream_id, "plan")
            batch = plan["batches"][inp.batch]
            snapshot = await asyncio.to_thread(self.memory.snapshot, inp.output_memory_store_id)
            store = [(e.path, e.content) for e in snapshot]
            existing = {e.path for e in snapshot}
            answer: ForcedToolAnswer[pipeline.ConsolidateAnswer] = await call_forced_tool(
                self.provider.client(inp.model),
                model=self.provider.model_id(inp.model),
                max_tokens=inp.max_tokens,
                system=pipeline.CONSOLIDATE_SYSTEM,
                tool=pipeline.CONSOLIDATE_TOOL_DEFINITION,
                prompt=pipeline.consolidate_prompt(store, batch, inp.batch, inp.batches, inp.instructions),
                validate=_validate(pipeline.ConsolidateAnswer, lambda a: a.problems(existing)),
            )
            if answer.value is None:
                raise _stage_failed(f"consolidation batch {inp.batch + 1}/{inp.batches}: {answer.error}")
            # Recorded before applying: a retry re-applies the same operations (idempotent) and
            # never asks the model for a second, different answer.
            recorded = await asyncio.to_thread(
                self.records.put_stage_result,
                inp.dream_id,
                key,
                {
                    "writes": [w.model_dump() for w in answer.value.writes],
                    "deletes": answer.value.deletes,
                    "usage": answer.usage,
                    "requests": answer.requests,
                },
            )
        written, deleted = await asyncio.to_thread(
            self._apply, inp.dream_id, inp.output_memory_store_id, recorded["writes"], recorded["deletes"]
        )
        log.info(
            "batch consolidated",
            dream_id=inp.dream_id,
            activity="dream.consolidate",
            batch=inp.batch,
            written=written,
            deleted=deleted,
            reused=reused,
        )
        return ConsolidateResult(
            usage=DreamUsage.model_validate(recorded["usage"]),
            model_requests=int(recorded["requests"]),
            written=written,
            deleted=deleted,
            reused=reused,
        )

    def _apply(self, dream_id: str, store_id: str, writes: list[dict[str, str]], deletes: list[str]) -> tuple[int, int]:
        actor = dream_actor(dream_id)
        for write in writes:
            self.memory.write_memory(store_id, write["path"], write["content"], actor)  # same content: no-op
        gone = 0
        for path in deletes:
            try:
                self.memory.delete_memory(store_id, path, actor=actor)
                gone += 1
            except MemoryNotFound:
                pass  # deleted by an earlier attempt of this batch
        return len(writes), gone

    # --- the end -----------------------------------------------------------------------------------

    @activity.defn(name=DREAM_FINISH)
    async def finish(self, inp: FinishDreamInput) -> None:
        await asyncio.to_thread(self._finish, inp)

    def _finish(self, inp: FinishDreamInput) -> None:
        if inp.status == "completed" and inp.schedule_id:
            # The schedule's next run reads the sessions that finished after the newest one read here.
            finished = self.records.finished_at(inp.session_ids)
            newest: datetime | None = max(finished.values()) if finished else None
            self.records.advance_schedule(inp.schedule_id, inp.memory_store_id, newest, inp.dream_id)
        log.info("dream finished", dream_id=inp.dream_id, status=inp.status, activity="dream.finish")

    @activity.defn(name=SESSIONS_RECORD)
    async def record_session(self, inp: RecordSessionInput) -> None:
        await call_store(
            self.records.engine, self.records.record_session, inp.session_id, inp.memory_store_ids, inp.finished_at
        )

    # --- schedules -----------------------------------------------------------------------------------

    @activity.defn(name=DREAM_SELECT_SESSIONS)
    async def select_sessions(self, inp: SelectSessionsInput) -> SelectSessionsResult:
        return await asyncio.to_thread(self._select, inp)

    def _select(self, inp: SelectSessionsInput) -> SelectSessionsResult:
        since = self.records.schedule_since(inp.schedule_id)
        found = self.records.sessions_finished_since(inp.memory_store_id, since, inp.limit)
        return SelectSessionsResult(session_ids=[sid for sid, _ in found], since=since)


def _failed(kind: str, message: str) -> PrepareDreamResult:
    return PrepareDreamResult(error=DreamError(type=kind, message=message))


def _stage_failed(message: str) -> Exception:
    from temporalio.exceptions import ApplicationError

    return ApplicationError(message, type="internal_error", non_retryable=True)


def _validate(model: type[Any], check: Any = None) -> Any:
    """A ``call_forced_tool`` validator: parse into ``model``, then ``check(value)`` -> problems."""

    def validate(raw: dict[str, Any]) -> tuple[Any, str | None]:
        try:
            value = model.model_validate(raw)
        except ValidationError as err:
            return None, "invalid input: " + validation_problems(err)
        problems = check(value) if check else []
        return (None, "; ".join(problems[:5])) if problems else (value, None)

    return validate
