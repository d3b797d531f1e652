"""The memory tables (SQLAlchemy Core). Alembic migrations create them; these are what queries use.

``memories`` holds live memories only (deleting one removes its row); ``memory_versions`` is the
append-only history (rows change only by redaction) and outlives the memories. Paths compare by
code point on both databases (SQLite's BINARY collation, PostgreSQL's ``"C"``), so prefix ranges
and path ordering agree everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData()

# Sequence numbers: BIGSERIAL on PostgreSQL, the rowid (INTEGER PRIMARY KEY AUTOINCREMENT) on SQLite.
SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PathType = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite stores them naive, in UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: memory timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


memory_stores = sa.Table(
    "memory_stores",
    metadata,
    sa.Column("seq", SeqType, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("metadata_json", sa.Text, nullable=False),
    sa.Column("proposal_json", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("archived_at", UTCDateTime, nullable=True),
    sqlite_autoincrement=True,
)

memories = sa.Table(
    "memories",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("memory_store_id", sa.String(64), sa.ForeignKey("memory_stores.id"), nullable=False),
    sa.Column("path", PathType, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("content_sha256", sa.String(64), nullable=False),
    sa.Column("content_size_bytes", sa.Integer, nullable=False),
    sa.Column("memory_version_id", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("memory_store_id", "path", name="uq_memories_store_path"),
)

memory_versions = sa.Table(
    "memory_versions",
    metadata,
    sa.Column("seq", SeqType, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("memory_store_id", sa.String(64), sa.ForeignKey("memory_stores.id"), nullable=False),
    sa.Column("memory_id", sa.String(64), nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("path", PathType, nullable=True),
    sa.Column("content", sa.Text, nullable=True),
    sa.Column("content_sha256", sa.String(64), nullable=True),
    sa.Column("content_size_bytes", sa.Integer, nullable=True),
    sa.Column("created_by_json", sa.Text, nullable=True),
    # The actor's type and id, for the list filters (session_id, api_key_id, ...).
    sa.Column("actor_type", sa.String(32), nullable=True),
    sa.Column("actor_id", sa.String(255), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("redacted_at", UTCDateTime, nullable=True),
    sa.Column("redacted_by_json", sa.Text, nullable=True),
    sa.Index("ix_memory_versions_store_seq", "memory_store_id", "seq"),
    sa.Index("ix_memory_versions_memory_seq", "memory_id", "seq"),
    sa.Index("ix_memory_versions_store_actor", "memory_store_id", "actor_type", "actor_id"),
    sqlite_autoincrement=True,
)
