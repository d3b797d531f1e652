"""Schema migrations (Alembic) of the project's database: the session store and the memory stores.

Workers and services call :func:`ensure_schema` when they start: it upgrades the database to the
newest revision, idempotently, and is safe when several processes start on the same fresh database
at once (a PostgreSQL advisory lock, or SQLite's ``BEGIN IMMEDIATE`` write lock, is held while the
migrations run; whoever comes second finds the schema current and does nothing).

Developers write a new revision with Alembic's own commands, run through this package so the
configuration is the same, e.g.::

    python -m managed_agents._migrations revision --autogenerate -m "add a column"
    python -m managed_agents._migrations current

(the database is ``$MANAGED_AGENTS_STORE_URL``, or the default SQLite file, or ``--url URL``).
"""

from __future__ import annotations

import weakref
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent
# Not Alembic's default name: the database may be shared with another application's migrations.
VERSION_TABLE = "managed_agents_alembic_version"
# Key of the PostgreSQL advisory lock held while migrating ("ma_schem" in ASCII).
ADVISORY_LOCK_KEY = 0x6D615F736368656D

_script: ScriptDirectory | None = None
_current: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    global _script
    if _script is None:
        _script = ScriptDirectory.from_config(alembic_config())
    head = _script.get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def table_exists(table: str) -> bool:
    """In a revision: whether ``table`` is already there (tables ``create_all`` made before the
    migrations existed are adopted, not recreated). False when rendering SQL offline."""
    from alembic import op

    if op.get_context().as_sql:
        return False
    return sa.inspect(op.get_bind()).has_table(table)


def target_metadata() -> list[sa.MetaData]:
    """The table definitions the migrations must produce (for ``--autogenerate`` and the tests)."""
    from managed_agents._dreams.tables import metadata as dream_metadata
    from managed_agents._memory.tables import metadata as memory_metadata
    from managed_agents._store import metadata as session_metadata
    from managed_agents._webhooks.service import metadata as webhook_metadata

    return [session_metadata, memory_metadata, webhook_metadata, dream_metadata]


def lock_for_migration(connection: sa.Connection) -> None:
    """Begin the connection's transaction holding the database-wide migration lock."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        # The write lock: a second process waits here (busy timeout) until the first commits.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    else:  # pragma: no cover - guarded by config validation
        raise ValueError(f"unsupported database dialect {dialect!r}: use sqlite or postgresql")


def ensure_schema(engine: sa.Engine) -> None:
    """Upgrade the database behind ``engine`` to the newest revision (a no-op when it is current)."""
    if engine in _current:
        return
    head = head_revision()
    with engine.connect() as conn:
        up_to_date = current_revision(conn) == head
        conn.rollback()
    if not up_to_date:
        with engine.connect() as conn:
            lock_for_migration(conn)
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
    _current.add(engine)
