"""Memory stores, memories and versions (managed_agents._memory), on SQLite and on a real PostgreSQL.

The PostgreSQL server is Debian's (``apt-get install postgresql``, done by .ci/run): the fixture makes
a throwaway cluster with initdb in a temporary directory, on a free port of 127.0.0.1, and removes it
afterwards. Every test of the service runs on both databases.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from managed_agents._memory import (
    InvalidMemoryRequest,
    MemoryLimitExceeded,
    MemoryNotFound,
    MemoryPathConflict,
    MemoryPreconditionFailed,
    MemoryPrefix,
    MemoryService,
    MemoryStoreArchived,
    MemoryStoreError,
    MemoryStoreNotFound,
    MemoryVersionNotRedactable,
    content_sha256,
    memory_store_slug,
    normalize_path,
    session_actor,
    user_actor,
)
from managed_agents._migrations import VERSION_TABLE, ensure_schema, head_revision, target_metadata

ALICE = user_actor("alice")
AGENT = session_actor("sesn_agent")
ROOT = Path(__file__).resolve().parent.parent


# --- databases -----------------------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return self.url(name)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are absent: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="ma-pg-"))
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:  # initdb refuses to run as root
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    try:
        subprocess.run(
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        subprocess.run(
            [
                *run_as,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield PgCluster(port)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def new_db(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Makes fresh, empty databases of the parametrised kind; returns their URLs."""
    if request.param == "sqlite":
        counter = iter(range(1000))
        return lambda: f"sqlite:///{tmp_path / f'db{next(counter)}.sqlite'}"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database


@pytest.fixture
def db_url(new_db: Callable[[], str]) -> str:
    return new_db()


@pytest.fixture
def svc(db_url: str) -> Iterator[MemoryService]:
    service = MemoryService(db_url)
    yield service
    service.close()


def _versions(svc: MemoryService, store_id: str, **filters: Any) -> list[Any]:
    out, page = [], None
    while True:
        result = svc.list_versions(store_id, limit=100, page=page, view="full", **filters)
        out.extend(result.data)
        if not (page := result.next_page):
            return out


# --- stores --------------------------------------------------------------------------------------------


def test_store_crud_archive_and_delete(svc: MemoryService) -> None:
    store = svc.create_store("User Preferences", description="likes", metadata={"owner": "u1"})
    assert store.id.startswith("memstore_") and store.type == "memory_store"
    assert (store.name, store.description, store.metadata, store.archived_at) == (
        "User Preferences",
        "likes",
        {"owner": "u1"},
        None,
    )
    assert svc.retrieve_store(store.id) == store
    assert memory_store_slug(store.name) == "user-preferences"

    updated = svc.update_store(store.id, name="Prefs", metadata={"owner": None, "team": "t"})
    assert (updated.name, updated.metadata, updated.description) == ("Prefs", {"team": "t"}, "likes")
    assert updated.updated_at > store.updated_at
    assert svc.update_store(store.id, description="").description == ""

    for bad, field in [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": "a\x07b"}, "name"),
        ({"name": "ok", "description": "d" * 1025}, "description"),
        ({"name": "ok", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"name": "ok", "metadata": {"k" * 65: "v"}}, "metadata"),
        ({"name": "ok", "metadata": {"k": "v" * 513}}, "metadata.k"),
    ]:
        with pytest.raises(InvalidMemoryRequest) as err:
            svc.create_store(**bad)
        assert err.value.field == field and err.value.status == 400, err.value

    others = [svc.create_store(f"s{i}") for i in range(3)]
    first = svc.list_stores(limit=2)
    second = svc.list_stores(limit=2, page=first.next_page)
    assert [s.id for s in first.data + second.data] == [s.id for s in reversed([store, *others])]
    assert second.next_page is None

    memory = svc.create_memory(store.id, "/a.md", "a", actor=ALICE)
    old_head = memory.memory_version_id
    svc.update_memory(store.id, memory.id, content="b", actor=ALICE)
    archived = svc.archive_store(store.id)
    assert archived.archived_at is not None and svc.archive_store(store.id).archived_at == archived.archived_at
    assert store.id not in [s.id for s in svc.list_stores().data]
    assert store.id in [s.id for s in svc.list_stores(include_archived=True).data]
    for write in (
        lambda: svc.create_memory(store.id, "/b.md", "b", actor=ALICE),
        lambda: svc.update_memory(store.id, memory.id, content="c", actor=ALICE),
        lambda: svc.write_memory(store.id, "/a.md", "c", ALICE),
        lambda: svc.update_store(store.id, name="again"),
    ):
        with pytest.raises(MemoryStoreArchived) as archived_err:
            write()
        assert archived_err.value.status == 400
    # Still allowed on an archived store: reading, redacting, deleting memories and the store.
    assert svc.retrieve_memory(store.id, "/a.md").content == "b"
    assert svc.redact_version(store.id, old_head, actor=ALICE).redacted_at is not None
    svc.delete_memory(store.id, memory.id, actor=ALICE)
    assert svc.delete_store(store.id).type == "memory_store_deleted"
    with pytest.raises(MemoryStoreNotFound) as gone:
        svc.retrieve_store(store.id)
    assert gone.value.status == 404 and gone.value.error_type == "not_found_error"
    with pytest.raises(MemoryStoreNotFound):
        svc.list_versions(store.id)


