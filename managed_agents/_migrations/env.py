"""Alembic environment: ``ensure_schema`` passes its (locked) connection; the command line a URL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context

from managed_agents._migrations import VERSION_TABLE, lock_for_migration, target_metadata

config = context.config


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata(),
        version_table=VERSION_TABLE,
        render_as_batch=True,  # ALTER TABLE on SQLite goes through table copies
        compare_type=True,
        **kwargs,
    )


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from managed_agents._settings import ManagedAgentsSettings

    return ManagedAgentsSettings().resolved_store_url()


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = sa.create_engine(_url())
    try:
        with engine.connect() as conn:
            lock_for_migration(conn)
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
