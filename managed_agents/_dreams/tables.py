"""Dreaming's tables (SQLAlchemy Core); migration 0003 creates them.

``dream_stage_results`` makes each pipeline stage idempotent: a stage writes its result (the
observations read from one session, the operations of one consolidation batch) before it reports
done, so a retried attempt, or a worker started after a crash, reuses it instead of calling the
model again. ``session_index`` records which sessions mounted which memory stores and when each
last finished a turn, which is how a dream schedule picks "the sessions since the last run".
``dream_schedule_state`` holds each schedule's high-water mark.
"""

from __future__ import annotations

import sqlalchemy as sa

from managed_agents._memory.tables import UTCDateTime

metadata = sa.MetaData()

dream_stage_results = sa.Table(
    "dream_stage_results",
    metadata,
    sa.Column("dream_id", sa.String(64), primary_key=True),
    sa.Column("stage_key", sa.String(300), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

session_index = sa.Table(
    "session_index",
    metadata,
    sa.Column("session_id", sa.String(255), primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # when a turn last ended (the session went idle) or the session ended
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Index("ix_session_index_finished", "finished_at"),
)

session_index_stores = sa.Table(
    "session_index_stores",
    metadata,
    sa.Column("memory_store_id", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(255), primary_key=True),
)

dream_schedule_state = sa.Table(
    "dream_schedule_state",
    metadata,
    sa.Column("schedule_id", sa.String(200), primary_key=True),
    sa.Column("memory_store_id", sa.String(64), nullable=False),
    # sessions finished after this instant are new for the schedule's next run
    sa.Column("since", UTCDateTime, nullable=True),
    sa.Column("last_dream_id", sa.String(64), nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