# --- memories and versions -----------------------------------------------------------------------------


def test_memory_crud_writes_one_version_per_change(svc: MemoryService) -> None:
    store = svc.create_store("s")
    created = svc.create_memory(store.id, "/notes/todo.md", "buy milk", actor=ALICE)
    assert created.id.startswith("mem_") and created.memory_version_id.startswith("memver_")
    assert created.content is None  # view=basic by default on create
    assert created.content_sha256 == content_sha256("buy milk") and created.content_size_bytes == 8
    full = svc.retrieve_memory(store.id, created.id)
    assert full.content == "buy milk" and svc.retrieve_memory(store.id, "/notes/todo.md") == full

    modified = svc.update_memory(store.id, created.id, content="buy milk and eggs", actor=AGENT, view="full")
    assert modified.content == "buy milk and eggs" and modified.memory_version_id != created.memory_version_id
    renamed = svc.update_memory(store.id, created.id, path="/done/todo.md", actor=AGENT)
    assert renamed.id == created.id and renamed.path == "/done/todo.md"
    with pytest.raises(MemoryNotFound):
        svc.retrieve_memory(store.id, "/notes/todo.md")

    deleted = svc.delete_memory(store.id, created.id, actor=ALICE)
    assert deleted.type == "memory_deleted" and deleted.id == created.id
    with pytest.raises(MemoryNotFound) as err:
        svc.retrieve_memory(store.id, created.id)
    assert err.value.status == 404

    history = _versions(svc, store.id, memory_id=created.id)  # versions survive deletion, newest first
    assert [v.operation for v in history] == ["deleted", "modified", "modified", "created"]
    assert [v.path for v in history] == ["/done/todo.md", "/done/todo.md", "/notes/todo.md", "/notes/todo.md"]
    assert [v.content for v in history] == [None, "buy milk and eggs", "buy milk and eggs", "buy milk"]
    assert history[0].content_sha256 is None and history[0].content_size_bytes is None
    assert [v.created_by for v in history] == [ALICE, AGENT, AGENT, ALICE]
    assert history[-1].id == created.memory_version_id and history[2].id == modified.memory_version_id
    assert [v.id for v in _versions(svc, store.id, session_id="sesn_agent")] == [history[1].id, history[2].id]
    assert [v.id for v in _versions(svc, store.id, operation="created")] == [history[-1].id]
    basic = svc.list_versions(store.id, memory_id=created.id).data
    assert all(v.content is None for v in basic) and basic[1].content_sha256 == history[1].content_sha256
    assert svc.retrieve_version(store.id, history[-1].id).content == "buy milk"

    again = svc.create_memory(store.id, "/notes/todo.md", "", actor=ALICE)  # a path is free again after delete
    assert again.id != created.id and again.content_size_bytes == 0


