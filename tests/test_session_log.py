"""The session log's transcript, as model requests use it, on SQLite and PostgreSQL.

A model request writes its new user message, reads the transcript, calls the model and writes the
reply. A worker that wrote the reply the workflow accepted keeps that transcript and does not read
it again (the step's cost stays flat as the session grows); any other worker, or a stale copy,
reads it from the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from managed_agents._store import SessionStore, TranscriptGapError
from tests.test_memory_store import db_url, new_db, pg_cluster  # noqa: F401  (fixtures: SQLite and PostgreSQL)

SESSION = "sesn_log"


class StatementLog:
    """The SQL statements a store sends, to see which tables a call read."""

    def __init__(self, store: SessionStore) -> None:
        self.statements: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements.append(" ".join(statement.split()))

    def reads_of(self, table: str) -> list[str]:
        return [s for s in self.statements if s.upper().startswith("SELECT") and table in s]


@pytest.fixture
def stores(db_url: str) -> Iterator[tuple[SessionStore, SessionStore]]:  # noqa: F811
    """Two workers' stores on one database."""
    a, b = SessionStore(db_url), SessionStore(db_url)
    yield a, b
    a.close()
    b.close()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def reply(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def request(
    store: SessionStore,
    start: int,
    version: str | None,
    step: int,
    attempt: int,
    said: str | dict[str, Any],
    answer: str,
) -> tuple[list[dict[str, Any]], str]:
    """One model request's store calls, as the model activity makes them: the transcript it sent
    (from memory when it can) and the version it left."""
    new = [user(said) if isinstance(said, str) else said]
    sent = store.transcript_in_memory(SESSION, start, new, version)
    if sent is None:
        sent = store.read_for_request(SESSION, start, new)
    return sent, store.commit_request(SESSION, sent, len(new), reply(answer), step=step, attempt=attempt)


def test_the_worker_holding_the_accepted_transcript_reads_nothing(stores: tuple[SessionStore, SessionStore]) -> None:
    store, _ = stores
    start, version = 0, None
    for step in range(1, 6):
        sent, version = request(store, start, version, step, 1, f"q{step}", f"a{step}")
        start = len(sent) + 1
    store.put_tool_result(SESSION, "toolu_6", [{"type": "text", "text": "out"}], False, 1)
    ref = {"role": "user", "content": [{"type": "tool_result_ref", "tool_use_id": "toolu_6", "attempt": 1}]}
    log = StatementLog(store)
    sent, _ = request(store, start, version, 6, 1, ref, "a6")
    assert [s for s in log.statements if s.upper().startswith("SELECT")] == []
    # What it sent is what the database holds, tool result included.
    assert sent == store.read_transcript(SESSION, start + 1)
    assert sent[-1]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_6",
            "content": [{"type": "text", "text": "out"}],
            "is_error": False,
        }
    ]
    assert [m["content"][0].get("text") for m in sent[:-1]] == [t for s in range(1, 6) for t in (f"q{s}", f"a{s}")]


def test_a_tool_result_another_worker_stored_is_read_from_the_database(
    stores: tuple[SessionStore, SessionStore],
) -> None:
    a, b = stores
    sent, version = request(a, 0, None, 1, 1, "run it", "calling bash")
    # Attempt 1 ran on this worker and was given up on; attempt 2, on another worker, is accepted.
    a.put_tool_result(SESSION, "toolu_1", [{"type": "text", "text": "lost attempt"}], False, 1)
    b.put_tool_result(SESSION, "toolu_1", [{"type": "text", "text": "accepted attempt"}], False, 2)
    ref = {"role": "user", "content": [{"type": "tool_result_ref", "tool_use_id": "toolu_1", "attempt": 2}]}
    log = StatementLog(a)
    sent, _ = request(a, 2, version, 2, 1, ref, "done")
    assert log.reads_of("tool_results")
    assert sent[-1]["content"][0]["content"] == [{"type": "text", "text": "accepted attempt"}]


