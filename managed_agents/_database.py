"""One way to open the project's database: every store (sessions, memory, webhooks) shares it.

SQLite needs per-connection settings. WAL lets a brain worker and a sandbox process read and write
the same file at once; the busy timeout makes a writer wait for another's lock instead of failing.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import sqlalchemy as sa

# How long a SQLite connection waits for another's lock before it reports "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_store_engine(url: str) -> sa.Engine:
    """An engine for a store URL (``sqlite:///file`` with WAL, or ``postgresql+psycopg://...``)."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", sqlite_pragmas)
    return engine


def sqlite_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """Settings every SQLite connection needs; the busy timeout first, so the rest may wait."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enter_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _enter_wal(cursor: Any) -> None:
    # Switching a fresh file to WAL takes an exclusive lock, and SQLite does not call the busy
    # handler when the connection already holds a shared lock (it would deadlock), so two
    # processes opening a new database together can see SQLITE_BUSY at once. Retry until the
    # busy timeout: the mode is stored in the file, so once one connection switches it, the
    # others' PRAGMA only reads it.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