def test_content_limit_is_102400_utf8_bytes(svc: MemoryService) -> None:
    store = svc.create_store("s")
    svc.create_memory(store.id, "/max.md", "x" * 102_400, actor=ALICE)
    svc.create_memory(store.id, "/max-utf8.md", "é" * 51_200, actor=ALICE)  # 2 bytes each
    for content in ("x" * 102_401, "é" * 51_201):
        with pytest.raises(MemoryLimitExceeded) as err:
            svc.create_memory(store.id, "/big.md", content, actor=ALICE)
        assert err.value.field == "content" and err.value.limit == 102_400 and "102,400" in str(err.value)
    with pytest.raises(MemoryLimitExceeded):
        svc.update_memory(store.id, "/max.md", content="y" * 102_401, actor=ALICE)
    assert svc.retrieve_memory(store.id, "/max.md").content == "x" * 102_400
    with pytest.raises(InvalidMemoryRequest):
        svc.create_memory(store.id, "/nul.md", "a\x00b", actor=ALICE)


def test_store_holds_at_most_2000_memories(svc: MemoryService) -> None:
    store = svc.create_store("s")
    assert svc.import_memories(store.id, [(f"/m/{i:04d}.md", f"memory {i}") for i in range(2000)], actor=ALICE) == 2000
    with pytest.raises(MemoryLimitExceeded) as err:
        svc.create_memory(store.id, "/one-more.md", "x", actor=ALICE)
    assert err.value.field == "memory_store" and err.value.limit == 2000 and "2,000" in str(err.value)
    with pytest.raises(MemoryLimitExceeded):
        svc.write_memory(store.id, "/one-more.md", "x", ALICE)
    with pytest.raises(MemoryLimitExceeded):
        svc.import_memories(store.id, [("/one-more.md", "x")], actor=ALICE)
    # Existing paths can still change; deleting one makes room for a new one.
    assert svc.write_memory(store.id, "/m/0000.md", "changed", ALICE).content_sha256 == content_sha256("changed")
    svc.delete_memory(store.id, "/m/0001.md", actor=ALICE)
    svc.create_memory(store.id, "/one-more.md", "x", actor=ALICE)
    assert len(svc.snapshot(store.id)) == 2000


def test_path_rules(svc: MemoryService) -> None:
    store = svc.create_store("s")
    nfc = unicodedata.normalize("NFC", "/café/naïve.md")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    long_ok = "/" + "a" * 1023
    for path in ["/a", "/A", nfc, "/a b/c-d_e.f.md", "/..a/b..", long_ok, "/" + "/".join("s" * 20)]:
        assert svc.create_memory(store.id, path, path, actor=ALICE).path == path
    bad = {
        "relative.md": "start with '/'",
        "/a//b": "empty segment",
        "/a/": "empty segment",
        "/": "empty segment",
        "/./a": "'.' segment",
        "/a/..": "'..' segment",
        "/a/../b": "'..' segment",
        "/a\\b": "backslash",
        "/a\x00b": "control",
        "/a\nb": "control",
        "/a\u200bb": "format",
        "/a\u2028b": "control or format",
        nfd: "NFC",
        "/" + "a" * 1024: "1024 bytes",
        "/" + "é" * 512: "1024 bytes",
        "/" + "/".join("s" * 21): "20 segments",
    }
    for path, reason in bad.items():
        with pytest.raises(InvalidMemoryRequest) as err:
            svc.create_memory(store.id, path, "x", actor=ALICE)
        assert err.value.field == "path" and err.value.status == 400
        assert reason in str(err.value), (path, str(err.value))
    assert normalize_path(nfd[1:]) == nfc
    with pytest.raises(InvalidMemoryRequest):
        svc.update_memory(store.id, "/a", path="/a/../b", actor=ALICE)

    with pytest.raises(MemoryPathConflict) as conflict:
        svc.create_memory(store.id, "/a", "again", actor=ALICE)
    assert conflict.value.status == 409 and conflict.value.error_type == "memory_path_conflict_error"
    with pytest.raises(MemoryPathConflict):
        svc.update_memory(store.id, "/A", path="/a", actor=ALICE)  # a rename onto a live path
    assert svc.retrieve_memory(store.id, "/a").content == "/a"