def test_a_worker_whose_attempt_lost_reads_the_winning_reply(stores: tuple[SessionStore, SessionStore]) -> None:
    """Worker A's attempt 1 wrote a reply, but Temporal gave up on it; worker B's attempt 2 is the
    one the workflow accepted. When A gets the next step, its copy (with A's reply) is stale."""
    a, b = stores
    _, v1 = request(a, 0, None, 1, 1, "hello", "reply from the lost attempt")
    _, v2 = request(b, 0, None, 1, 2, "hello", "reply the workflow accepted")
    assert v1 != v2
    log = StatementLog(a)
    sent, _ = request(a, 2, v2, 2, 1, "next", "ok")
    assert log.reads_of("transcript_messages"), "a stale copy must be read again"
    assert sent[1] == reply("reply the workflow accepted")
    # The lost attempt waking up late cannot overwrite the accepted reply either (fenced writes).
    a.write_messages(SESSION, 1, [reply("late write of attempt 1")], step=1, attempt=1)
    assert b.read_transcript(SESSION, 3)[1] == reply("reply the workflow accepted")


def test_a_failed_request_leaves_the_log_as_it_was(stores: tuple[SessionStore, SessionStore]) -> None:
    """Nothing is written before the model answers: a request that fails, then its retry, leave
    exactly one copy of the new message."""
    a, _ = stores
    _, version = request(a, 0, None, 1, 1, "hello", "hi")
    assert a.transcript_in_memory(SESSION, 2, [user("again")], version) is not None  # attempt 1: the call fails
    assert a.transcript_length(SESSION) == 2
    request(a, 2, version, 2, 2, "again", "ok")  # attempt 2
    assert a.read_transcript(SESSION, 4) == [user("hello"), reply("hi"), user("again"), reply("ok")]


def test_an_unknown_version_reads_from_the_database(stores: tuple[SessionStore, SessionStore]) -> None:
    """A history recorded before versions existed (None), or a restarted worker, reads it all."""
    a, b = stores
    _, version = request(a, 0, None, 1, 1, "hello", "hi")
    for store, v in ((a, None), (b, version)):
        assert store.transcript_in_memory(SESSION, 2, [user("again")], v) is None
        log = StatementLog(store)
        got = store.read_for_request(SESSION, 2, [user("again")])
        assert log.reads_of("transcript_messages")
        assert got == [user("hello"), reply("hi"), user("again")]


def test_a_gap_in_the_log_is_an_error_not_a_shorter_transcript(stores: tuple[SessionStore, SessionStore]) -> None:
    a, _ = stores
    assert a.transcript_in_memory(SESSION, 4, [user("hello")], "2.1") is None
    with pytest.raises(TranscriptGapError, match="expected 4 transcript messages"):
        a.read_for_request(SESSION, 4, [user("hello")])


def test_the_held_transcripts_are_bounded(db_url: str) -> None:  # noqa: F811
    store = SessionStore(db_url, cache_entries=10)
    try:
        versions = {}
        for n in range(6):  # six sessions of four messages: more than ten messages held
            sid = f"sesn_{n}"
            sent = store.read_for_request(sid, 0, [user(f"s{n}")])
            version = store.commit_request(sid, sent, 1, reply("a"), step=1, attempt=1)
            sent = store.transcript_in_memory(sid, 2, [user(f"s{n} again")], version)
            assert sent is not None
            versions[sid] = store.commit_request(sid, sent, 1, reply("b"), step=2, attempt=1)
        held = [sid for sid, v in versions.items() if store.transcript_in_memory(sid, 4, [user("3")], v) is not None]
        # The two most recent sessions (8 messages) are still held; the four before them are read back.
        assert held == ["sesn_4", "sesn_5"]
        assert store.read_for_request("sesn_0", 4, [user("3")])[0] == user("s0")
    finally:
        store.close()
