"""``Dream``: read a memory store and up to 100 past sessions, write a new, curated store.

Input is shaped like ``client.beta.dreams.create``; the ``dream`` query and the result are the
dream object (``BetaDream``). The pipeline's stages are activities (see ``activities/dream.py``):

1. ``prepare``: check the inputs, clone the input store into a new store marked ``proposed``
   (``outputs[0]`` appears here); the input store is never written.
2. ``extract``: one activity per session, ``max_parallel_sessions`` at a time, each reading its
   transcript in chunks.
3. ``plan_consolidation`` then ``consolidate``: batches of observations, one after another.
4. ``finish``: bookkeeping (a schedule's high-water mark), then a ``dream.*`` webhook event.

History holds counts and usage only (about a dozen events per session), so 100 long sessions fit
one run. Cancelling the workflow cancels the dream: it ends ``canceled``, and the output store
keeps what was written so far, as Managed Agents does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from managed_agents._contract import (
        DREAM,
        DREAM_CONSOLIDATE,
        DREAM_EXTRACT,
        DREAM_FINISH,
        DREAM_PLAN_CONSOLIDATION,
        DREAM_PREPARE,
        DREAM_QUERY,
        DREAM_SELECT_SESSIONS,
        SCHEDULED_DREAM,
        WEBHOOKS_ENQUEUE,
    )
    from managed_agents._dreams.models import (
        ConsolidateInput,
        ConsolidateResult,
        Dream,
        DreamCreateParams,
        DreamError,
        DreamOutput,
        ExtractInput,
        ExtractResult,
        FinishDreamInput,
        PlanConsolidationInput,
        PlanConsolidationResult,
        PrepareDreamInput,
        PrepareDreamResult,
        ScheduledDreamInput,
        ScheduledDreamResult,
        SelectSessionsInput,
        SelectSessionsResult,
    )
    from managed_agents._errors import InvalidDreamInput
    from managed_agents._webhooks.models import WebhookEventInput
    from managed_agents._workflows import activity_options as options
    from managed_agents._workflows.base import WEBHOOK_SCOPE, describe_validation_error

#: Unreadable transcript parts fail the dream (or, with ``skip_unreadable_parts``, are listed on it).
UNREADABLE_PARTS_PATCH = "dream-unreadable-parts-v1"


@workflow.defn(name=DREAM)
class DreamWorkflow:
    @workflow.init
    def __init__(self, raw: Any) -> None:
        # ``Any`` on purpose (as AgentSession): a bad input fails the workflow with a clear message
        # rather than failing workflow tasks forever.
        self._error: str | None = None
        self._params: DreamCreateParams | None = None
        try:
            self._params = DreamCreateParams.model_validate(raw)
        except ValidationError as err:
            self._error = describe_validation_error(err)
        p = self._params
        self._dream = Dream(
            id=workflow.info().workflow_id,
            status="pending",
            created_at=workflow.now(),
            inputs=[i.model_dump() for i in p.inputs] if p else [],
            instructions=p.instructions if p else None,
            model=p.model if p else {"id": "unknown"},  # type: ignore[arg-type]
        )

    @workflow.query(name=DREAM_QUERY)
    def dream(self) -> dict[str, Any]:
        return self._dream.model_dump(mode="json")

    @workflow.run
    async def run(self, raw: Any) -> dict[str, Any]:
        if self._params is None:
            raise InvalidDreamInput(self._error or "unreadable input")
        p = self._params
        d = self._dream
        d.status = "running"
        try:
            await self._pipeline(p)
            d.status = "completed"
        except asyncio.CancelledError:
            d.status = "canceled"
        except _DreamFailed as failed:
            d.status = "failed"
            d.error = failed.error
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):  # the activity was cancelled with the dream
                d.status = "canceled"
            else:
                d.status = "failed"
                d.error = _error_of(err)
        d.ended_at = workflow.now()
        d.progress.stage = "done"
        await self._finish(p)
        return self.dream()

    async def _pipeline(self, p: DreamCreateParams) -> None:
        d = self._dream
        o = p.options
        d.progress.stage = "cloning"
        prepared: PrepareDreamResult = await workflow.execute_activity(
            DREAM_PREPARE,
            PrepareDreamInput(
                dream_id=d.id,
                memory_store_id=p.memory_store_id,
                session_ids=p.session_ids,
                max_store_bytes=o.max_store_bytes,
            ),
            result_type=PrepareDreamResult,
            **self._quick(),
        )
        if prepared.error is not None:
            raise _DreamFailed(prepared.error)
        assert prepared.output_memory_store_id is not None
        d.outputs = [DreamOutput(memory_store_id=prepared.output_memory_store_id)]
        sessions = list(prepared.session_messages)
        d.progress.sessions_total = len(sessions)

        d.progress.stage = "reading_sessions"
        queue = deque(sessions)

        async def reader() -> None:
            while queue:
                session_id = queue.popleft()
                read: ExtractResult = await workflow.execute_activity(
                    DREAM_EXTRACT,
                    ExtractInput(
                        dream_id=d.id,
                        session_id=session_id,
                        model=p.model.id,
                        instructions=p.instructions,
                        chunk_chars=o.transcript_chunk_chars,
                        max_tokens=o.max_tokens,
                    ),
                    result_type=ExtractResult,
                    **self._model_call(),
                )
                d.usage.add(read.usage)
                d.progress.model_requests += read.model_requests
                d.progress.observations += read.observations
                # Before the patch a dream went on past unreadable parts and still completed; a
                # history whose workflow tasks ran that code (a dream in flight while its workers
                # were upgraded) must replay down the same path.
                if read.skipped_parts and workflow.patched(UNREADABLE_PARTS_PATCH):
                    self._went_without(session_id, read, o.skip_unreadable_parts)
                d.progress.sessions_read += 1

        await _all_or_cancel([reader() for _ in range(min(o.max_parallel_sessions, len(sessions)))])

        d.progress.stage = "consolidating"
        plan: PlanConsolidationResult = await workflow.execute_activity(
            DREAM_PLAN_CONSOLIDATION,
            PlanConsolidationInput(dream_id=d.id, session_ids=sessions, batch_chars=o.consolidation_batch_chars),
            result_type=PlanConsolidationResult,
            **self._quick(),
        )
        d.progress.batches_total = plan.batches
        for batch in range(plan.batches):
            done: ConsolidateResult = await workflow.execute_activity(
                DREAM_CONSOLIDATE,
                ConsolidateInput(
                    dream_id=d.id,
                    output_memory_store_id=prepared.output_memory_store_id,
                    batch=batch,
                    batches=plan.batches,
                    model=p.model.id,
                    instructions=p.instructions,
                    max_tokens=o.max_tokens,
                    max_store_bytes=o.max_store_bytes,
                ),
                result_type=ConsolidateResult,
                **self._model_call(),
            )
            d.usage.add(done.usage)
            d.progress.model_requests += done.model_requests
            d.progress.memories_written += done.written
            d.progress.memories_deleted += done.deleted
            d.progress.batches_done += 1
        d.progress.stage = "finishing"

    def _went_without(self, session_id: str, read: ExtractResult, allowed: bool) -> None:
        """A session read with parts the model never answered validly for: what they held is not in
        the observations. Unless the dream was told it may go on without them, it fails here:
        raising cancels the other readers (``_all_or_cancel``), so no further session is read and
        nothing is consolidated from an incomplete reading."""
        d = self._dream
        if not allowed:
            first = read.skipped_parts[0]
            more = len(read.skipped_parts) - 1
            raise _DreamFailed(
                DreamError(
                    type="transcript_unreadable",
                    message=f"session {session_id}: part {first.part} of {first.parts} of its transcript could "
                    f"not be read: {first.reason}"
                    + (f" (and {more} more part{'s' if more > 1 else ''} of it)" if more else "")
                    + "; set options.skip_unreadable_parts to dream without such parts",
                )
            )
        d.skipped_parts.extend(read.skipped_parts)
        d.progress.parts_skipped += len(read.skipped_parts)

    async def _finish(self, p: DreamCreateParams) -> None:
        d = self._dream
        try:
            await workflow.execute_activity(
                DREAM_FINISH,
                FinishDreamInput(
                    dream_id=d.id,
                    memory_store_id=p.memory_store_id,
                    output_memory_store_id=d.outputs[0].memory_store_id if d.outputs else None,
                    status=d.status,
                    schedule_id=p.options.schedule_id,
                    session_ids=p.session_ids,
                ),
                **self._quick(),
            )
        except ActivityError as err:  # bookkeeping must not turn a finished dream into a failed one
            workflow.logger.warning("dream bookkeeping failed", extra={"error": str(err)})
        event = WebhookEventInput(
            event_id=f"whe_{d.id}_{d.status}",
            type=f"dream.{d.status}",
            data={"type": f"dream.{d.status}", "id": d.id, **WEBHOOK_SCOPE},
            created_at=workflow.now(),
        )
        try:
            await workflow.execute_local_activity(WEBHOOKS_ENQUEUE, event, **options.bookkeeping_local())
        except ActivityError as err:  # a webhook must never change how the dream ended
            workflow.logger.warning("dream webhook not enqueued", extra={"error": str(err)})

    def _model_call(self) -> dict[str, Any]:
        o = self._params.options if self._params else None
        assert o is not None
        # A stage is many requests (one per transcript part): its clock is 20 requests long.
        return options.model_call(
            o.model_request_timeout_seconds * 20,
            o.heartbeat_timeout_seconds,
            o.max_model_attempts,
            non_retryable=["internal_error", "invalid_request_error"],
        )

    def _quick(self) -> dict[str, Any]:
        assert self._params is not None
        return options.store_call(self._params.options.heartbeat_timeout_seconds)


class _DreamFailed(Exception):
    def __init__(self, error: DreamError) -> None:
        super().__init__(error.message)
        self.error = error


async def _all_or_cancel(coros: list[Any]) -> None:
    """Run the readers together; the first failure cancels the others and is raised."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _error_of(err: ActivityError) -> DreamError:
    cause = err.cause
    if isinstance(cause, TimeoutError):
        return DreamError(type="timeout", message=f"{err.activity_type} timed out ({cause.type})")
    message = str(cause) if cause is not None else str(err)
    return DreamError(type="internal_error", message=f"{err.activity_type}: {message}")


