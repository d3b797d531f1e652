"""Reviewing a dream's proposed store: a per-memory diff, promotion into the input store, discard.

Promotion writes the dream's changes into the *input* store (new versions, attributed to whoever
promotes), so every session that mounts that store id attaches the curated memory from then on,
and the old content stays in the versions. Each change carries a precondition against the store
as the dream cloned it: a memory that a session changed while the dream ran is a conflict, and
nothing is written unless ``force`` is given (a concurrent writer's change is never lost silently).
"""

from __future__ import annotations

import difflib
import hashlib
from typing import Literal

from pydantic import BaseModel, Field

from managed_agents._dreams.records import DreamRecords
from managed_agents._memory.errors import InvalidMemoryRequest, MemoryNotFound
from managed_agents._memory.models import MemoryStoreProposal
from managed_agents._memory.service import ActorLike, MemoryService

ChangeKind = Literal["added", "removed", "modified", "unchanged"]


class MemoryChange(BaseModel):
    path: str
    change: ChangeKind
    diff: str = Field(default="", description="Unified diff, input -> proposed")
    lines_added: int = 0
    lines_removed: int = 0


class PromotionResult(BaseModel):
    memory_store_id: str
    proposed_memory_store_id: str
    written: int = 0
    deleted: int = 0
    conflicts: list[str] = Field(default_factory=list)
    forced: bool = False


class PromotionConflict(InvalidMemoryRequest):
    """Memories of the input store changed since the dream cloned it. HTTP 409."""

    status = 409
    error_type = "memory_precondition_failed_error"

    def __init__(self, paths: list[str]) -> None:
        shown = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
        super().__init__(
            "memory_store",
            f"changed since the dream read it: {shown}. Review them, then promote with force to overwrite, "
            "or run a new dream",
        )
        self.paths = paths


def _proposal(memory: MemoryService, proposed_store_id: str) -> MemoryStoreProposal:
    store = memory.retrieve_store(proposed_store_id)
    if store.proposal is None or not store.proposal.source_memory_store_id or not store.proposal.dream_id:
        raise InvalidMemoryRequest("memory_store_id", f"{proposed_store_id} is not a store a dream proposed")
    return store.proposal


def diff_stores(memory: MemoryService, proposed_store_id: str, *, context: int = 2) -> list[MemoryChange]:
    """Each memory of the input store and of the proposal: what the proposal changes, by path."""
    proposal = _proposal(memory, proposed_store_id)
    assert proposal.source_memory_store_id is not None
    before = {e.path: e.content for e in memory.snapshot(proposal.source_memory_store_id)}
    after = {e.path: e.content for e in memory.snapshot(proposed_store_id)}
    changes: list[MemoryChange] = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path), after.get(path)
        if old == new:
            changes.append(MemoryChange(path=path, change="unchanged"))
            continue
        lines = list(
            difflib.unified_diff(
                (old or "").splitlines(),
                (new or "").splitlines(),
                fromfile=f"input{path}" if old is not None else "/dev/null",
                tofile=f"proposed{path}" if new is not None else "/dev/null",
                n=context,
                lineterm="",
            )
        )
        changes.append(
            MemoryChange(
                path=path,
                change="added" if old is None else "removed" if new is None else "modified",
                diff="\n".join(lines),
                lines_added=sum(1 for x in lines if x.startswith("+") and not x.startswith("+++")),
                lines_removed=sum(1 for x in lines if x.startswith("-") and not x.startswith("---")),
            )
        )
    return changes


def promote(
    memory: MemoryService, records: DreamRecords, proposed_store_id: str, *, actor: ActorLike, force: bool = False
) -> PromotionResult:
    proposal = _proposal(memory, proposed_store_id)
    if proposal.status != "proposed":
        raise InvalidMemoryRequest("memory_store_id", f"{proposed_store_id} was already {proposal.status}")
    assert proposal.source_memory_store_id is not None and proposal.dream_id is not None
    target = proposal.source_memory_store_id
    clone = records.stage_result(proposal.dream_id, "clone") or {}
    base: dict[str, str] = clone.get("base", {})
    current = {e.path: e.content_sha256 for e in memory.snapshot(target)}
    proposed = {e.path: e.content for e in memory.snapshot(proposed_store_id)}
    # What the dream changed, relative to the store it read.
    writes = {p: c for p, c in proposed.items() if base.get(p) != _sha(c)}
    deletes = [p for p in base if p not in proposed]
    # A conflict: the input store no longer holds what the dream read, nor what it would write.
    conflicts = sorted(p for p in [*writes, *deletes] if current.get(p) not in (base.get(p), _sha(writes.get(p))))
    if conflicts and not force:
        raise PromotionConflict(conflicts)
    result = PromotionResult(
        memory_store_id=target, proposed_memory_store_id=proposed_store_id, conflicts=conflicts, forced=bool(conflicts)
    )
    for path, content in writes.items():
        expected = None if force or path not in base else base[path]
        memory.write_memory(target, path, content, actor, {"content_sha256": expected} if expected else None)
        result.written += 1
    for path in deletes:
        try:
            memory.delete_memory(target, path, actor=actor, expected_content_sha256=None if force else base[path])
            result.deleted += 1
        except MemoryNotFound:
            pass
    memory.set_store_proposal(proposed_store_id, proposal.model_copy(update={"status": "promoted"}))
    return result


def discard(memory: MemoryService, proposed_store_id: str) -> None:
    """Mark the proposal discarded and archive its store (its content stays readable)."""
    proposal = _proposal(memory, proposed_store_id)
    if proposal.status != "proposed":
        raise InvalidMemoryRequest("memory_store_id", f"{proposed_store_id} was already {proposal.status}")
    memory.set_store_proposal(proposed_store_id, proposal.model_copy(update={"status": "discarded"}))
    if memory.retrieve_store(proposed_store_id).archived_at is None:
        memory.archive_store(proposed_store_id)


def _sha(content: str | None) -> str | None:
    return None if content is None else hashlib.sha256(content.encode()).hexdigest()