def test_list_memories_by_prefix_depth_and_pages(svc: MemoryService) -> None:
    store = svc.create_store("s")
    paths = ["/notes/a.md", "/notes/b/c.md", "/notes/b/d/e.md", "/notes-archive/x.md", "/notes.md", "/z.md"]
    for p in paths:
        svc.create_memory(store.id, p, p, actor=ALICE)

    def collect(**kwargs: Any) -> list[str]:
        out, page = [], None
        while True:
            result = svc.list_memories(store.id, page=page, **kwargs)
            out += [("prefix:" if isinstance(i, MemoryPrefix) else "") + i.path for i in result.data]
            if not (page := result.next_page):
                return out

    assert collect(limit=2) == sorted(paths)
    assert collect(path_prefix="/notes/", limit=1) == ["/notes/a.md", "/notes/b/c.md", "/notes/b/d/e.md"]
    assert collect(path_prefix="/notes/", depth=1, limit=1) == ["/notes/a.md", "prefix:/notes/b/"]
    assert collect(depth=1, limit=1) == ["prefix:/notes-archive/", "/notes.md", "prefix:/notes/", "/z.md"]
    assert collect(path_prefix="/notes/", depth=2) == ["/notes/a.md", "/notes/b/c.md", "prefix:/notes/b/d/"]
    full = svc.list_memories(store.id, view="full", limit=100)
    assert len(full.data) == 6 and all(getattr(m, "content", None) == m.path for m in full.data)
    assert all(getattr(m, "content", "x") is None for m in svc.list_memories(store.id).data)
    for bad in [{"path_prefix": "/notes"}, {"limit": 0}, {"limit": 101}, {"page": "garbage!"}, {"depth": -1}]:
        with pytest.raises(InvalidMemoryRequest):
            svc.list_memories(store.id, **bad)


# --- preconditions and concurrency ---------------------------------------------------------------------


def test_preconditions(svc: MemoryService) -> None:
    store = svc.create_store("s")
    memory = svc.create_memory(store.id, "/p.md", "v1", actor=ALICE)
    sha1 = memory.content_sha256
    matched = svc.update_memory(
        store.id, memory.id, content="v2", actor=ALICE, precondition={"type": "content_sha256", "content_sha256": sha1}
    )
    assert matched.content_sha256 == content_sha256("v2")
    versions_before = len(_versions(svc, store.id))
    with pytest.raises(MemoryPreconditionFailed) as err:
        svc.update_memory(
            store.id,
            memory.id,
            content="v3",
            actor=ALICE,
            precondition={"type": "content_sha256", "content_sha256": sha1},
        )
    assert err.value.status == 409 and err.value.error_type == "memory_precondition_failed_error"
    assert err.value.to_error_body()["error"]["type"] == "memory_precondition_failed_error"
    assert (err.value.expected, err.value.actual) == (sha1, matched.content_sha256)
    assert svc.retrieve_memory(store.id, memory.id).content == "v2"
    assert len(_versions(svc, store.id)) == versions_before

    # Equal content (and path): a no-op, no version, whatever the precondition (a retried write is idempotent).
    same = svc.update_memory(store.id, memory.id, content="v2", actor=ALICE)
    assert same.memory_version_id == matched.memory_version_id and same.updated_at == matched.updated_at
    stale = svc.write_memory(store.id, "/p.md", "v2", ALICE, {"type": "content_sha256", "content_sha256": sha1})
    assert stale.memory_version_id == matched.memory_version_id
    assert len(_versions(svc, store.id)) == versions_before

    # write_memory: precondition on a missing path fails; deletes have their own precondition.
    with pytest.raises(MemoryPreconditionFailed):
        svc.write_memory(store.id, "/new.md", "x", ALICE, {"type": "content_sha256", "content_sha256": sha1})
    with pytest.raises(MemoryPreconditionFailed):
        svc.delete_memory(store.id, memory.id, actor=ALICE, expected_content_sha256=sha1)
    assert svc.retrieve_memory(store.id, memory.id).content == "v2"
    svc.delete_memory(store.id, memory.id, actor=ALICE, expected_content_sha256=content_sha256("v2"))
    for bad in [{"type": "content_sha256", "content_sha256": "ABC"}, {"type": "etag", "content_sha256": sha1}]:
        with pytest.raises(InvalidMemoryRequest):
            svc.write_memory(store.id, "/p.md", "x", ALICE, bad)


