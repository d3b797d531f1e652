"""The session log store: transcript messages, tool results and agent definitions.

Temporal history carries control flow and small references; the bodies a model request needs live
here, keyed by session and position. SQLite (a file) by default, PostgreSQL when workers on several
hosts share it: one SQLAlchemy URL chooses.

Writes are idempotent and fenced: every row records the ``(step, attempt)`` that wrote it and is
only replaced by a write from the same or a later step/attempt. An activity attempt that Temporal
gave up on (its worker was presumed lost) and that wakes up late can therefore never overwrite what
a later attempt committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from managed_agents._content_hash import canonical_json, sha256
from managed_agents._database import create_store_engine
from managed_agents._migrations import ensure_schema

T = TypeVar("T")

metadata = sa.MetaData()

agent_definitions = sa.Table(
    "agent_definitions",
    metadata,
    sa.Column("ref", sa.String(64), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)

transcript_messages = sa.Table(
    "transcript_messages",
    metadata,
    sa.Column("session_id", sa.String(255), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("sha", sa.String(64), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
)

tool_results = sa.Table(
    "tool_results",
    metadata,
    sa.Column("session_id", sa.String(255), primary_key=True),
    sa.Column("tool_use_id", sa.String(255), primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("is_error", sa.Boolean, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
)


blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("ref", sa.String(64), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)


#: tool results held in memory for the model request that follows them (one per parallel tool call;
#: a result is let go once a request took it, so this bounds only results no request came for)
HELD_TOOL_RESULTS = 256


class TranscriptGapError(RuntimeError):
    """The store lacks a message the workflow says is committed (wrong store URL for this worker?)."""


class MissingToolResultError(RuntimeError):
    """A tool result the workflow references was never stored (the sandbox cannot reach this store?)."""


@dataclass
class _KnownTranscript:
    version: str
    messages: list[dict[str, Any]]


class SessionStore:
    """Synchronous store; activities call it through ``call`` (in place on SQLite, else a thread)."""

    def __init__(self, url: str, *, cache_entries: int = 50_000) -> None:
        self.url = url
        self.engine: Engine = create_store_engine(url)
        ensure_schema(self.engine)  # Alembic migrations (managed_agents/migrations), idempotent
        # Parsed message bodies by content hash: a step re-reads only what it has not seen.
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_entries = cache_entries
        self._upserts: dict[tuple[str, ...], Any] = {}  # upsert statements by table and key, built on first use
        # Whole transcripts as this process last extended them, by session, with the version (the
        # model request's step and attempt) that wrote their end: a step whose transcript is that
        # version reads nothing from the database (see ``transcript_in_memory``).
        self._transcripts: OrderedDict[str, _KnownTranscript] = OrderedDict()
        self._held_messages = 0  # messages in _transcripts, bounded by cache_entries
        # Tool results this process stored, by (session, tool_use_id, attempt), until the next
        # model request takes them into its transcript (see ``transcript_in_memory``).
        self._held_results: OrderedDict[tuple[str, str, int | None], dict[str, Any]] = OrderedDict()
        # Model requests of this process waiting for a session's tool results (``tool_result_waiter``).
        self._result_waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a short call on this store from an activity (see ``call_store``)."""
        return await call_store(self.engine, fn, *args, **kwargs)

    # --- agent definitions ----------------------------------------------------------------------

    def put_agent(self, agent: dict[str, Any]) -> str:
        body = canonical_json(agent)
        ref = sha256(body)
        with self.engine.begin() as conn:
            conn.execute(self._upsert(agent_definitions, ["ref", "body"], ["ref"]), {"ref": ref, "body": body})
        return ref

    def get_agent(self, ref: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            body = conn.execute(
                sa.select(agent_definitions.c.body).where(agent_definitions.c.ref == ref)
            ).scalar_one_or_none()
        if body is None:
            raise KeyError(f"agent definition {ref} is not in the store at {self._safe_url()}")
        loaded: dict[str, Any] = json.loads(body)
        return loaded

    # --- content-addressed blobs (e.g. deliverables shown to a grader) ---------------------------

    def put_blob(self, value: Any) -> str:
        body = canonical_json(value)
        ref = sha256(body)
        with self.engine.begin() as conn:
            conn.execute(self._upsert(blobs, ["ref", "body"], ["ref"]), {"ref": ref, "body": body})
        return ref

    def get_blob(self, ref: str) -> Any:
        with self.engine.connect() as conn:
            body = conn.execute(sa.select(blobs.c.body).where(blobs.c.ref == ref)).scalar_one_or_none()
        if body is None:
            raise KeyError(f"blob {ref} is not in the store at {self._safe_url()}")
        return json.loads(body)

    # --- tool results ---------------------------------------------------------------------------

    def put_tool_result(
        self, session_id: str, tool_use_id: str, content: list[dict[str, Any]], is_error: bool, attempt: int
    ) -> None:
        row = {
            "session_id": session_id,
            "tool_use_id": tool_use_id,
            "content": canonical_json(content),
            "is_error": is_error,
            "attempt": attempt,
        }
        with self.engine.begin() as conn:
            conn.execute(
                self._upsert(tool_results, row, ["session_id", "tool_use_id"], lambda t, new: new.attempt >= t.attempt),
                row,
            )
        block = {"type": "tool_result", "tool_use_id": tool_use_id, "content": content, "is_error": is_error}
        with self._lock:
            # The next model request of this session reads it from here, if it runs in this process.
            self._held_results[(session_id, tool_use_id, attempt)] = block
            while len(self._held_results) > HELD_TOOL_RESULTS:
                self._held_results.popitem(last=False)
            waiters = list(self._result_waiters.get(session_id, ()))
        for loop, stored in waiters:  # (this may run in a thread: the waiter's loop sets its event)
            loop.call_soon_threadsafe(stored.set)

    @contextlib.contextmanager
    def tool_result_waiter(self, session_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever this process stores a tool result of ``session_id``; register it
        before looking for a result, so one stored in between is not missed."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._result_waiters.setdefault(session_id, []).append(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiters = self._result_waiters[session_id]
                waiters.remove(entry)
                if not waiters:
                    del self._result_waiters[session_id]

    def held_tool_result_attempts(self, session_id: str, tool_use_ids: Iterable[str]) -> dict[str, int]:
        """The newest attempt of each of these tool results that this process stored and still holds."""
        wanted = set(tool_use_ids)
        found: dict[str, int] = {}
        with self._lock:
            for held_session, tool_use_id, attempt in self._held_results:
                if held_session == session_id and tool_use_id in wanted and attempt is not None:
                    found[tool_use_id] = max(attempt, found.get(tool_use_id, attempt))
        return found

    def stored_tool_result_attempts(self, session_id: str, tool_use_ids: list[str]) -> dict[str, int]:
        """Which attempt wrote each of these tool results in the store (absent: none stored yet)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(tool_results.c.tool_use_id, tool_results.c.attempt).where(
                    tool_results.c.session_id == session_id, tool_results.c.tool_use_id.in_(tool_use_ids)
                )
            ).all()
        return {r.tool_use_id: int(r.attempt) for r in rows}

    def _tool_results(self, conn: sa.Connection, session_id: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        rows = conn.execute(
            sa.select(tool_results.c.tool_use_id, tool_results.c.content, tool_results.c.is_error).where(
                tool_results.c.session_id == session_id, tool_results.c.tool_use_id.in_(ids)
            )
        ).all()
        return {
            r.tool_use_id: {
                "type": "tool_result",
                "tool_use_id": r.tool_use_id,
                "content": json.loads(r.content),
                "is_error": bool(r.is_error),
            }
            for r in rows
        }

    # --- transcript -----------------------------------------------------------------------------

    def resolve_refs(self, session_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """Replace ``tool_result_ref`` blocks with the stored tool results."""
        with self.engine.connect() as conn:
            return self._resolve_refs(conn, session_id, message)

    def _resolve_refs(self, conn: sa.Connection, session_id: str, message: dict[str, Any]) -> dict[str, Any]:
        ref_ids = [b["tool_use_id"] for b in message["content"] if b.get("type") == "tool_result_ref"]
        if not ref_ids:
            return message
        found = self._tool_results(conn, session_id, ref_ids)
        missing = [i for i in ref_ids if i not in found]
        if missing:
            raise MissingToolResultError(
                f"session {session_id}: no stored result for tool_use_id {', '.join(missing)} "
                f"in {self._safe_url()}; sandbox workers must share the brain's store URL"
            )
        content = [found[b["tool_use_id"]] if b.get("type") == "tool_result_ref" else b for b in message["content"]]
        return {"role": message["role"], "content": content}

    def write_messages(
        self, session_id: str, start: int, messages: list[dict[str, Any]], *, step: int, attempt: int
    ) -> None:
        if not messages:
            return
        with self.engine.begin() as conn:
            self._write_messages(conn, session_id, start, messages, step=step, attempt=attempt)

    def _write_messages(
        self,
        conn: sa.Connection,
        session_id: str,
        start: int,
        messages: list[dict[str, Any]],
        *,
        step: int,
        attempt: int,
    ) -> None:
        rows = []
        for offset, message in enumerate(messages):
            body = canonical_json(message["content"])
            rows.append(
                {
                    "session_id": session_id,
                    "idx": start + offset,
                    "role": message["role"],
                    "content": body,
                    "sha": sha256(message["role"] + body),
                    "step": step,
                    "attempt": attempt,
                }
            )
        if not rows:
            return
        # A later step, or a later attempt of the same step, overwrites; an older one never does.
        statement = self._upsert(
            transcript_messages,
            rows[0],
            ["session_id", "idx"],
            lambda t, new: sa.or_(new.step > t.step, sa.and_(new.step == t.step, new.attempt >= t.attempt)),
        )
        conn.execute(statement, rows)

    # A model request's transcript: ``transcript_in_memory`` (or ``read_for_request``) before the
    # call, ``commit_request`` after it. Nothing is written before the call: a request that fails
    # leaves the log as it was, and its retry sends the same new messages again.

    def transcript_in_memory(
        self, session_id: str, start: int, new_messages: list[dict[str, Any]], version: str | None
    ) -> list[dict[str, Any]] | None:
        """The transcript ``[0, start)`` plus ``new_messages`` (tool results resolved), from what this
        process holds, or None when the database must be read (``read_for_request``).

        ``version`` names the request that wrote the end of ``[0, start)``, as the workflow got it
        from that request's result. If this process wrote it, it still holds exactly that
        transcript: the log's writes are fenced, so what a request the workflow accepted wrote is
        never overwritten. Tool results are held by the attempt that wrote them, which the workflow's
        references name. Nothing here touches the database.
        """
        with self._lock:
            known = self._transcripts.get(session_id)
            if version is None or known is None or known.version != version or len(known.messages) != start:
                return None
            resolved = []
            for message in new_messages:
                blocks = []
                for block in message["content"]:
                    if block.get("type") == "tool_result_ref":
                        # Taken: from here on it is part of the transcript (a retry reads the store).
                        held = self._held_results.pop((session_id, block["tool_use_id"], block.get("attempt")), None)
                        if held is None:
                            return None
                        block = held
                    blocks.append(block)
                resolved.append({"role": message["role"], "content": blocks})
            return known.messages + resolved

    def read_for_request(self, session_id: str, start: int, new_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """As ``transcript_in_memory``, from the database (another worker wrote it, or this one restarted)."""
        with self.engine.connect() as conn:
            resolved = [self._resolve_refs(conn, session_id, m) for m in new_messages]
        return self.read_transcript(session_id, start) + resolved

    def commit_request(
        self,
        session_id: str,
        sent: list[dict[str, Any]],
        new_count: int,
        reply: dict[str, Any],
        *,
        step: int,
        attempt: int,
    ) -> str:
        """Write a request's new messages (the last ``new_count`` of ``sent``) and the model's reply,
        in one transaction; hold the result and return its version for the workflow to hand on."""
        start = len(sent) - new_count
        with self.engine.begin() as conn:
            self._write_messages(conn, session_id, start, [*sent[start:], reply], step=step, attempt=attempt)
        version = f"{step}.{attempt}"
        with self._lock:
            previous = self._transcripts.pop(session_id, None)
            self._held_messages -= len(previous.messages) if previous else 0
            self._transcripts[session_id] = _KnownTranscript(version=version, messages=[*sent, reply])
            self._held_messages += len(sent) + 1
            while self._held_messages > self._cache_entries and len(self._transcripts) > 1:
                _, dropped = self._transcripts.popitem(last=False)
                self._held_messages -= len(dropped.messages)
        return version

    def read_transcript(self, session_id: str, length: int) -> list[dict[str, Any]]:
        """Messages ``[0, length)``; bodies come from the in-process cache when their hash matches."""
        with self.engine.connect() as conn:
            index = conn.execute(
                sa.select(transcript_messages.c.idx, transcript_messages.c.sha)
                .where(transcript_messages.c.session_id == session_id, transcript_messages.c.idx < length)
                .order_by(transcript_messages.c.idx)
            ).all()
            if len(index) != length or any(row.idx != i for i, row in enumerate(index)):
                raise TranscriptGapError(
                    f"session {session_id}: expected {length} transcript messages in {self._safe_url()}, "
                    f"found {len(index)}"
                )
            with self._lock:
                missing = [row.idx for row in index if row.sha not in self._cache]
            if missing:
                rows = conn.execute(
                    sa.select(
                        transcript_messages.c.idx,
                        transcript_messages.c.role,
                        transcript_messages.c.content,
                        transcript_messages.c.sha,
                    ).where(transcript_messages.c.session_id == session_id, transcript_messages.c.idx.in_(missing))
                ).all()
                with self._lock:
                    for r in rows:
                        self._remember(r.sha, {"role": r.role, "content": json.loads(r.content)})
        with self._lock:
            out = []
            for row in index:
                message = self._cache[row.sha]
                self._cache.move_to_end(row.sha)
                out.append(message)
        return out

    def transcript_length(self, session_id: str) -> int:
        """How many transcript messages the store holds for ``session_id`` (0: none, or unknown)."""
        with self.engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).where(transcript_messages.c.session_id == session_id)
            ).scalar_one()
        return int(count)

    def iter_transcript(self, session_id: str, *, batch: int = 200) -> Iterator[dict[str, Any]]:
        """Every stored message of a session (finished ones too), tool results resolved, read in
        batches so a long session is never held in memory twice."""
        start = 0
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(transcript_messages.c.idx, transcript_messages.c.role, transcript_messages.c.content)
                    .where(transcript_messages.c.session_id == session_id, transcript_messages.c.idx >= start)
                    .order_by(transcript_messages.c.idx)
                    .limit(batch)
                ).all()
            if not rows:
                return
            for r in rows:
                message = {"role": r.role, "content": json.loads(r.content)}
                try:
                    yield self.resolve_refs(session_id, message)
                except MissingToolResultError:  # a result lost with its sandbox: read the rest anyway
                    yield message
            start = rows[-1].idx + 1

    # --- helpers ---------------------------------------------------------------------------------

    def _remember(self, sha: str, message: dict[str, Any]) -> None:
        self._cache[sha] = message
        while len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)

    def _upsert(self, table: sa.Table, columns: Iterable[str], keys: list[str], when: Any = None) -> Any:
        # Built once per table and key (each table has one upsert form): constructing an upsert
        # costs more than running it on SQLite.
        cache_key = (table.name, *keys)
        statement = self._upserts.get(cache_key)
        if statement is None:
            statement = upsert_statement(self.engine.dialect.name, table, columns, keys, when)
            self._upserts[cache_key] = statement
        return statement

    def _safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)


async def call_store(engine: Engine, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a short database call from an activity: in place on SQLite (a local file; a write is a
    fraction of a millisecond, less than handing it to a thread in a busy worker), in a thread on
    PostgreSQL (network round trips must not hold up the worker's event loop)."""
    if engine.dialect.name == "sqlite":
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)


def upsert_statement(
    dialect: str,
    table: sa.Table,
    columns: Iterable[str],
    keys: list[str],
    when: Any,
    *,
    update: Iterable[str] | None = None,
) -> Any:
    """INSERT a row of ``columns``; on a ``keys`` conflict, update the other columns where
    ``when(old, new)`` holds (``when=None``: keep the existing row). One statement on SQLite and
    PostgreSQL alike. ``update`` narrows which columns a conflict updates (default: all but the
    keys). It carries no values: execute it with a row, or a list of rows, as parameters, so one
    compiled statement serves every call."""
    insert: Any
    if dialect == "sqlite":
        insert = sqlite.insert(table)
    elif dialect == "postgresql":
        insert = postgresql.insert(table)
    else:  # pragma: no cover - guarded by config validation
        raise ValueError(f"unsupported database dialect {dialect!r}: use sqlite or postgresql")
    updates = {k: insert.excluded[k] for k in (columns if update is None else update) if k not in keys}
    if not updates or when is None:
        return insert.on_conflict_do_nothing(index_elements=keys)
    return insert.on_conflict_do_update(index_elements=keys, set_=updates, where=when(table.c, insert.excluded))
