"""webhooks: endpoints (with their secrets), events and the delivery log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Created only when absent: earlier builds made these tables with ``create_all``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from managed_agents._migrations import table_exists

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    if not table_exists("webhook_endpoints"):
        op.create_table(
            "webhook_endpoints",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("url", sa.Text, nullable=False),
            sa.Column("name", sa.String(255)),
            sa.Column("description", sa.Text),
            sa.Column("enabled_events", sa.Text, nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("disabled_reason", sa.Text),
            sa.Column("secrets", sa.Text, nullable=False),
            sa.Column("retry_window_seconds", sa.Float, nullable=False),
            sa.Column("initial_retry_seconds", sa.Float, nullable=False),
            sa.Column("max_retry_seconds", sa.Float, nullable=False),
            sa.Column("created_at", TS, nullable=False),
            sa.Column("updated_at", TS, nullable=False),
            sa.Column("last_success_at", TS),
        )
    if not table_exists("webhook_events"):
        op.create_table(
            "webhook_events",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("type", sa.String(64), nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("created_at", TS, nullable=False),
        )
    if not table_exists("webhook_deliveries"):
        op.create_table(
            "webhook_deliveries",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("endpoint_id", sa.String(64), nullable=False),
            sa.Column("event_id", sa.String(64), nullable=False),
            sa.Column("attempt", sa.Integer, nullable=False),
            sa.Column("outcome", sa.String(16), nullable=False),
            sa.Column("status_code", sa.Integer),
            sa.Column("error", sa.Text),
            sa.Column("at", TS, nullable=False),
        )
        op.create_index("ix_webhook_deliveries_endpoint_id", "webhook_deliveries", ["endpoint_id"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_events")
    op.drop_table("webhook_endpoints")
