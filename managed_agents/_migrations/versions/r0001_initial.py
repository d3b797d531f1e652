"""initial schema: the session store and the memory stores

Revision ID: 0001
Revises:
Create Date: 2026-11-01

The four session-store tables predate the migrations (``metadata.create_all`` made them), so they are
created only when absent: a database made by an older version is adopted as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from managed_agents._migrations import table_exists

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PATH = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # --- the session store (managed_agents/store.py) ---
    if not table_exists("agent_definitions"):
        op.create_table(
            "agent_definitions",
            sa.Column("ref", sa.String(64), primary_key=True),
            sa.Column("body", sa.Text, nullable=False),
        )
    if not table_exists("transcript_messages"):
        op.create_table(
            "transcript_messages",
            sa.Column("session_id", sa.String(255), primary_key=True),
            sa.Column("idx", sa.Integer, primary_key=True),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("content", sa.Text, nullable=False),
            sa.Column("sha", sa.String(64), nullable=False),
            sa.Column("step", sa.Integer, nullable=False),
            sa.Column("attempt", sa.Integer, nullable=False),
        )
    if not table_exists("tool_results"):
        op.create_table(
            "tool_results",
            sa.Column("session_id", sa.String(255), primary_key=True),
            sa.Column("tool_use_id", sa.String(255), primary_key=True),
            sa.Column("content", sa.Text, nullable=False),
            sa.Column("is_error", sa.Boolean, nullable=False),
            sa.Column("attempt", sa.Integer, nullable=False),
        )
    if not table_exists("blobs"):
        op.create_table(
            "blobs",
            sa.Column("ref", sa.String(64), primary_key=True),
            sa.Column("body", sa.Text, nullable=False),
        )

    # --- memory stores (managed_agents/memory/tables.py) ---
    op.create_table(
        "memory_stores",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("metadata_json", sa.Text, nullable=False),
        sa.Column("proposal_json", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("archived_at", TS, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "memories",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("memory_store_id", sa.String(64), sa.ForeignKey("memory_stores.id"), nullable=False),
        sa.Column("path", PATH, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("content_size_bytes", sa.Integer, nullable=False),
        sa.Column("memory_version_id", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("memory_store_id", "path", name="uq_memories_store_path"),
    )
    op.create_table(
        "memory_versions",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("memory_store_id", sa.String(64), sa.ForeignKey("memory_stores.id"), nullable=False),
        sa.Column("memory_id", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("path", PATH, nullable=True),
        sa.Column("content", sa.Text, nullable=True),
        sa.Column("content_sha256", sa.String(64), nullable=True),
        sa.Column("content_size_bytes", sa.Integer, nullable=True),
        sa.Column("created_by_json", sa.Text, nullable=True),
        sa.Column("actor_type", sa.String(32), nullable=True),
        sa.Column("actor_id", sa.String(255), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("redacted_at", TS, nullable=True),
        sa.Column("redacted_by_json", sa.Text, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_memory_versions_store_seq", "memory_versions", ["memory_store_id", "seq"])
    op.create_index("ix_memory_versions_memory_seq", "memory_versions", ["memory_id", "seq"])
    op.create_index("ix_memory_versions_store_actor", "memory_versions", ["memory_store_id", "actor_type", "actor_id"])


def downgrade() -> None:
    op.drop_table("memory_versions")
    op.drop_table("memories")
    op.drop_table("memory_stores")
    for table in ("blobs", "tool_results", "transcript_messages", "agent_definitions"):
        op.drop_table(table)
