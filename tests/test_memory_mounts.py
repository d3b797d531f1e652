"""Memory stores mounted in sessions: the agent reads and writes /mnt/memory/<slug> with its ordinary
tools, and the sandbox worker syncs the folder with the memory store (versions attributed to the
session, preconditions so another session's write is never overwritten, read-only stores enforced).

Sessions run on a real Temporal dev server against the mock Claude server, with the memory stores in
the worker's SQLite store; the sync logic is also tested directly, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError

from managed_agents._client import new_session_id
from managed_agents._memory import MemoryService, content_sha256, session_actor, user_actor
from managed_agents._models.activity_io import MemoryMountRequest
from managed_agents._models.session import SessionCreateParams
from managed_agents._prompt import memory_section
from managed_agents._sandbox.isolation import isolation_available
from managed_agents._sandbox.memory_mounts import MemoryManifest, MemorySync
from managed_agents.testing.mock_claude import Turn
from tests.helpers import agent, marker, session_input
from tests.test_memory_store import db_url, new_db, pg_cluster  # noqa: F401  (fixtures: SQLite and PostgreSQL)
from tests.test_session_tools import wait_for

ALICE = user_actor("alice")

needs_bwrap = pytest.mark.skipif(not isolation_available()[0], reason="bubblewrap is not usable here")


@pytest.fixture
def memory(harness: Any) -> MemoryService:
    # The worker's own database (settings.resolved_store_url()): what the sandbox syncs with.
    return MemoryService(harness.store.engine)


def results_by_name(events: list[Any]) -> list[tuple[str, str, bool]]:
    uses = {e.id: e.model_extra["name"] for e in events if e.type == "agent.tool_use"}
    out = []
    for e in events:
        if e.type == "agent.tool_result":
            text = "\n".join(b.get("text", "") for b in e.model_extra["content"])
            out.append((uses[e.model_extra["tool_use_id"]], text, bool(e.model_extra["is_error"])))
    return out


def memory_body(m: str, resources: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    return session_input(
        f"{m} use your memory", resources=resources, options={"heartbeat_timeout_seconds": 5, **options}
    )


# --- sessions ----------------------------------------------------------------------------------------


async def test_session_reads_and_writes_a_mounted_memory(harness: Any, memory: MemoryService) -> None:
    store = memory.create_store("Team Notes!", description="What the team agreed on")
    memory.write_memory(store.id, "/style.md", "Use ruff.\n", ALICE)
    m = marker()
    harness.mock.script_for(
        m,
        Turn.tool_use("read", {"file_path": "/mnt/memory/team-notes/style.md"}),
        Turn.tool_use(
            "edit",
            {"file_path": "/mnt/memory/team-notes/style.md", "old_string": "ruff", "new_string": "ruff and mypy"},
        ),
        Turn.tool_use("write", {"file_path": "/mnt/memory/team-notes/ideas/next.md", "content": "Try Temporal.\n"}),
        Turn.tool_use("glob", {"pattern": "**/*.md", "path": "/mnt/memory"}),
        Turn.text("Noted."),
    )
    resources = [{"type": "memory_store", "memory_store_id": store.id, "instructions": "Keep entries short."}]
    handle = await harness.sessions.create(memory_body(m, resources))
    session = await handle.result()
    events = await handle.events()
    results = results_by_name(events)
    assert not any(is_error for *_, is_error in results), results
    assert results[0] == ("read", "Use ruff.\n", False)
    assert "memory/team-notes/ideas/next.md" in results[3][1] and "memory/team-notes/style.md" in results[3][1]

    # The edit became a new version, attributed to this session; the new file a new memory.
    current = memory.retrieve_memory(store.id, "/style.md")
    assert current.content == "Use ruff and mypy.\n"
    head = memory.retrieve_version(store.id, current.memory_version_id)
    assert head.created_by == session_actor(handle.id)
    assert head.operation == "modified"
    created = memory.retrieve_memory(store.id, "/ideas/next.md")
    assert created.content == "Try Temporal.\n"
    by_session = memory.list_versions(store.id, session_id=handle.id).data
    assert sorted(v.operation for v in by_session) == ["created", "modified"]

    # The session object lists the store like BetaManagedAgentsMemoryStoreResource.
    assert session.resources == [
        {
            "type": "memory_store",
            "memory_store_id": store.id,
            "access": "read_write",
            "instructions": "Keep entries short.",
            "mount_path": "/mnt/memory/team-notes",
            "name": "Team Notes!",
            "description": "What the team agreed on",
        }
    ]
    # The system prompt has the memory section after the agent's own, one cache breakpoint at its end.
    system = harness.mock.requests_for(m)[0].body["system"]
    assert system[0] == {"type": "text", "text": agent()["system"]}
    assert "cache_control" in system[-1] and len(system) == 2
    section = system[1]["text"]
    assert "/mnt/memory/team-notes (read-write)" in section
    assert "What the team agreed on" in section and "Keep entries short." in section
    # The manifest of what was synced lives outside the workspace.
    workspace = harness.settings.resolved_workspace_root() / handle.id
    assert sorted(p.name for p in workspace.iterdir()) == ["memory"]


@needs_bwrap
async def test_bash_sees_the_mount_and_its_changes_are_saved(harness: Any, memory: MemoryService) -> None:
    store = memory.create_store("log")
    memory.write_memory(store.id, "/old.md", "old\n", ALICE)
    m = marker()
    harness.mock.script_for(
        m,
        Turn.tool_use(
            "bash",
            {
                "command": "cat /mnt/memory/log/old.md && echo new > /mnt/memory/log/new.md "
                "&& rm /mnt/memory/log/old.md && ls /workspace/memory/log"
            },
        ),
        Turn.text("done"),
    )
    handle = await harness.sessions.create(memory_body(m, [{"type": "memory_store", "memory_store_id": store.id}]))
    await handle.result()
    results = results_by_name(await handle.events())
    assert results == [("bash", "old\nnew.md\n", False)]
    assert [x.path for x in memory.list_memories(store.id).data] == ["/new.md"]
    deleted = memory.list_versions(store.id, operation="deleted").data
    assert len(deleted) == 1 and deleted[0].created_by == session_actor(handle.id)


async def test_read_only_store_refuses_changes(harness: Any, memory: MemoryService) -> None:
    store = memory.create_store("Reference", description="Facts to rely on")
    memory.write_memory(store.id, "/facts.md", "water is wet\n", ALICE)
    m = marker()
    turns = [
        Turn.tool_use("write", {"file_path": "/mnt/memory/reference/facts.md", "content": "fire is cold\n"}),
        Turn.tool_use("edit", {"file_path": "memory/reference/facts.md", "old_string": "wet", "new_string": "dry"}),
        Turn.tool_use("write", {"file_path": "/mnt/memory/reference/new.md", "content": "x"}),
        Turn.tool_use("read", {"file_path": "/mnt/memory/reference/facts.md"}),
    ]
    if isolation_available()[0]:
        turns.append(Turn.tool_use("bash", {"command": "echo hacked > /mnt/memory/reference/facts.md"}))
        turns.append(Turn.tool_use("bash", {"command": "echo hacked > /workspace/memory/reference/facts.md"}))
    harness.mock.script_for(m, *turns, Turn.text("ok"))
    resources = [{"type": "memory_store", "memory_store_id": store.id, "access": "read_only"}]
    handle = await harness.sessions.create(memory_body(m, resources))
    session = await handle.result()
    results = results_by_name(await handle.events())
    assert len(results) == len(turns)
    for name, text, is_error in results[:3]:
        assert is_error and "read-only" in text and "/mnt/memory/reference" in text, (name, text)
    assert results[3] == ("read", "water is wet\n", False)
    for name, text, is_error in results[4:]:
        assert is_error and "Read-only file system" in text, (name, text)
    assert memory.retrieve_memory(store.id, "/facts.md").content == "water is wet\n"
    assert len(memory.list_versions(store.id).data) == 1
    assert [x.path for x in memory.list_memories(store.id).data] == ["/facts.md"]
    assert "/mnt/memory/reference (read-only" in harness.mock.requests_for(m)[0].body["system"][-1]["text"]
    assert session.resources[0]["access"] == "read_only"


@needs_bwrap
async def test_second_writer_gets_a_conflict_and_reapplies(harness: Any, memory: MemoryService) -> None:
    """Session A edits the memory while session B writes it: B's version is kept, A is told, and A's
    re-applied write then succeeds on top of B's."""
    store = memory.create_store("shared")
    memory.write_memory(store.id, "/todo.md", "v0\n", ALICE)
    resources = [{"type": "memory_store", "memory_store_id": store.id}]
    workspaces = harness.settings.resolved_workspace_root()
    a, b = marker(), marker()
    # A's bash waits (inside its sandbox) for a file the test drops in its workspace once B has
    # written: so B's write lands between A's pull and A's push, deterministically.
    harness.mock.script_for(
        a,
        Turn.tool_use(
            "bash",
            {
                "command": "while [ ! -e go ]; do sleep 0.05; done; echo 'from A' > memory/shared/todo.md",
                "timeout_ms": 60000,
            },
        ),
        Turn.tool_use("read", {"file_path": "/mnt/memory/shared/todo.md"}),
        Turn.tool_use("write", {"file_path": "/mnt/memory/shared/todo.md", "content": "from B\nfrom A\n"}),
        Turn.text("re-applied"),
    )
    harness.mock.script_for(
        b,
        Turn.tool_use("write", {"file_path": "/mnt/memory/shared/todo.md", "content": "from B\n"}),
        Turn.text("written"),
    )
    session_a = await harness.sessions.create(memory_body(a, resources))
    await wait_for(session_a, lambda events: any(e.type == "agent.tool_use" for e in events))
    session_b = await harness.sessions.create(memory_body(b, resources))
    await session_b.result()
    assert memory.retrieve_memory(store.id, "/todo.md").content == "from B\n"
    (workspaces / session_a.id / "go").touch()
    await session_a.result()

    results = results_by_name(await session_a.events())
    assert results[0][0] == "bash" and "MEMORY CONFLICT" in results[0][1]
    assert "/mnt/memory/shared/todo.md" in results[0][1] and "NOT saved" in results[0][1]
    assert results[1] == ("read", "from B\n", False)  # the local file was reset to B's version
    assert not results[2][2]
    final = memory.retrieve_memory(store.id, "/todo.md")
    assert final.content == "from B\nfrom A\n"
    versions = memory.list_versions(store.id).data  # newest first
    assert [v.created_by for v in versions] == [session_actor(session_a.id), session_actor(session_b.id), ALICE]


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([{"type": "file", "file_id": "file_1"}], "resources[0]: file resources are not supported"),
        (
            [{"type": "github_repository", "url": "https://github.com/a/b"}],
            "resources[0]: github_repository resources are not supported",
        ),
        ([{"type": "memory_store"}], "resources.0.memory_store_id: Field required"),
        ([{"type": "memory_store", "memory_store_id": "memstore_a", "access": "write"}], "resources.0.access"),
        (
            [{"type": "memory_store", "memory_store_id": "memstore_a", "instructions": "x" * 4097}],
            "resources.0.instructions",
        ),
        ([{"type": "memory_store", "memory_store_id": f"memstore_{i}"} for i in range(9)], "at most 8 memory stores"),
        ([{"type": "memory_store", "memory_store_id": "memstore_a"}] * 2, "memstore_a is attached twice"),
        ([{"type": "memory_store", "memory_store_id": "notes"}], "resources.0.memory_store_id"),
    ],
    ids=["file", "github", "no-id", "access", "instructions", "nine", "duplicate", "bad-id"],
)
async def test_bad_resources_fail_naming_the_field(harness: Any, resources: Any, expected: str) -> None:
    body = {"agent": agent(), "resources": resources}
    with pytest.raises(ValueError, match="resources"):  # the client refuses it before starting anything
        SessionCreateParams.model_validate(body)
    handle = await harness.client.start_workflow(
        "AgentSession", body, id=new_session_id(), task_queue=harness.settings.task_queue
    )
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert expected in str(info.value.cause), str(info.value.cause)


