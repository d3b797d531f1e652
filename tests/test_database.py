"""Opening a SQLite store while another process is still creating the file."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from managed_agents._memory import MemoryService
from managed_agents._store import SessionStore


def _hold_first_write(path: Path, seconds: float) -> threading.Timer:
    """Another connection creates the file and keeps its first write open for ``seconds``.

    A connection that opens the file meanwhile holds a shared lock when it asks to switch the file
    to WAL; SQLite answers SQLITE_BUSY at once there (its busy handler would deadlock), which is
    how two workers starting on a new database used to fail with "database is locked".
    """
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE other_process (x)")
    writer.execute("INSERT INTO other_process VALUES (1)")

    def commit() -> None:
        writer.execute("COMMIT")
        writer.close()

    timer = threading.Timer(seconds, commit)
    timer.start()
    return timer


@pytest.mark.parametrize("open_store", [MemoryService, SessionStore], ids=["memory", "sessions"])
def test_store_opens_a_file_another_process_is_creating(tmp_path: Path, open_store: type) -> None:
    path = tmp_path / "new.sqlite"
    timer = _hold_first_write(path, 0.5)
    store = open_store(f"sqlite:///{path}")  # waits for the other writer instead of failing
    timer.join()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("SELECT x FROM other_process").scalar() == 1  # nothing lost
    if isinstance(store, MemoryService):
        assert store.create_store("after the wait").name == "after the wait"
    else:
        assert store.put_blob({"after": "the wait"})
