"""dreams: per-stage results, the session index and dream schedules' high-water marks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dream_stage_results",
        sa.Column("dream_id", sa.String(64), primary_key=True),
        sa.Column("stage_key", sa.String(300), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "session_index",
        sa.Column("session_id", sa.String(255), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
    )
    op.create_index("ix_session_index_finished", "session_index", ["finished_at"])
    op.create_table(
        "session_index_stores",
        sa.Column("memory_store_id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(255), primary_key=True),
    )
    op.create_table(
        "dream_schedule_state",
        sa.Column("schedule_id", sa.String(200), primary_key=True),
        sa.Column("memory_store_id", sa.String(64), nullable=False),
        sa.Column("since", TS, nullable=True),
        sa.Column("last_dream_id", sa.String(64), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dream_schedule_state")
    op.drop_table("session_index_stores")
    op.drop_index("ix_session_index_finished", table_name="session_index")
    op.drop_table("session_index")
    op.drop_table("dream_stage_results")