async def test_missing_or_archived_store_fails_the_session_clearly(harness: Any, memory: MemoryService) -> None:
    archived = memory.create_store("old")
    memory.archive_store(archived.id)
    for store_id, why in (("memstore_doesnotexist", "was not found"), (archived.id, "is archived")):
        m = marker()
        body = memory_body(m, [{"type": "memory_store", "memory_store_id": store_id}])
        handle = await harness.sessions.create(body)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        message = str(info.value.cause)
        assert store_id in message and why in message, message
        events = await handle.events()
        errors = [e for e in events if e.type == "session.error"]
        assert len(errors) == 1 and store_id in errors[0].model_extra["error"]["message"]
        assert events[-1].type == "session.status_terminated"
        assert harness.mock.requests_for(m) == []  # the model was never asked


# --- the sync logic, directly (SQLite and PostgreSQL) --------------------------------------------------


class Mounted:
    """A workspace with stores mounted by MemorySync, as the sandbox activity drives it."""

    def __init__(self, svc: MemoryService, tmp: Path, session_id: str, requests: list[MemoryMountRequest]) -> None:
        self.sync = MemorySync(svc, tmp / "state")
        self.workspace = tmp / "ws" / session_id
        self.workspace.mkdir(parents=True)
        self.manifest, self.mounts = self.sync.provision(session_id, self.workspace, requests)

    def path(self, rel: str) -> Path:
        return self.workspace / "memory" / rel

    def pull(self) -> None:
        self.sync.pull(self.workspace, self.manifest)

    def push(self) -> list[str]:
        return self.sync.push(self.workspace, self.manifest)


