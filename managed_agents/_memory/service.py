"""The memory service: memory stores, memories and their versions, as Managed Agents has them.

Synchronous (activities call it through ``asyncio.to_thread``); SQLite or PostgreSQL by URL, or on
an existing SQLAlchemy engine (e.g. ``SessionStore.engine``). The schema comes from the Alembic
migrations (:func:`managed_agents._migrations.ensure_schema`), applied when the service starts.

Concurrency: every write runs in one transaction that first locks the store's row (PostgreSQL
``SELECT ... FOR UPDATE``, or ``FOR SHARE`` when only an existing memory's content changes, then the
memory's row ``FOR UPDATE``); on SQLite writes take the database write lock up front with
``BEGIN IMMEDIATE``. So two writers of the same memory are serialised: without a precondition both
changes are kept as versions (the last one is the head), and with a ``content_sha256``
precondition the second one fails with :class:`MemoryPreconditionFailed` instead of overwriting.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from managed_agents._database import create_store_engine
from managed_agents._memory import rules
from managed_agents._memory.errors import (
    InvalidMemoryRequest,
    MemoryLimitExceeded,
    MemoryNotFound,
    MemoryPathConflict,
    MemoryPreconditionFailed,
    MemoryStoreArchived,
    MemoryStoreNotFound,
    MemoryVersionNotFound,
    MemoryVersionNotRedactable,
)
from managed_agents._memory.models import (
    Actor,
    ActorAdapter,
    ApiActor,
    DeletedMemory,
    DeletedMemoryStore,
    Memory,
    MemoryPrefix,
    MemoryStore,
    MemoryStoreProposal,
    MemoryVersion,
    Page,
    Precondition,
    ServiceAccountActor,
    SessionActor,
    SnapshotEntry,
    UserActor,
)
from managed_agents._memory.tables import memories, memory_stores, memory_versions
from managed_agents._migrations import ensure_schema

ActorLike = SessionActor | ApiActor | UserActor | ServiceAccountActor | Mapping[str, Any]
PreconditionLike = Precondition | Mapping[str, Any]
Lock = Literal["share", "update"] | None

_ACTOR_ID_FIELD = {
    "session_actor": "session_id",
    "api_actor": "api_key_id",
    "user_actor": "user_id",
    "service_account_actor": "service_account_id",
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryService:
    """Memory stores, memories and memory versions (``client.beta.memory_stores.*`` semantics)."""

    def __init__(self, engine_or_url: sa.Engine | str) -> None:
        if isinstance(engine_or_url, str):
            self.engine = create_store_engine(engine_or_url)
            self._owns_engine = True
        else:
            self.engine = engine_or_url
            self._owns_engine = False
        dialect = self.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database dialect {dialect!r}: use sqlite or postgresql")
        self._sqlite = dialect == "sqlite"
        ensure_schema(self.engine)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # --- transactions ---------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            if self._sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, before reading anything
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            # One snapshot for the whole read (a list reads ids, then rows).
            if self._sqlite:
                conn.exec_driver_sql("BEGIN")
            else:
                conn.execution_options(isolation_level="REPEATABLE READ")
            try:
                yield conn
            finally:
                conn.rollback()

    def _store_row(self, conn: sa.Connection, store_id: str, lock: Lock = None) -> sa.Row[Any]:
        query = sa.select(memory_stores).where(memory_stores.c.id == store_id)
        if lock is not None:
            query = query.with_for_update(read=lock == "share")
        row = conn.execute(query).first()
        if row is None:
            raise MemoryStoreNotFound(store_id)
        return row

    def _writable_store(self, conn: sa.Connection, store_id: str, lock: Lock) -> sa.Row[Any]:
        row = self._store_row(conn, store_id, lock)
        if row.archived_at is not None:
            raise MemoryStoreArchived(store_id)
        return row

    # --- memory stores --------------------------------------------------------------------------

    def create_store(
        self,
        name: str,
        *,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        proposal: MemoryStoreProposal | Mapping[str, Any] | None = None,
    ) -> MemoryStore:
        name = rules.validate_name(name)
        description = rules.validate_description(description)
        meta = rules.validate_metadata(metadata or {})
        prop = _proposal(proposal)
        with self._write() as conn:
            return self._insert_store(conn, name, description, meta, prop)

    def _insert_store(
        self,
        conn: sa.Connection,
        name: str,
        description: str,
        metadata: dict[str, str],
        proposal: MemoryStoreProposal | None,
    ) -> MemoryStore:
        now = _now()
        store_id = new_id("memstore")
        row = {
            "id": store_id,
            "name": name,
            "description": description,
            "metadata_json": json.dumps(metadata, sort_keys=True),
            "proposal_json": proposal.model_dump_json() if proposal else None,
            "created_at": now,
            "updated_at": now,
            "archived_at": None,
        }
        conn.execute(sa.insert(memory_stores).values(**row))
        return self._store_row_model(self._store_row(conn, store_id))

    def retrieve_store(self, store_id: str) -> MemoryStore:
        with self._read() as conn:
            return self._store_row_model(self._store_row(conn, store_id))

    def update_store(
        self,
        store_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, str | None] | None = None,
    ) -> MemoryStore:
        """Change name, description (``""`` clears it) and/or metadata (a patch: ``None`` removes a key)."""
        if name is not None:
            name = rules.validate_name(name)
        if description is not None:
            description = rules.validate_description(description)
        with self._write() as conn:
            row = self._writable_store(conn, store_id, "update")
            current = self._store_row_model(row)
            values: dict[str, Any] = {}
            if name is not None and name != current.name:
                values["name"] = name
            if description is not None and description != current.description:
                values["description"] = description
            if metadata is not None:
                merged = rules.apply_metadata_patch(current.metadata, metadata)
                if merged != current.metadata:
                    values["metadata_json"] = json.dumps(merged, sort_keys=True)
            if values:
                values["updated_at"] = _now()
                conn.execute(sa.update(memory_stores).where(memory_stores.c.id == store_id).values(**values))
                row = self._store_row(conn, store_id)
            return self._store_row_model(row)

    def set_store_proposal(
        self, store_id: str, proposal: MemoryStoreProposal | Mapping[str, Any] | None
    ) -> MemoryStore:
        """Extension for Dreaming: set or clear ``proposal`` (allowed on archived stores too)."""
        prop = _proposal(proposal)
        with self._write() as conn:
            self._store_row(conn, store_id, "update")
            conn.execute(
                sa.update(memory_stores)
                .where(memory_stores.c.id == store_id)
                .values(proposal_json=prop.model_dump_json() if prop else None, updated_at=_now())
            )
            return self._store_row_model(self._store_row(conn, store_id))

    def list_stores(
        self,
        *,
        include_archived: bool = False,
        limit: int = 20,
        page: str | None = None,
        created_at_gte: datetime | None = None,
        created_at_lte: datetime | None = None,
    ) -> Page[MemoryStore]:
        """Newest first."""
        limit = rules.validate_limit(limit)
        query = sa.select(memory_stores).order_by(memory_stores.c.seq.desc()).limit(limit + 1)
        if not include_archived:
            query = query.where(memory_stores.c.archived_at.is_(None))
        if created_at_gte is not None:
            query = query.where(memory_stores.c.created_at >= _aware(created_at_gte, "created_at[gte]"))
        if created_at_lte is not None:
            query = query.where(memory_stores.c.created_at <= _aware(created_at_lte, "created_at[lte]"))
        if page is not None:
            query = query.where(memory_stores.c.seq < _cursor_int(page, "before"))
        with self._read() as conn:
            rows = conn.execute(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page[MemoryStore](
            data=[self._store_row_model(r) for r in rows],
            next_page=_encode_cursor({"before": rows[-1].seq}) if more else None,
        )

    def archive_store(self, store_id: str) -> MemoryStore:
        """Archive (irreversible; archiving an archived store changes nothing)."""
        with self._write() as conn:
            row = self._store_row(conn, store_id, "update")
            if row.archived_at is None:
                now = _now()
                conn.execute(
                    sa.update(memory_stores)
                    .where(memory_stores.c.id == store_id)
                    .values(archived_at=now, updated_at=now)
                )
                row = self._store_row(conn, store_id)
            return self._store_row_model(row)

    def delete_store(self, store_id: str) -> DeletedMemoryStore:
        """Delete the store with all its memories and versions."""
        with self._write() as conn:
            self._store_row(conn, store_id, "update")
            conn.execute(sa.delete(memory_versions).where(memory_versions.c.memory_store_id == store_id))
            conn.execute(sa.delete(memories).where(memories.c.memory_store_id == store_id))
            conn.execute(sa.delete(memory_stores).where(memory_stores.c.id == store_id))
        return DeletedMemoryStore(id=store_id)

    # --- memories -------------------------------------------------------------------------------

    def create_memory(self, store_id: str, path: str, content: str, *, actor: ActorLike, view: str = "basic") -> Memory:
        path = rules.validate_path(path)
        content, sha, size = rules.validate_content(content)
        who = _actor(actor)
        view = rules.validate_view(view)
        with self._write() as conn:
            self._writable_store(conn, store_id, "update")
            existing = self._memory_row(conn, store_id, path, lock=True, required=False)
            if existing is not None:
                raise MemoryPathConflict(path, existing.id)
            self._check_room(conn, store_id, 1)
            row = self._insert_memory(conn, store_id, path, content, sha, size, who, _now())
            return _memory_model(row, view)

    def retrieve_memory(self, store_id: str, memory: str, *, view: str = "full") -> Memory:
        """``memory`` is a ``mem_...`` id or (extension) a ``/path``."""
        view = rules.validate_view(view)
        with self._read() as conn:
            self._store_row(conn, store_id)
            row = self._memory_row(conn, store_id, memory)
            return _memory_model(row, view)

    def update_memory(
        self,
        store_id: str,
        memory: str,
        *,
        actor: ActorLike,
        content: str | None = None,
        path: str | None = None,
        precondition: PreconditionLike | None = None,
        view: str = "basic",
    ) -> Memory:
        """Change content and/or path (a rename keeps the id).

        An update that changes nothing (same content and path) is a no-op: no version is written and
        the memory is returned, whatever the precondition says (the state asked for already holds, so
        nothing can be lost, and a retried update is idempotent). Otherwise a ``content_sha256``
        precondition that differs from the current content's hash raises
        :class:`MemoryPreconditionFailed` and nothing is written.
        """
        new_path = rules.validate_path(path) if path is not None else None
        validated = rules.validate_content(content) if content is not None else None
        expected = _precondition(precondition)
        who = _actor(actor)
        view = rules.validate_view(view)
        with self._write() as conn:
            # A rename can collide with another path: serialise with creations (store row FOR UPDATE).
            self._writable_store(conn, store_id, "update" if new_path is not None else "share")
            row = self._memory_row(conn, store_id, memory, lock=True)
            return self._apply_update(conn, store_id, row, validated, new_path, expected, who, view)

    def write_memory(
        self,
        store_id: str,
        path: str,
        content: str,
        actor: ActorLike,
        precondition: PreconditionLike | None = None,
        *,
        view: str = "basic",
    ) -> Memory:
        """Create or update the memory at ``path`` (what a write through a mount does).

        With a precondition the memory must exist and have that hash (a missing memory fails the
        precondition too); an unchanged content is a no-op, as in :meth:`update_memory`.
        """
        path = rules.validate_path(path)
        validated = rules.validate_content(content)
        expected = _precondition(precondition)
        who = _actor(actor)
        view = rules.validate_view(view)
        with self._write() as conn:
            self._writable_store(conn, store_id, "update")
            row = self._memory_row(conn, store_id, path, lock=True, required=False)
            if row is None:
                if expected is not None:
                    raise MemoryPreconditionFailed(path, expected, None)
                self._check_room(conn, store_id, 1)
                created = self._insert_memory(conn, store_id, path, *validated, who, _now())
                return _memory_model(created, view)
            return self._apply_update(conn, store_id, row, validated, None, expected, who, view)

    def delete_memory(
        self,
        store_id: str,
        memory: str,
        *,
        actor: ActorLike,
        expected_content_sha256: str | None = None,
    ) -> DeletedMemory:
        """Delete a memory (allowed on archived stores); a ``deleted`` version records it."""
        expected = (
            rules.validate_sha256(expected_content_sha256, "expected_content_sha256")
            if expected_content_sha256 is not None
            else None
        )
        who = _actor(actor)
        with self._write() as conn:
            self._store_row(conn, store_id, "share")
            row = self._memory_row(conn, store_id, memory, lock=True)
            if expected is not None and row.content_sha256 != expected:
                raise MemoryPreconditionFailed(row.id, expected, row.content_sha256)
            self._insert_version(
                conn,
                store_id,
                row.id,
                "deleted",
                path=row.path,
                content=None,
                sha=None,
                size=None,
                actor=who,
                now=_now(),
            )
            conn.execute(sa.delete(memories).where(memories.c.id == row.id))
        return DeletedMemory(id=row.id)

    def list_memories(
        self,
        store_id: str,
        *,
        path_prefix: str | None = None,
        depth: int = 0,
        limit: int = 20,
        page: str | None = None,
        view: str = "basic",
    ) -> Page[Memory | MemoryPrefix]:
        """Memories in path order (code points). ``path_prefix`` ends with ``/`` and matches whole
        segments; ``depth > 0`` rolls memories deeper than that many segments below the prefix up
        into ``memory_prefix`` items."""
        prefix = rules.validate_path_prefix(path_prefix) if path_prefix is not None else "/"
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise InvalidMemoryRequest("depth", f"must be a non-negative integer (got {depth!r})")
        view = rules.validate_view(view)
        limit = rules.validate_limit(limit, view)
        query = sa.select(memories.c.id, memories.c.path).where(memories.c.memory_store_id == store_id)
        if prefix != "/":
            query = query.where(memories.c.path >= prefix, memories.c.path < prefix[:-1] + "0")
        if page is not None:
            cursor = _decode_cursor(page)
            if "after" in cursor and isinstance(cursor["after"], str):
                query = query.where(memories.c.path > cursor["after"])
            elif "from" in cursor and isinstance(cursor["from"], str):
                query = query.where(memories.c.path >= cursor["from"])
            else:
                raise _bad_page()
        query = query.order_by(memories.c.path)
        if depth == 0:
            query = query.limit(limit + 1)
        with self._read() as conn:
            self._store_row(conn, store_id)
            items: list[tuple[str, str | None]] = []  # (path, memory id or None for a prefix)
            more = False
            skip_below: str | None = None
            for row in conn.execute(query):
                if skip_below is not None and row.path.startswith(skip_below):
                    continue
                if len(items) == limit:
                    more = True
                    break
                segments = row.path[len(prefix) :].split("/")
                if depth and len(segments) > depth:
                    skip_below = prefix + "/".join(segments[:depth]) + "/"
                    items.append((skip_below, None))
                else:
                    skip_below = None
                    items.append((row.path, row.id))
            ids = [mid for _, mid in items if mid is not None]
            columns = [c for c in memories.c if view == "full" or c.name != "content"]
            rows = {r.id: r for r in conn.execute(sa.select(*columns).where(memories.c.id.in_(ids)))} if ids else {}
        data: list[Memory | MemoryPrefix] = [
            MemoryPrefix(path=p) if mid is None else _memory_model(rows[mid], view) for p, mid in items
        ]
        next_page = None
        if more and items:
            last_path, last_id = items[-1]
            next_page = _encode_cursor({"after": last_path} if last_id else {"from": last_path[:-1] + "0"})
        return Page[Memory | MemoryPrefix](data=data, next_page=next_page)

    # --- memory versions ------------------------------------------------------------------------

    def list_versions(
        self,
        store_id: str,
        *,
        memory_id: str | None = None,
        operation: str | None = None,
        session_id: str | None = None,
        api_key_id: str | None = None,
        user_id: str | None = None,
        service_account_id: str | None = None,
        created_at_gte: datetime | None = None,
        created_at_lte: datetime | None = None,
        limit: int = 20,
        page: str | None = None,
        view: str = "basic",
    ) -> Page[MemoryVersion]:
        """Newest first. ``memory_id`` still works after the memory is deleted."""
        view = rules.validate_view(view)
        limit = rules.validate_limit(limit, view)
        if operation is not None and operation not in ("created", "modified", "deleted"):
            raise InvalidMemoryRequest("operation", f"must be created, modified or deleted (got {operation!r})")
        v = memory_versions.c
        columns = [c for c in memory_versions.c if view == "full" or c.name != "content"]
        query = sa.select(*columns).where(v.memory_store_id == store_id).order_by(v.seq.desc()).limit(limit + 1)
        if memory_id is not None:
            query = query.where(v.memory_id == memory_id)
        if operation is not None:
            query = query.where(v.operation == operation)
        for actor_type, actor_id in (
            ("session_actor", session_id),
            ("api_actor", api_key_id),
            ("user_actor", user_id),
            ("service_account_actor", service_account_id),
        ):
            if actor_id is not None:
                query = query.where(v.actor_type == actor_type, v.actor_id == actor_id)
        if created_at_gte is not None:
            query = query.where(v.created_at >= _aware(created_at_gte, "created_at[gte]"))
        if created_at_lte is not None:
            query = query.where(v.created_at <= _aware(created_at_lte, "created_at[lte]"))
        if page is not None:
            query = query.where(v.seq < _cursor_int(page, "before"))
        with self._read() as conn:
            self._store_row(conn, store_id)
            rows = conn.execute(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page[MemoryVersion](
            data=[_version_model(r, view) for r in rows],
            next_page=_encode_cursor({"before": rows[-1].seq}) if more else None,
        )

    def retrieve_version(self, store_id: str, version_id: str, *, view: str = "full") -> MemoryVersion:
        view = rules.validate_view(view)
        with self._read() as conn:
            self._store_row(conn, store_id)
            return _version_model(self._version_row(conn, store_id, version_id), view)

    def redact_version(self, store_id: str, version_id: str, *, actor: ActorLike) -> MemoryVersion:
        """Null a version's content, path, hash and size; the record (and ``created_by``) stays.

        The version holding a live memory's current content can't be redacted. Redacting a
        redacted version changes nothing.
        """
        who = _actor(actor)
        with self._write() as conn:
            self._store_row(conn, store_id, "share")
            row = self._version_row(conn, store_id, version_id, lock=True)
            if row.redacted_at is None:
                head = conn.execute(
                    sa.select(memories.c.id).where(
                        memories.c.id == row.memory_id, memories.c.memory_version_id == row.id
                    )
                ).first()
                if head is not None:
                    raise MemoryVersionNotRedactable(version_id, row.memory_id)
                conn.execute(
                    sa.update(memory_versions)
                    .where(memory_versions.c.id == version_id)
                    .values(
                        content=None,
                        path=None,
                        content_sha256=None,
                        content_size_bytes=None,
                        redacted_at=_now(),
                        redacted_by_json=who.model_dump_json(),
                    )
                )
                row = self._version_row(conn, store_id, version_id)
            return _version_model(row, "full")

    # --- for Dreaming and mount sync -------------------------------------------------------------

    def snapshot(self, store_id: str) -> list[SnapshotEntry]:
        """Every live memory of the store, in path order, read in one transaction."""
        with self._read() as conn:
            self._store_row(conn, store_id)
            rows = conn.execute(
                sa.select(memories.c.path, memories.c.content, memories.c.content_sha256)
                .where(memories.c.memory_store_id == store_id)
                .order_by(memories.c.path)
            ).all()
        return [SnapshotEntry(r.path, r.content, r.content_sha256) for r in rows]

    def import_memories(
        self, store_id: str, items: Iterable[tuple[str, str]] | Mapping[str, str], *, actor: ActorLike
    ) -> int:
        """Create many memories (``(path, content)`` pairs, new paths only) in one transaction."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        entries = [(rules.validate_path(p), *rules.validate_content(c)) for p, c in pairs]
        who = _actor(actor)
        seen: set[str] = set()
        for path, *_ in entries:
            if path in seen:
                raise InvalidMemoryRequest("path", f"{path!r} appears twice in the import")
            seen.add(path)
        with self._write() as conn:
            self._writable_store(conn, store_id, "update")
            taken = (
                conn.execute(
                    sa.select(memories.c.path, memories.c.id).where(
                        memories.c.memory_store_id == store_id, memories.c.path.in_(list(seen))
                    )
                ).first()
                if seen
                else None
            )
            if taken is not None:
                raise MemoryPathConflict(taken.path, taken.id)
            self._check_room(conn, store_id, len(entries))
            self._insert_many(conn, store_id, entries, who, _now())
        return len(entries)

    def clone_store(
        self,
        store_id: str,
        name: str,
        *,
        actor: ActorLike,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        proposal: MemoryStoreProposal | Mapping[str, Any] | None = None,
    ) -> MemoryStore:
        """A new store holding a copy of the live memories of ``store_id`` (which is not modified).

        Description and metadata default to the source's. Each copy gets a new id and a ``created``
        version attributed to ``actor``. Archived stores can be cloned.
        """
        name = rules.validate_name(name)
        desc = rules.validate_description(description) if description is not None else None
        meta = rules.validate_metadata(metadata) if metadata is not None else None
        prop = _proposal(proposal)
        who = _actor(actor)
        with self._write() as conn:
            source = self._store_row_model(self._store_row(conn, store_id, "share"))
            rows = conn.execute(
                sa.select(memories.c.path, memories.c.content, memories.c.content_sha256, memories.c.content_size_bytes)
                .where(memories.c.memory_store_id == store_id)
                .order_by(memories.c.path)
            ).all()
            clone = self._insert_store(
                conn,
                name,
                source.description if desc is None else desc,
                source.metadata if meta is None else meta,
                prop,
            )
            entries = [(r.path, r.content, r.content_sha256, r.content_size_bytes) for r in rows]
            self._insert_many(conn, clone.id, entries, who, _now())
        return clone

    # --- helpers ---------------------------------------------------------------------------------

    def _memory_row(
        self, conn: sa.Connection, store_id: str, memory: str, *, lock: bool = False, required: bool = True
    ) -> Any:
        if not isinstance(memory, str) or not memory:
            raise InvalidMemoryRequest("memory_id", "must be a mem_... id or a /path")
        key = memories.c.path if memory.startswith("/") else memories.c.id
        query = sa.select(memories).where(memories.c.memory_store_id == store_id, key == memory)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None and required:
            raise MemoryNotFound(store_id, memory)
        return row

    def _version_row(self, conn: sa.Connection, store_id: str, version_id: str, *, lock: bool = False) -> Any:
        query = sa.select(memory_versions).where(
            memory_versions.c.memory_store_id == store_id, memory_versions.c.id == version_id
        )
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise MemoryVersionNotFound(store_id, version_id)
        return row

    def _check_room(self, conn: sa.Connection, store_id: str, adding: int) -> None:
        count = conn.execute(
            sa.select(sa.func.count()).select_from(memories).where(memories.c.memory_store_id == store_id)
        ).scalar_one()
        if count + adding > rules.MAX_MEMORIES_PER_STORE:
            raise MemoryLimitExceeded(
                "memory_store",
                f"memory store {store_id} holds {count} memories; a store can hold at most "
                f"{rules.MAX_MEMORIES_PER_STORE:,} (adding {adding} would exceed it)",
                limit=rules.MAX_MEMORIES_PER_STORE,
            )

    def _apply_update(
        self,
        conn: sa.Connection,
        store_id: str,
        row: Any,
        validated: tuple[str, str, int] | None,
        new_path: str | None,
        expected: str | None,
        who: Actor,
        view: str,
    ) -> Memory:
        if validated is None:
            validated = (row.content, row.content_sha256, row.content_size_bytes)
        content, sha, size = validated
        path = new_path if new_path is not None else row.path
        if content == row.content and path == row.path:
            return _memory_model(row, view)  # no-op: no version
        if expected is not None and expected != row.content_sha256:
            raise MemoryPreconditionFailed(row.id, expected, row.content_sha256)
        if path != row.path:
            other = self._memory_row(conn, store_id, path, required=False)
            if other is not None:
                raise MemoryPathConflict(path, other.id)
        now = _now()
        version_id = self._insert_version(
            conn, store_id, row.id, "modified", path=path, content=content, sha=sha, size=size, actor=who, now=now
        )
        conn.execute(
            sa.update(memories)
            .where(memories.c.id == row.id)
            .values(
                path=path,
                content=content,
                content_sha256=sha,
                content_size_bytes=size,
                memory_version_id=version_id,
                updated_at=now,
            )
        )
        return _memory_model(self._memory_row(conn, store_id, row.id), view)

    def _insert_memory(
        self,
        conn: sa.Connection,
        store_id: str,
        path: str,
        content: str,
        sha: str,
        size: int,
        who: Actor,
        now: datetime,
    ) -> Any:
        memory_id = new_id("mem")
        version_id = self._insert_version(
            conn, store_id, memory_id, "created", path=path, content=content, sha=sha, size=size, actor=who, now=now
        )
        conn.execute(
            sa.insert(memories).values(
                id=memory_id,
                memory_store_id=store_id,
                path=path,
                content=content,
                content_sha256=sha,
                content_size_bytes=size,
                memory_version_id=version_id,
                created_at=now,
                updated_at=now,
            )
        )
        return self._memory_row(conn, store_id, memory_id)

    def _insert_many(
        self,
        conn: sa.Connection,
        store_id: str,
        entries: list[tuple[str, str, str, int]],
        who: Actor,
        now: datetime,
    ) -> None:
        if not entries:
            return
        actor_json, actor_type, actor_id = _actor_columns(who)
        memory_rows, version_rows = [], []
        for path, content, sha, size in entries:
            memory_id, version_id = new_id("mem"), new_id("memver")
            version_rows.append(
                {
                    "id": version_id,
                    "memory_store_id": store_id,
                    "memory_id": memory_id,
                    "operation": "created",
                    "path": path,
                    "content": content,
                    "content_sha256": sha,
                    "content_size_bytes": size,
                    "created_by_json": actor_json,
                    "actor_type": actor_type,
                    "actor_id": actor_id,
                    "created_at": now,
                }
            )
            memory_rows.append(
                {
                    "id": memory_id,
                    "memory_store_id": store_id,
                    "path": path,
                    "content": content,
                    "content_sha256": sha,
                    "content_size_bytes": size,
                    "memory_version_id": version_id,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        conn.execute(sa.insert(memory_versions), version_rows)
        conn.execute(sa.insert(memories), memory_rows)

    def _insert_version(
        self,
        conn: sa.Connection,
        store_id: str,
        memory_id: str,
        operation: str,
        *,
        path: str,
        content: str | None,
        sha: str | None,
        size: int | None,
        actor: Actor,
        now: datetime,
    ) -> str:
        version_id = new_id("memver")
        actor_json, actor_type, actor_id = _actor_columns(actor)
        conn.execute(
            sa.insert(memory_versions).values(
                id=version_id,
                memory_store_id=store_id,
                memory_id=memory_id,
                operation=operation,
                path=path,
                content=content,
                content_sha256=sha,
                content_size_bytes=size,
                created_by_json=actor_json,
                actor_type=actor_type,
                actor_id=actor_id,
                created_at=now,
            )
        )
        return version_id

    @staticmethod
    def _store_row_model(row: Any) -> MemoryStore:
        return MemoryStore(
            id=row.id,
            name=row.name,
            description=row.description,
            metadata=json.loads(row.metadata_json),
            created_at=row.created_at,
            updated_at=row.updated_at,
            archived_at=row.archived_at,
            proposal=MemoryStoreProposal.model_validate_json(row.proposal_json) if row.proposal_json else None,
        )


# --- conversions -------------------------------------------------------------------------------------


def _memory_model(row: Any, view: str) -> Memory:
    return Memory(
        id=row.id,
        memory_store_id=row.memory_store_id,
        memory_version_id=row.memory_version_id,
        path=row.path,
        content=row.content if view == "full" else None,
        content_sha256=row.content_sha256,
        content_size_bytes=row.content_size_bytes,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _version_model(row: Any, view: str) -> MemoryVersion:
    mapping = row._mapping
    return MemoryVersion(
        id=row.id,
        memory_id=row.memory_id,
        memory_store_id=row.memory_store_id,
        operation=row.operation,
        path=row.path,
        content=mapping.get("content") if view == "full" else None,
        content_sha256=row.content_sha256,
        content_size_bytes=row.content_size_bytes,
        created_by=ActorAdapter.validate_json(row.created_by_json) if row.created_by_json else None,
        created_at=row.created_at,
        redacted_at=row.redacted_at,
        redacted_by=ActorAdapter.validate_json(row.redacted_by_json) if row.redacted_by_json else None,
    )


def _actor(actor: Any) -> Actor:
    if isinstance(actor, SessionActor | ApiActor | UserActor | ServiceAccountActor):
        return actor
    if isinstance(actor, BaseModel):
        actor = actor.model_dump()
    try:
        return ActorAdapter.validate_python(actor)
    except ValidationError as err:
        raise InvalidMemoryRequest(
            "actor",
            "must be session_actor{session_id}, api_actor{api_key_id}, user_actor{user_id} or "
            f"service_account_actor{{service_account_id}} ({err.errors()[0]['msg']})",
        ) from None


def _actor_columns(actor: Actor) -> tuple[str, str, str]:
    return actor.model_dump_json(), actor.type, str(getattr(actor, _ACTOR_ID_FIELD[actor.type]))


def _precondition(precondition: Any) -> str | None:
    if precondition is None:
        return None
    if isinstance(precondition, Precondition):
        return precondition.content_sha256
    if not isinstance(precondition, Mapping) or precondition.get("type") != "content_sha256":
        raise InvalidMemoryRequest("precondition", 'must be {"type": "content_sha256", "content_sha256": "<hex>"}')
    return rules.validate_sha256(precondition.get("content_sha256"), "precondition.content_sha256")


def _proposal(proposal: Any) -> MemoryStoreProposal | None:
    if proposal is None or isinstance(proposal, MemoryStoreProposal):
        return proposal
    try:
        return MemoryStoreProposal.model_validate(proposal)
    except ValidationError as err:
        first = err.errors()[0]
        raise InvalidMemoryRequest("proposal." + ".".join(str(p) for p in first["loc"]), str(first["msg"])) from None


def _aware(value: Any, field: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidMemoryRequest(field, f"must be an RFC 3339 timestamp (got {value!r})") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidMemoryRequest(field, "must be a timezone-aware datetime")
    return value


def _encode_cursor(cursor: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor, separators=(",", ":")).encode()).decode().rstrip("=")


def _bad_page() -> InvalidMemoryRequest:
    return InvalidMemoryRequest("page", "is not a next_page value from a previous response of this list")


def _decode_cursor(page: Any) -> dict[str, Any]:
    if not isinstance(page, str):
        raise _bad_page()
    try:
        cursor = json.loads(base64.urlsafe_b64decode(page + "=" * (-len(page) % 4)))
    except (binascii.Error, ValueError):
        raise _bad_page() from None
    if not isinstance(cursor, dict):
        raise _bad_page()
    return cursor


def _cursor_int(page: Any, key: str) -> int:
    value = _decode_cursor(page).get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_page()
    return value
