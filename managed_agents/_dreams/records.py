"""Dreaming's bookkeeping in the project's database: stage results, the session index, schedules.

Synchronous, like the other stores; activities call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from managed_agents._dreams.tables import dream_schedule_state, dream_stage_results, session_index, session_index_stores
from managed_agents._migrations import ensure_schema
from managed_agents._store import upsert_statement


class DreamRecords:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        ensure_schema(engine)

    # --- stage results (idempotent stages) --------------------------------------------------------

    def stage_result(self, dream_id: str, key: str) -> Any:
        with self.engine.connect() as conn:
            body = conn.execute(
                sa.select(dream_stage_results.c.body).where(
                    dream_stage_results.c.dream_id == dream_id, dream_stage_results.c.stage_key == key
                )
            ).scalar_one_or_none()
        return None if body is None else json.loads(body)

    def put_stage_result(self, dream_id: str, key: str, value: Any) -> Any:
        """Record a stage's result; the first one recorded wins (and is returned), so two attempts
        racing each other agree on one result."""
        row = {"dream_id": dream_id, "stage_key": key, "body": json.dumps(value), "created_at": _now()}
        with self.engine.begin() as conn:
            conn.execute(
                upsert_statement(self.engine.dialect.name, dream_stage_results, row, ["dream_id", "stage_key"], None),
                row,
            )
        stored = self.stage_result(dream_id, key)
        return value if stored is None else stored

    def stage_results(self, dream_id: str, prefix: str) -> dict[str, Any]:
        """Every result whose key starts with ``prefix``, by key."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(dream_stage_results.c.stage_key, dream_stage_results.c.body)
                .where(dream_stage_results.c.dream_id == dream_id, dream_stage_results.c.stage_key.startswith(prefix))
                .order_by(dream_stage_results.c.stage_key)
            ).all()
        return {r.stage_key: json.loads(r.body) for r in rows}

    # --- the session index ------------------------------------------------------------------------

    def record_session(self, session_id: str, memory_store_ids: list[str], finished_at: datetime) -> None:
        """A session finished a turn (or ended) at ``finished_at``, with these stores mounted."""
        dialect = self.engine.dialect.name
        row = {"session_id": session_id, "created_at": finished_at, "finished_at": finished_at}
        with self.engine.begin() as conn:
            conn.execute(_upsert_finished(dialect, row), row)
            links = [{"memory_store_id": store_id, "session_id": session_id} for store_id in memory_store_ids]
            if links:
                conn.execute(
                    upsert_statement(dialect, session_index_stores, links[0], ["memory_store_id", "session_id"], None),
                    links,
                )

    def sessions_finished_since(
        self, memory_store_id: str, since: datetime | None, limit: int
    ) -> list[tuple[str, datetime]]:
        """Sessions that mounted the store and finished a turn after ``since``, oldest first."""
        query = (
            sa.select(session_index.c.session_id, session_index.c.finished_at)
            .join(session_index_stores, session_index_stores.c.session_id == session_index.c.session_id)
            .where(session_index_stores.c.memory_store_id == memory_store_id)
            .order_by(session_index.c.finished_at, session_index.c.session_id)
            .limit(limit)
        )
        if since is not None:
            query = query.where(session_index.c.finished_at > since)
        with self.engine.connect() as conn:
            return [(r.session_id, r.finished_at) for r in conn.execute(query).all()]

    def finished_at(self, session_ids: list[str]) -> dict[str, datetime]:
        if not session_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(session_index.c.session_id, session_index.c.finished_at).where(
                    session_index.c.session_id.in_(session_ids)
                )
            ).all()
        return {r.session_id: r.finished_at for r in rows}

    # --- schedules ----------------------------------------------------------------------------------

    def schedule_since(self, schedule_id: str) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.execute(  # type: ignore[no-any-return]
                sa.select(dream_schedule_state.c.since).where(dream_schedule_state.c.schedule_id == schedule_id)
            ).scalar_one_or_none()

    def advance_schedule(self, schedule_id: str, memory_store_id: str, since: datetime | None, dream_id: str) -> None:
        """After a successful dream: its sessions are no longer new for the schedule."""
        row = {
            "schedule_id": schedule_id,
            "memory_store_id": memory_store_id,
            "since": since,
            "last_dream_id": dream_id,
            "updated_at": _now(),
        }
        with self.engine.begin() as conn:
            conn.execute(
                upsert_statement(
                    self.engine.dialect.name, dream_schedule_state, row, ["schedule_id"], lambda old, new: sa.true()
                ),
                row,
            )

    def forget_schedule(self, schedule_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(dream_schedule_state).where(dream_schedule_state.c.schedule_id == schedule_id))


def _upsert_finished(dialect: str, row: dict[str, Any]) -> Any:
    """Insert the session, or move its ``finished_at`` forward (never back; ``created_at`` stays)."""
    return upsert_statement(
        dialect,
        session_index,
        row,
        ["session_id"],
        lambda old, new: new.finished_at > old.finished_at,
        update=["finished_at"],
    )


def _now() -> datetime:
    return datetime.now(UTC)