def _race(*jobs: Callable[[], Any]) -> list[Any]:
    """Run the jobs at once in threads; each result is a return value or the exception raised."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(i: int, job: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = job()
        except Exception as err:
            results[i] = err

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_writers_with_preconditions_one_wins_the_other_conflicts(db_url: str) -> None:
    a, b = MemoryService(db_url), MemoryService(db_url)  # two workers: separate engines and connections
    try:
        store = a.create_store("s")
        memory = a.create_memory(store.id, "/shared.md", "base", actor=ALICE)
        for round_ in range(5):
            sha = a.retrieve_memory(store.id, memory.id).content_sha256
            pre = {"type": "content_sha256", "content_sha256": sha}
            results = _race(
                lambda svc=a, r=round_, pre=pre: svc.update_memory(
                    store.id, memory.id, content=f"A{r}", actor=session_actor("sesn_a"), precondition=pre
                ),
                lambda svc=b, r=round_, pre=pre: svc.update_memory(
                    store.id, memory.id, content=f"B{r}", actor=session_actor("sesn_b"), precondition=pre
                ),
            )
            winners = [r for r in results if not isinstance(r, Exception)]
            losers = [r for r in results if isinstance(r, Exception)]
            assert len(winners) == 1 and len(losers) == 1, results
            assert isinstance(losers[0], MemoryPreconditionFailed), losers
            assert a.retrieve_memory(store.id, memory.id).content_sha256 == winners[0].content_sha256
        assert len(_versions(a, store.id, operation="modified")) == 5
    finally:
        a.close()
        b.close()


def test_two_writers_without_preconditions_both_changes_are_versions(db_url: str) -> None:
    a, b = MemoryService(db_url), MemoryService(db_url)
    try:
        store = a.create_store("s")
        memory = a.create_memory(store.id, "/shared.md", "base", actor=ALICE)
        results = _race(
            lambda: a.update_memory(store.id, memory.id, content="from A", actor=session_actor("sesn_a")),
            lambda: b.update_memory(store.id, memory.id, content="from B", actor=session_actor("sesn_b")),
            # Two writers creating the same new path: one creates it, the other updates it.
            lambda: a.write_memory(store.id, "/new.md", "new from A", session_actor("sesn_a")),
            lambda: b.write_memory(store.id, "/new.md", "new from B", session_actor("sesn_b")),
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        versions = _versions(a, store.id)
        shared = [v for v in versions if v.memory_id == memory.id]
        assert sorted(v.content for v in shared if v.operation == "modified") == ["from A", "from B"]
        assert a.retrieve_memory(store.id, memory.id).content == shared[0].content  # the head is the newest
        new = [v for v in versions if v.path == "/new.md"]
        assert sorted(v.operation for v in new) == ["created", "modified"]
        assert {v.content for v in new} == {"new from A", "new from B"}
        assert a.retrieve_memory(store.id, "/new.md").content == new[0].content
    finally:
        a.close()
        b.close()


# --- redaction ------------------------------------------------------------------------------------------


def test_redaction_keeps_the_record_and_refuses_the_head(svc: MemoryService) -> None:
    store = svc.create_store("s")
    m = svc.create_memory(store.id, "/secret.md", "password=hunter2", actor=AGENT)
    head = svc.update_memory(store.id, m.id, content="password=<removed>", actor=ALICE)
    redacted = svc.redact_version(store.id, m.memory_version_id, actor=ALICE)
    assert redacted.redacted_at is not None and redacted.redacted_by == ALICE
    assert (redacted.content, redacted.path, redacted.content_sha256, redacted.content_size_bytes) == (None,) * 4
    assert redacted.created_by == AGENT and redacted.operation == "created"
    assert svc.retrieve_version(store.id, m.memory_version_id) == redacted
    assert svc.redact_version(store.id, m.memory_version_id, actor=AGENT) == redacted  # idempotent
    assert "hunter2" not in json.dumps([v.model_dump(mode="json") for v in _versions(svc, store.id)])

    with pytest.raises(MemoryVersionNotRedactable) as err:
        svc.redact_version(store.id, head.memory_version_id, actor=ALICE)
    assert err.value.status == 400
    assert svc.retrieve_memory(store.id, m.id).content == "password=<removed>"
    svc.delete_memory(store.id, m.id, actor=ALICE)  # once deleted, the former head can be redacted
    assert svc.redact_version(store.id, head.memory_version_id, actor=ALICE).content is None
    assert len(_versions(svc, store.id, memory_id=m.id)) == 3


# --- snapshot and clone (for Dreaming) -------------------------------------------------------------------


def test_snapshot_and_clone(svc: MemoryService) -> None:
    source = svc.create_store("source", description="facts", metadata={"user": "u1"})
    for path in ["/b.md", "/a/x.md", "/a.md"]:
        svc.create_memory(source.id, path, f"content of {path}", actor=ALICE)
    svc.delete_memory(source.id, "/b.md", actor=ALICE)
    snap = svc.snapshot(source.id)
    assert [(e.path, e.content) for e in snap] == [("/a.md", "content of /a.md"), ("/a/x.md", "content of /a/x.md")]
    assert all(e.content_sha256 == content_sha256(e.content) for e in snap)
    path, content, sha = snap[0]  # plain tuples too
    assert (path, sha) == ("/a.md", content_sha256(content))
    source_versions = _versions(svc, source.id)

    dreamer = session_actor("sesn_dream")
    clone = svc.clone_store(
        source.id,
        "source (dreamed)",
        actor=dreamer,
        proposal={"status": "proposed", "source_memory_store_id": source.id},
    )
    assert clone.id != source.id and (clone.description, clone.metadata) == ("facts", {"user": "u1"})
    assert clone.proposal is not None and clone.proposal.status == "proposed"
    assert svc.snapshot(clone.id) == snap
    clone_versions = _versions(svc, clone.id)
    assert len(clone_versions) == 2 and all(
        v.operation == "created" and v.created_by == dreamer for v in clone_versions
    )
    assert {m.id for m in svc.list_memories(clone.id).data}.isdisjoint(
        {m.id for m in svc.list_memories(source.id).data}
    )

    svc.write_memory(clone.id, "/a.md", "merged", dreamer)
    assert svc.snapshot(source.id) == snap and _versions(svc, source.id) == source_versions
    promoted = svc.set_store_proposal(clone.id, {"status": "promoted", "source_memory_store_id": source.id})
    assert promoted.proposal is not None and promoted.proposal.status == "promoted"
    with pytest.raises(InvalidMemoryRequest):
        svc.set_store_proposal(clone.id, {"status": "maybe"})
    svc.archive_store(source.id)
    assert svc.snapshot(svc.clone_store(source.id, "from archived", actor=ALICE).id) == snap


# --- migrations ------------------------------------------------------------------------------------------


def _schema_version(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    finally:
        engine.dispose()


MIGRATE_CHILD = """
import sys, time
from pathlib import Path
from managed_agents._memory import MemoryService
from managed_agents._store import SessionStore
print("ready", flush=True)
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
service = MemoryService(sys.argv[1])
service.create_store("from " + sys.argv[3])
SessionStore(sys.argv[1]).put_blob({"from": sys.argv[3]})
"""


def test_migrations_concurrent_start_and_idempotent(new_db: Callable[[], str], tmp_path: Path) -> None:
    url = new_db()
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_CHILD, url, str(go), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name in ("one", "two")
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    go.touch()  # both processes start migrating the fresh database at the same moment
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    assert _schema_version(url) == [head_revision()]
    with MemoryServiceCtx(url) as svc:
        assert sorted(s.name for s in svc.list_stores().data) == ["from one", "from two"]
    engine = sa.create_engine(url)
    try:
        ensure_schema(engine)  # again, on a new engine: nothing to do
        assert _schema_version(url) == [head_revision()]
    finally:
        engine.dispose()


def test_migration_adopts_a_database_made_by_create_all_and_matches_the_tables(new_db: Callable[[], str]) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from managed_agents._store import SessionStore
    from managed_agents._store import metadata as session_metadata

    url = new_db()
    engine = sa.create_engine(url)
    try:
        session_metadata.create_all(engine)  # what SessionStore did before migrations existed
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO blobs (ref, body) VALUES ('old', '1')"))
        store = SessionStore(url)
        assert store.get_blob("old") == 1
        store.close()
        assert _schema_version(url) == [head_revision()]

        combined = sa.MetaData()
        for metadata in target_metadata():
            for table in metadata.tables.values():
                table.to_metadata(combined)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
            assert compare_metadata(context, combined) == []
    finally:
        engine.dispose()


class MemoryServiceCtx:
    def __init__(self, url: str) -> None:
        self.service = MemoryService(url)

    def __enter__(self) -> MemoryService:
        return self.service

    def __exit__(self, *_: object) -> None:
        self.service.close()


def test_service_on_the_session_store_engine(db_url: str) -> None:
    from managed_agents._store import SessionStore

    store = SessionStore(db_url)
    try:
        svc = MemoryService(store.engine)
        s = svc.create_store("shared engine")
        svc.write_memory(s.id, "/a.md", "a", ALICE)
        assert svc.snapshot(s.id)[0].content == "a"
        svc.close()  # does not dispose an engine it was given
        assert store.put_blob({"still": "usable"})
    finally:
        store.close()


# --- the CLI ----------------------------------------------------------------------------------------------


def test_cli_round_trip(tmp_path: Path) -> None:
    env = {**os.environ, "MANAGED_AGENTS_STORE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "USER": "carol"}
    env["COLUMNS"] = "200"

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "managed_agents", "memory", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        return proc

    store = json.loads(cli("stores", "create", "Team notes", "--description", "for the team", "--json").stdout)
    sid = store["id"]
    assert sid.startswith("memstore_") and store["description"] == "for the team"
    assert "Team notes" in cli("stores", "list").stdout
    assert "for the team" in cli("stores", "get", sid).stdout

    first = json.loads(cli("memories", "write", sid, "/notes/plan.md", "--content", "step 1", "--json").stdout)
    (tmp_path / "plan.md").write_text("step 1\nstep 2\n")
    cli(
        "memories",
        "write",
        sid,
        "/notes/plan.md",
        "--file",
        str(tmp_path / "plan.md"),
        "--if-sha",
        first["content_sha256"],
    )
    assert cli("memories", "get", sid, "/notes/plan.md").stdout == "step 1\nstep 2\n"
    got = json.loads(cli("memories", "get", sid, first["id"], "--json").stdout)
    assert got["content"] == "step 1\nstep 2\n" and got["path"] == "/notes/plan.md"

    listed = json.loads(cli("memories", "list", sid, "--prefix", "/notes/", "--json").stdout)
    assert [m["path"] for m in listed] == ["/notes/plan.md"]

    versions = json.loads(cli("versions", "list", sid, "--memory", "/notes/plan.md", "--json").stdout)
    assert [v["operation"] for v in versions] == ["modified", "created"]
    assert versions[1]["created_by"] == {"type": "user_actor", "user_id": "carol"}
    redacted = json.loads(cli("versions", "redact", sid, versions[1]["id"], "--json").stdout)
    assert redacted["redacted_at"] and redacted["content_sha256"] is None
    assert "user:carol" in cli("versions", "list", sid).stdout

    # Errors: bad input exits 2 naming the rule, a failed precondition 3, the head can't be redacted.
    assert "'..' segment" in cli("memories", "write", sid, "/a/../b", "--content", "x", code=2).stderr
    conflict = cli("memories", "write", sid, "/notes/plan.md", "--content", "x", "--if-sha", "0" * 64, "--json", code=3)
    assert json.loads(conflict.stderr)["error"]["type"] == "memory_precondition_failed_error"
    assert "cannot be redacted" in cli("versions", "redact", sid, versions[0]["id"], code=2).stderr

    assert "deleted memory" in cli("memories", "delete", sid, "/notes/plan.md").stdout
    cli("stores", "archive", sid)
    assert "archived" in cli("memories", "write", sid, "/y", "--content", "y", code=2).stderr


def test_errors_share_a_base_class() -> None:
    for cls in (InvalidMemoryRequest, MemoryNotFound, MemoryPreconditionFailed, MemoryPathConflict):
        assert issubclass(cls, MemoryStoreError)
