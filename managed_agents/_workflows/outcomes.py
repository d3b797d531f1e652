"""Outcomes inside the session workflow: brief the agent, grade each pass, loop or conclude."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from managed_agents._contract import OUTCOME_COLLECT_DELIVERABLES, OUTCOME_GRADE, OUTCOME_READ_RUBRIC
    from managed_agents._grader import acknowledgment_request, outcome_kickoff, revision_request
    from managed_agents._models.outcome import (
        CollectDeliverablesInput,
        DeliverablesManifest,
        GradeInput,
        GradeResult,
        IterationRecord,
        OutcomeState,
        ReadRubricInput,
        ReadRubricResult,
    )
    from managed_agents._models.session import RequestUsage
    from managed_agents._workflows import activity_options as options
    from managed_agents._workflows.base import SessionBase, _zero_usage, cancel_unless_done


class OutcomesMixin(SessionBase):
    async def _start_pending_outcome(self) -> bool:
        """Kick off a newly defined outcome: resolve a file rubric, brief the agent. False if it failed."""
        s = self._s
        outcome = s.active_outcome
        if outcome is None or outcome.result != "pending":
            return True
        if outcome.rubric_source.get("type") == "file":
            await self._sandbox_ready()
            read = await workflow.execute_activity(
                OUTCOME_READ_RUBRIC,
                ReadRubricInput(
                    session_id=s.session_id, workspace_id=s.workspace_id, path=outcome.rubric_source["file_id"]
                ),
                result_type=ReadRubricResult,
                task_queue=s.sandbox_queue,
                **options.sandbox_call(
                    60, s.params.options.heartbeat_timeout_seconds, s.params.options.sandbox_schedule_to_start_seconds
                ),
            )
            if read.content is None:
                self._end_outcome_without_grading(outcome, read.error or "rubric file unavailable")
                return False
            outcome.rubric = read.content
        outcome.result = "running"
        s.pending_content.append({"type": "text", "text": outcome_kickoff(outcome.description, outcome.rubric)})
        return True

    def _end_outcome_without_grading(self, outcome: OutcomeState, why: str) -> None:
        outcome.result = "failed"
        outcome.failure_kind = "rubric_unavailable"
        outcome.explanation = why
        outcome.completed_at = workflow.now()
        self._emit(
            "session.error",
            error={"type": "unknown_error", "message": why, "retry_status": {"type": "exhausted"}},
        )

    async def _evaluate_outcome(self, outcome: OutcomeState) -> bool:
        """One evaluation. True when the agent works again (revision, or the final acknowledgment)."""
        s = self._s
        opts = s.params.options
        outcome.result = "evaluating"
        iteration = outcome.iteration
        start = self._emit("span.outcome_evaluation_start", outcome_id=outcome.outcome_id, iteration=iteration)
        await self._sandbox_ready()
        manifest = await workflow.execute_activity(
            OUTCOME_COLLECT_DELIVERABLES,
            CollectDeliverablesInput(
                session_id=s.session_id, workspace_id=s.workspace_id, outcome_id=outcome.outcome_id, iteration=iteration
            ),
            result_type=DeliverablesManifest,
            task_queue=s.sandbox_queue,
            **options.sandbox_call(120, opts.heartbeat_timeout_seconds, opts.sandbox_schedule_to_start_seconds),
        )
        model = opts.grader_model or s.params.agent_definition.model_id
        grade_input = GradeInput(
            session_id=s.session_id,
            outcome_id=outcome.outcome_id,
            iteration=iteration,
            model=model,
            description=outcome.description,
            rubric=outcome.rubric,
            final_message=s.final_message,
            deliverables=manifest,
            max_tokens=opts.grader_max_tokens,
            max_attempts=opts.max_model_attempts,
        )
        handle = workflow.start_activity(
            OUTCOME_GRADE,
            grade_input,
            result_type=GradeResult,
            **self._model_call_options(),
        )
        while not handle.done() and not s.interrupt_requested:
            try:
                await workflow.wait_condition(
                    lambda: handle.done() or s.interrupt_requested,
                    timeout=timedelta(seconds=opts.outcome_ongoing_interval_seconds),
                )
            except TimeoutError:
                self._emit("span.outcome_evaluation_ongoing", outcome_id=outcome.outcome_id, iteration=iteration)
        usage = _zero_usage()
        await cancel_unless_done(handle)
        try:
            grade = handle.result()
        except (ActivityError, CancelledError, asyncio.CancelledError) as err:
            if s.interrupt_requested:
                result, explanation = "interrupted", "the user interrupted the evaluation"
            else:
                cause = err.cause if isinstance(err, ActivityError) and err.cause else err
                result, explanation = "failed", f"grader error: {cause}"
                outcome.failure_kind = "grader_error"
            grade = None
        else:
            usage = grade.usage
            self._add_usage(RequestUsage.model_validate(grade.usage), grade.cost_nanos, grade.model)
            if grade.verdict is None:
                result, explanation = "failed", f"grader error: {grade.error}"
                outcome.failure_kind = "grader_error"
            else:
                verdict = grade.verdict
                explanation = verdict.explanation
                if verdict.verdict == "rubric_not_applicable":
                    result = "failed"
                    outcome.failure_kind = "rubric_not_applicable"
                elif verdict.verdict == "satisfied":
                    result = "satisfied"
                elif iteration + 1 >= outcome.max_iterations:
                    result = "max_iterations_reached"
                else:
                    result = "needs_revision"
                outcome.iterations.append(
                    IterationRecord(
                        iteration=iteration,
                        verdict=verdict.verdict,
                        score=verdict.score,
                        criteria_passed=sum(c.passed for c in verdict.criteria),
                        criteria_total=len(verdict.criteria),
                        snapshot_dir=manifest.snapshot_dir,
                    )
                )
        if outcome.failure_kind == "grader_error":
            self._emit(
                "session.error",
                error={"type": "unknown_error", "message": explanation, "retry_status": {"type": "exhausted"}},
            )
        end_fields: dict[str, Any] = {
            "outcome_evaluation_start_id": start["id"],
            "outcome_id": outcome.outcome_id,
            "iteration": iteration,
            "result": result,
            "explanation": explanation,
            "usage": usage,
        }
        if grade is not None and grade.verdict is not None:
            end_fields["criteria"] = [c.model_dump() for c in grade.verdict.criteria]
        if grade is not None and grade.corrections:
            end_fields["grader_corrections"] = grade.corrections
        if outcome.failure_kind:
            end_fields["failure_kind"] = outcome.failure_kind
        outcome.explanation = explanation
        if result == "needs_revision":
            ended = self._emit("span.outcome_evaluation_end", **end_fields)
            self._webhook("session.outcome_evaluation_ended", ended)
            outcome.iteration += 1
            outcome.result = "running"
            criteria = end_fields.get("criteria", [])
            s.pending_content.append(
                {"type": "text", "text": revision_request(explanation, criteria, iteration, outcome.max_iterations)}
            )
            return True
        outcome.result = result  # type: ignore[assignment]
        outcome.completed_at = workflow.now()
        best = outcome.best()
        if result == "max_iterations_reached" and best is not None:
            end_fields["best_iteration"] = best.iteration
            end_fields["best_snapshot_dir"] = best.snapshot_dir
        ended = self._emit("span.outcome_evaluation_end", **end_fields)
        self._webhook("session.outcome_evaluation_ended", ended)
        if result == "max_iterations_reached":
            s.pending_content.append(
                {"type": "text", "text": acknowledgment_request(best.iteration if best else None, explanation)}
            )
            return True
        return False