@pytest.fixture
def svc(db_url: str) -> Iterator[MemoryService]:  # noqa: F811
    service = MemoryService(db_url)
    yield service
    service.close()


def test_provision_downloads_with_unique_slugs(svc: MemoryService, tmp_path: Path) -> None:
    one, two = svc.create_store("Notes"), svc.create_store("notes")
    svc.write_memory(one.id, "/a/b.md", "one", ALICE)
    svc.write_memory(two.id, "/c.md", "two", ALICE)
    mounted = Mounted(svc, tmp_path, "sesn_1", [MemoryMountRequest(memory_store_id=s.id) for s in (one, two)])
    assert [x.mount_path for x in mounted.mounts] == ["/mnt/memory/notes", "/mnt/memory/notes-2"]
    assert mounted.path("notes/a/b.md").read_text() == "one"
    assert mounted.path("notes-2/c.md").read_text() == "two"
    assert MemoryManifest.model_validate_json(mounted.sync.manifest_path("sesn_1").read_text()) == mounted.manifest
    assert not str(mounted.sync.manifest_path("sesn_1")).startswith(str(mounted.workspace))
    assert mounted.push() == []  # nothing changed: nothing written
    assert len(svc.list_versions(one.id).data) == 1
    section = memory_section(mounted.mounts)
    assert section.index("/mnt/memory/notes (") < section.index("/mnt/memory/notes-2 (")


