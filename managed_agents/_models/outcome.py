"""Outcomes: a task description plus a rubric; a grader in its own context scores the work.

``OutcomeState`` is what the session carries (also across continue-as-new); the grader's verdict
and the deliverables it saw are typed here too, since they cross activity boundaries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

TerminalResult = Literal["satisfied", "max_iterations_reached", "failed", "interrupted"]
OutcomeResult = Literal[
    "pending", "running", "evaluating", "satisfied", "max_iterations_reached", "failed", "interrupted"
]
TERMINAL_RESULTS = ("satisfied", "max_iterations_reached", "failed", "interrupted")

#: Why an outcome ended ``failed``: the grader judged the rubric inapplicable, or the grader itself
#: could not produce a valid verdict (API errors, malformed output). Managed Agents folds both into
#: ``failed``; this engine says which.
FailureKind = Literal["rubric_not_applicable", "grader_error", "rubric_unavailable"]


class CriterionGrade(BaseModel):
    criterion: str = Field(min_length=1)
    passed: bool
    reason: str = Field(min_length=1)


class GraderVerdict(BaseModel):
    """What the grader must answer (its ``submit_grade`` tool input), validated."""

    verdict: Literal["satisfied", "needs_revision", "rubric_not_applicable"]
    criteria: list[CriterionGrade] = Field(default_factory=list)
    explanation: str = Field(min_length=1)

    @model_validator(mode="after")
    def _criteria_unless_inapplicable(self) -> GraderVerdict:
        if self.verdict != "rubric_not_applicable" and not self.criteria:
            raise ValueError("criteria: grade every rubric criterion (at least one)")
        return self

    def contradiction(self) -> str | None:
        """A verdict that disagrees with its own criteria is not accepted as is."""
        failing = [c.criterion for c in self.criteria if not c.passed]
        if self.verdict == "satisfied" and failing:
            return f"verdict is satisfied but these criteria failed: {'; '.join(failing)}"
        if self.verdict == "needs_revision" and self.criteria and not failing:
            return "verdict is needs_revision but every criterion passed"
        return None

    @property
    def score(self) -> float:
        return sum(c.passed for c in self.criteria) / len(self.criteria) if self.criteria else 0.0


class DeliverableFile(BaseModel):
    path: str
    size: int
    sha256: str
    truncated: bool = False
    binary: bool = False


class DeliverablesManifest(BaseModel):
    """The files the grader sees; bodies are in the session store under ``ref``."""

    ref: str
    files: list[DeliverableFile]
    omitted: int = Field(0, description="Files left out by the caps")
    snapshot_dir: str = Field(description="Workspace folder holding a copy of this iteration's deliverables")


class _ByKey(BaseModel):
    """Fields read as attributes or, like the JSON, by key (``record["verdict"]``)."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None


class IterationRecord(_ByKey):
    iteration: int
    verdict: str
    score: float
    criteria_passed: int
    criteria_total: int
    snapshot_dir: str | None = None


class OutcomeEvaluation(_ByKey):
    """One outcome of a session (``session.outcome_evaluations``): Managed Agents'
    ``BetaManagedAgentsOutcomeEvaluationResource``, plus this engine's iterations, why it failed,
    and the best iteration when the cap was reached. Fields read as attributes
    (``evaluation.result``) or, like the JSON, by key (``evaluation["result"]``)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["outcome_evaluation"] = "outcome_evaluation"
    outcome_id: str
    description: str
    iteration: int
    result: OutcomeResult
    explanation: str | None = None
    completed_at: datetime | None = None
    max_iterations: int
    iterations: list[IterationRecord] = Field(default_factory=list)
    failure_kind: FailureKind | None = None
    best_iteration: int | None = None
    best_score: float | None = None
    best_snapshot_dir: str | None = None

    @model_serializer(mode="wrap")
    def _only_what_applies(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The engine's extensions appear only when they apply, as in the event log.
        data: dict[str, Any] = handler(self)
        for key in ("failure_kind", "best_iteration", "best_score", "best_snapshot_dir"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class OutcomeState(BaseModel):
    outcome_id: str
    description: str
    rubric: str
    rubric_source: dict[str, Any]
    max_iterations: int = 3
    iteration: int = 0
    result: OutcomeResult = "pending"
    explanation: str | None = None
    failure_kind: FailureKind | None = None
    completed_at: datetime | None = None
    iterations: list[IterationRecord] = Field(default_factory=list)
    #: The final acknowledgment turn after max_iterations_reached is still to run.
    acknowledgment_pending: bool = False

    @property
    def terminal(self) -> bool:
        return self.result in TERMINAL_RESULTS

    def best(self) -> IterationRecord | None:
        """Highest score; the later iteration wins a tie (it includes more revisions)."""
        graded = [r for r in self.iterations if r.criteria_total]
        return max(graded, key=lambda r: (r.score, r.iteration)) if graded else None

    def resource(self) -> dict[str, Any]:
        """``BetaManagedAgentsOutcomeEvaluationResource``, plus the best iteration on a cap."""
        best = self.best()
        out: dict[str, Any] = {
            "type": "outcome_evaluation",
            "outcome_id": self.outcome_id,
            "description": self.description,
            "iteration": self.iteration,
            "result": self.result,
            "explanation": self.explanation,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "max_iterations": self.max_iterations,
            "iterations": [r.model_dump(mode="json") for r in self.iterations],
        }
        if self.failure_kind:
            out["failure_kind"] = self.failure_kind
        if best is not None:
            out["best_iteration"] = best.iteration
            out["best_score"] = best.score
            out["best_snapshot_dir"] = best.snapshot_dir
        return out


class CollectDeliverablesInput(BaseModel):
    session_id: str
    workspace_id: str | None = None
    outcome_id: str
    iteration: int


class ReadRubricInput(BaseModel):
    session_id: str
    workspace_id: str | None = None
    path: str


class ReadRubricResult(BaseModel):
    content: str | None = None
    error: str | None = None


class GradeInput(BaseModel):
    session_id: str
    outcome_id: str
    iteration: int
    model: str
    description: str
    rubric: str
    final_message: str | None
    deliverables: DeliverablesManifest
    max_tokens: int = 4096
    max_attempts: int = Field(description="Retries signal nothing; kept for symmetry with model requests")


class GradeResult(BaseModel):
    verdict: GraderVerdict | None = None
    #: Set when the grader never produced a valid verdict (after its re-asks).
    error: str | None = None
    corrections: list[str] = Field(default_factory=list, description="What was wrong with rejected answers")
    usage: dict[str, int]
    cost_nanos: int | None
    model: str