@workflow.defn(name=SCHEDULED_DREAM)
class ScheduledDream:
    """What a dream schedule starts each time it fires: pick the sessions that mounted the store
    and finished since the schedule's last successful dream, then run a ``Dream`` over them as a
    child workflow (its id is the dream id). Nothing new: no dream, and the result says why."""

    @workflow.run
    async def run(self, raw: Any) -> dict[str, Any]:
        try:
            inp = ScheduledDreamInput.model_validate(raw)
        except ValidationError as err:
            raise InvalidDreamInput(describe_validation_error(err)) from None
        selected: SelectSessionsResult = await workflow.execute_activity(
            DREAM_SELECT_SESSIONS,
            SelectSessionsInput(schedule_id=inp.schedule_id, memory_store_id=inp.memory_store_id),
            result_type=SelectSessionsResult,
            **options.store_call(inp.options.heartbeat_timeout_seconds),
        )
        if not selected.session_ids:
            since = selected.since.isoformat() if selected.since else "ever"
            return ScheduledDreamResult(
                schedule_id=inp.schedule_id,
                skipped=f"no session that mounted {inp.memory_store_id} finished since {since}",
            ).model_dump(mode="json")
        params = DreamCreateParams(
            inputs=[
                {"type": "memory_store", "memory_store_id": inp.memory_store_id},  # type: ignore[list-item]
                {"type": "sessions", "session_ids": selected.session_ids},  # type: ignore[list-item]
            ],
            model=inp.model,
            instructions=inp.instructions,
            options=inp.options.model_copy(update={"schedule_id": inp.schedule_id}),
        )
        result = await workflow.execute_child_workflow(
            DREAM, params.model_dump(mode="json"), id=f"drm_{workflow.uuid4().hex[:24]}"
        )
        return ScheduledDreamResult(schedule_id=inp.schedule_id, dream=Dream.model_validate(result)).model_dump(
            mode="json"
        )