def test_pull_brings_other_writers_changes_but_keeps_local_edits(svc: MemoryService, tmp_path: Path) -> None:
    store = svc.create_store("s")
    for name in ("kept", "theirs", "gone"):
        svc.write_memory(store.id, f"/{name}.md", "v0", ALICE)
    mounted = Mounted(svc, tmp_path, "sesn_1", [MemoryMountRequest(memory_store_id=store.id)])
    mounted.path("s/kept.md").write_text("local edit")  # not pushed yet (say the push failed)
    svc.write_memory(store.id, "/kept.md", "remote", ALICE)
    svc.write_memory(store.id, "/theirs.md", "remote", ALICE)
    svc.write_memory(store.id, "/added.md", "remote", ALICE)
    svc.delete_memory(store.id, "/gone.md", actor=ALICE)
    mounted.pull()
    assert mounted.path("s/kept.md").read_text() == "local edit"
    assert mounted.path("s/theirs.md").read_text() == "remote"
    assert mounted.path("s/added.md").read_text() == "remote"
    assert not mounted.path("s/gone.md").exists()
    # The local edit of a memory changed meanwhile is a conflict: the store keeps the other version.
    notes = mounted.push()
    assert len(notes) == 1 and "MEMORY CONFLICT" in notes[0] and "/mnt/memory/s/kept.md" in notes[0]
    assert mounted.path("s/kept.md").read_text() == "remote"
    assert svc.retrieve_memory(store.id, "/kept.md").content == "remote"
    # Re-applied on top, it is saved with the session as author.
    mounted.path("s/kept.md").write_text("remote + local")
    assert mounted.push() == []
    saved = svc.retrieve_memory(store.id, "/kept.md")
    assert saved.content == "remote + local"
    assert svc.retrieve_version(store.id, saved.memory_version_id).created_by == session_actor("sesn_1")


