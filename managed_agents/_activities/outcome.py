"""Outcome activities: gather the deliverables in the sandbox, grade them with a fresh model call.

Collecting runs on the sandbox worker that holds the workspace (it reads the files and snapshots
them per iteration); grading runs on the brain, which has the model API. The deliverables travel
between them through the session store, so history carries only their manifest.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio import activity

from managed_agents._activities.forced_tool import call_forced_tool, validation_problems
from managed_agents._activities.model import ModelClientFactory
from managed_agents._activities.sandbox import SandboxActivities
from managed_agents._contract import OUTCOME_COLLECT_DELIVERABLES, OUTCOME_GRADE, OUTCOME_READ_RUBRIC
from managed_agents._grader import GRADE_TOOL_DEFINITION, GRADER_SYSTEM, grader_prompt
from managed_agents._logging import get_logger
from managed_agents._models.outcome import (
    CollectDeliverablesInput,
    DeliverableFile,
    DeliverablesManifest,
    GradeInput,
    GradeResult,
    GraderVerdict,
    ReadRubricInput,
    ReadRubricResult,
)
from managed_agents._models.session import RequestUsage
from managed_agents._pricing import cost_nanos
from managed_agents._providers import ModelProvider, as_provider
from managed_agents._sandbox.paths import resolve_in_workspace, workspace_root
from managed_agents._store import SessionStore

log = get_logger("managed_agents.outcome")

SNAPSHOT_ROOT = ".outcomes"
SKIPPED_DIRS = {SNAPSHOT_ROOT, ".git", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache"}
MAX_FILES = 200
MAX_FILE_BYTES = 100_000
MAX_TOTAL_BYTES = 400_000
MAX_GRADER_ANSWERS = 3
MAX_RUBRIC_CHARS = 262_144


class OutcomeSandboxActivities:
    """Runs beside the sandbox tools, on the worker that holds the workspace."""

    def __init__(self, sandbox: SandboxActivities) -> None:
        self.sandbox = sandbox

    @activity.defn(name=OUTCOME_READ_RUBRIC)
    async def read_rubric(self, inp: ReadRubricInput) -> ReadRubricResult:
        workspace = self.sandbox.workspace(inp.workspace_id or inp.session_id)
        try:
            path = resolve_in_workspace(workspace_root(workspace), inp.path, field="rubric.file_id")
        except Exception as err:  # escape attempts and bad paths are the user's to fix
            return ReadRubricResult(error=f"rubric file {inp.path!r}: {err}")
        try:
            text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            return ReadRubricResult(error=f"rubric file {inp.path!r} cannot be read from the workspace: {err}")
        if not text.strip():
            return ReadRubricResult(error=f"rubric file {inp.path!r} is empty")
        if len(text) > MAX_RUBRIC_CHARS:
            return ReadRubricResult(error=f"rubric file {inp.path!r} is over {MAX_RUBRIC_CHARS} characters")
        return ReadRubricResult(content=text)

    @activity.defn(name=OUTCOME_COLLECT_DELIVERABLES)
    async def collect_deliverables(self, inp: CollectDeliverablesInput) -> DeliverablesManifest:
        workspace = self.sandbox.workspace(inp.workspace_id or inp.session_id)
        snapshot = Path(SNAPSHOT_ROOT) / inp.outcome_id / f"iteration-{inp.iteration}"
        files, bodies, omitted = await asyncio.to_thread(_collect, workspace, workspace / snapshot)
        ref = await asyncio.to_thread(self.sandbox.store.put_blob, bodies)
        log.info(
            "deliverables collected",
            session_id=inp.session_id,
            activity="outcome.collect_deliverables",
            files=len(files),
            iteration=inp.iteration,
        )
        return DeliverablesManifest(ref=ref, files=files, omitted=omitted, snapshot_dir=str(snapshot))


def _collect(workspace: Path, snapshot: Path) -> tuple[list[DeliverableFile], list[list[str]], int]:
    """Workspace files (no symlinks, no tool caches), capped, copied to ``snapshot``."""
    paths: list[str] = []
    for root, dirs, names in os.walk(workspace, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not os.path.islink(os.path.join(root, d)))
        for name in sorted(names):
            full = os.path.join(root, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            paths.append(os.path.relpath(full, workspace))
    files: list[DeliverableFile] = []
    bodies: list[list[str]] = []
    total = 0
    for rel in paths[:MAX_FILES]:
        data = (workspace / rel).read_bytes()
        binary = b"\0" in data[:8192]
        shown = b"" if binary else data[:MAX_FILE_BYTES]
        if total + len(shown) > MAX_TOTAL_BYTES:
            shown = shown[: max(MAX_TOTAL_BYTES - total, 0)]
        total += len(shown)
        files.append(
            DeliverableFile(
                path=rel,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                truncated=not binary and len(shown) < len(data),
                binary=binary,
            )
        )
        text = "(binary file)" if binary else shown.decode("utf-8", errors="replace")
        if files[-1].truncated:
            text += f"\n[... truncated: {len(data)} bytes in all]"
        bodies.append([rel, text])
        target = snapshot / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(workspace / rel, target)
    return files, bodies, max(len(paths) - MAX_FILES, 0)


class GraderActivities:
    """Runs on the brain worker: calls the grader model in a context of its own."""

    def __init__(self, store: SessionStore, client_factory: ModelProvider | ModelClientFactory | None = None) -> None:
        self.store = store
        self.provider = as_provider(client_factory)

    @activity.defn(name=OUTCOME_GRADE)
    async def grade(self, inp: GradeInput) -> GradeResult:
        bound = log.bind(
            session_id=inp.session_id,
            activity="outcome.grade",
            iteration=inp.iteration,
            attempt=activity.info().attempt,
        )
        bodies = await asyncio.to_thread(self.store.get_blob, inp.deliverables.ref)
        prompt = grader_prompt(
            inp.description, inp.rubric, inp.final_message, [(p, b) for p, b in bodies], inp.deliverables.omitted
        )
        answer = await call_forced_tool(
            self.provider.client(inp.model),
            model=self.provider.model_id(inp.model),
            max_tokens=inp.max_tokens,
            system=GRADER_SYSTEM,
            tool=GRADE_TOOL_DEFINITION,
            prompt=prompt,
            validate=_valid_verdict,
            max_answers=MAX_GRADER_ANSWERS,
        )
        usage = RequestUsage.model_validate(answer.usage)
        if answer.corrections:
            bound.warning("grader answers rejected", problems=answer.corrections)
        if answer.value is None:
            bound.warning("grader gave no verdict", error=answer.error)
            return self._result(None, f"grader: {answer.error}", answer.corrections, usage, inp)
        bound.info("graded", verdict=answer.value.verdict, score=answer.value.score)
        return self._result(answer.value, None, answer.corrections, usage, inp)

    @staticmethod
    def _result(
        verdict: GraderVerdict | None, error: str | None, corrections: list[str], usage: RequestUsage, inp: GradeInput
    ) -> GradeResult:
        return GradeResult(
            verdict=verdict,
            error=error,
            corrections=corrections,
            usage=usage.model_dump(
                include={"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"}
            ),
            cost_nanos=cost_nanos(inp.model, usage),
            model=inp.model,
        )


def _valid_verdict(raw: dict[str, Any]) -> tuple[GraderVerdict | None, str | None]:
    """A ``submit_grade`` input that parses and does not contradict itself."""
    try:
        verdict = GraderVerdict.model_validate(raw)
    except ValidationError as err:
        return None, "invalid grade: " + validation_problems(err)
    contradiction = verdict.contradiction()
    if contradiction is not None:
        return None, f"contradictory grade: {contradiction}"
    return verdict, None