def test_conflicting_create_and_delete_keep_the_other_writer(svc: MemoryService, tmp_path: Path) -> None:
    store = svc.create_store("s")
    svc.write_memory(store.id, "/old.md", "v0", ALICE)
    mounted = Mounted(svc, tmp_path, "sesn_1", [MemoryMountRequest(memory_store_id=store.id)])
    mounted.path("s/new.md").write_text("mine")
    svc.write_memory(store.id, "/new.md", "theirs", ALICE)
    mounted.path("s/old.md").unlink()
    svc.write_memory(store.id, "/old.md", "v1", ALICE)
    notes = mounted.push()
    assert len(notes) == 2 and all("MEMORY CONFLICT" in n for n in notes)
    assert "your deletion was NOT saved" in " ".join(notes)
    assert mounted.path("s/new.md").read_text() == "theirs"
    assert mounted.path("s/old.md").read_text() == "v1"
    assert svc.retrieve_memory(store.id, "/new.md").content == "theirs"
    # A deletion of an unchanged memory is saved, with the precondition.
    mounted.path("s/old.md").unlink()
    assert mounted.push() == []
    assert [x.path for x in svc.list_memories(store.id).data] == ["/new.md"]


def test_rules_are_enforced_at_sync_and_reported_once(svc: MemoryService, tmp_path: Path) -> None:
    store = svc.create_store("s")
    mounted = Mounted(svc, tmp_path, "sesn_1", [MemoryMountRequest(memory_store_id=store.id)])
    mounted.path("s/big.md").write_text("x" * 102_401)
    mounted.path("s/binary.bin").write_bytes(b"\xff\xfe\x00")
    mounted.path("s/ok.md").write_text("fine")
    deep = mounted.path("s/" + "/".join("d" * 21))
    deep.parent.mkdir(parents=True)
    deep.write_text("too deep")
    notes = mounted.push()
    assert len(notes) == 3, notes
    assert any("big.md" in n and "102,400" in n for n in notes)
    assert any("binary.bin" in n and "UTF-8" in n for n in notes)
    assert any("path rules" in n for n in notes)
    assert [x.path for x in svc.list_memories(store.id).data] == ["/ok.md"]
    assert mounted.push() == []  # unchanged since: not repeated
    mounted.path("s/big.md").write_text("now small")
    assert mounted.push() == []
    assert svc.retrieve_memory(store.id, "/big.md").content == "now small"


def test_read_only_changes_are_discarded(svc: MemoryService, tmp_path: Path) -> None:
    store = svc.create_store("ref")
    svc.write_memory(store.id, "/facts.md", "true", ALICE)
    mounted = Mounted(svc, tmp_path, "sesn_1", [MemoryMountRequest(memory_store_id=store.id, access="read_only")])
    facts = mounted.path("ref/facts.md")
    assert not os.stat(facts).st_mode & 0o222  # read-only on disk too
    os.chmod(facts, 0o644)
    facts.write_text("false")
    mounted.path("ref/extra.md").write_text("x")
    notes = mounted.push()
    assert len(notes) == 1 and "read-only" in notes[0] and "facts.md" in notes[0] and "extra.md" in notes[0]
    assert facts.read_text() == "true" and not mounted.path("ref/extra.md").exists()
    assert len(svc.list_versions(store.id).data) == 1


def test_removed_or_redirected_folder_is_restored_not_deleted(svc: MemoryService, tmp_path: Path) -> None:
    store = svc.create_store("s")
    svc.write_memory(store.id, "/keep.md", "keep", ALICE)
    mounted = Mounted(svc, tmp_path, "sesn_1", [MemoryMountRequest(memory_store_id=store.id)])
    outside = tmp_path / "host-secrets"
    outside.mkdir()
    (outside / "secret.md").write_text("do not upload")
    shutil.rmtree(mounted.workspace / "memory")
    (mounted.workspace / "memory").symlink_to(outside)  # the agent points memory/ at a host folder
    notes = mounted.push()
    assert len(notes) == 1 and "removed or replaced" in notes[0]
    assert [x.path for x in svc.list_memories(store.id).data] == ["/keep.md"]  # nothing deleted, nothing uploaded
    mounted.pull()  # before the next tool call: the folder is back, downloaded again
    assert not (mounted.workspace / "memory").is_symlink()
    assert mounted.path("s/keep.md").read_text() == "keep"
    assert (outside / "secret.md").read_text() == "do not upload" and not (outside / "s").exists()
    assert mounted.push() == []


def test_missing_and_archived_stores_are_refused(svc: MemoryService, tmp_path: Path) -> None:
    from managed_agents._sandbox.memory_mounts import MemoryMountError

    archived = svc.create_store("a")
    svc.archive_store(archived.id)
    for store_id, why in (("memstore_nope", "not found"), (archived.id, "archived")):
        with pytest.raises(MemoryMountError, match=why) as info:
            Mounted(svc, tmp_path / store_id, "sesn_1", [MemoryMountRequest(memory_store_id=store_id)])
        assert store_id in str(info.value)


def test_sha_of_synced_content_matches_the_store(svc: MemoryService, tmp_path: Path) -> None:
    store = svc.create_store("s")
    mounted = Mounted(svc, tmp_path, "sesn_1", [MemoryMountRequest(memory_store_id=store.id)])
    mounted.path("s/ü.md").write_text("héllo\n")
    assert mounted.push() == []
    saved = svc.retrieve_memory(store.id, "/ü.md")
    assert saved.content_sha256 == content_sha256("héllo\n") == mounted.manifest.mounts[0].files["/ü.md"]


def test_bash_binds_only_real_workspace_folders(tmp_path: Path) -> None:
    from managed_agents._sandbox.isolation import SandboxPolicy, WorkspaceBind, bash_argv

    ws = tmp_path / "ws"
    (ws / "memory" / "notes").mkdir(parents=True)
    bind = WorkspaceBind(source="memory/notes", target=Path("/mnt/memory/notes"), read_only=True)
    argv = bash_argv(SandboxPolicy(workspace_binds=(bind,)), ws, "true")
    folder = str(ws / "memory" / "notes")
    assert ["--ro-bind", folder, "/mnt/memory/notes"] == argv[argv.index(folder) - 1 : argv.index(folder) + 2]
    assert "/workspace/memory/notes" in argv  # read-only at its workspace path too
    # The agent swapped the folder for a link to a host directory: never bound.
    shutil.rmtree(ws / "memory" / "notes")
    (ws / "memory" / "notes").symlink_to("/etc")
    with pytest.raises(OSError, match="not a folder of the workspace"):
        bash_argv(SandboxPolicy(workspace_binds=(bind,)), ws, "true")
    with pytest.raises(ValueError, match="reserved"):
        SandboxPolicy(workspace_binds=(WorkspaceBind(source="memory/x", target=Path("/workspace/x")),))
    with pytest.raises(ValueError, match="normalised relative"):
        WorkspaceBind(source="../x", target=Path("/mnt/memory/x"))
