"""Memory stores mounted in a session's workspace: downloaded at provisioning, synced around tool calls.

Each attached store is a folder of the workspace, ``memory/<slug>``, which the agent also reaches as
``/mnt/memory/<slug>`` (the file tools alias it; bash in bubblewrap gets it bound there). The
sandbox worker keeps it in step with the :class:`~managed_agents._memory.MemoryService`:

* **pull**, before every tool call: when the store's newest version differs from the one seen at the
  last pull (one indexed query), its snapshot is applied to the files the agent has *not* changed
  since the last sync (the agent's own pending changes are never overwritten);
* **push**, after every tool call that can change files (write, edit, bash): each file that differs
  from what was last synced is written back with a ``content_sha256`` precondition equal to the hash
  last synced (new files are created, deleted files deleted with ``expected_content_sha256``), the
  versions attributed to ``session_actor(session_id)``. A failed precondition means another writer
  changed the memory meanwhile: theirs is kept, the local file is reset to the store's content and
  the tool result gets a note, so the agent can re-apply its change. Files the memory rules refuse
  (over 100 kB, not UTF-8 text, bad path, store full) stay local and are reported once.
* **read-only** stores are never written back: write/edit refuse them, bubblewrap binds them
  read-only, and any change found at sync anyway (bash without isolation) is discarded: the files
  are restored from the store and the agent is told.

What was last synced (path -> sha256) is kept in a manifest per workspace on the sandbox host, in a
directory outside every workspace, so the agent cannot see or forge it. Everything here is
synchronous (the activities call it through ``asyncio.to_thread``, one sync at a time per workspace).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from managed_agents._logging import get_logger
from managed_agents._memory import (
    MAX_CONTENT_BYTES,
    InvalidMemoryRequest,
    MemoryNotFound,
    MemoryPathConflict,
    MemoryPreconditionFailed,
    MemoryService,
    MemoryStoreArchived,
    MemoryStoreError,
    MemoryStoreNotFound,
    memory_store_slug,
    session_actor,
    validate_path,
)
from managed_agents._models.activity_io import MemoryMount, MemoryMountRequest
from managed_agents._sandbox.isolation import WorkspaceBind
from managed_agents._sandbox.paths import SANDBOX_MEMORY, WORKSPACE_MEMORY_DIR, is_within

log = get_logger("managed_agents.sandbox.memory")

Access = Literal["read_write", "read_only"]

#: Tools after which the mounted folders are synced back (the others cannot change files).
WRITING_TOOLS = frozenset({"write", "edit", "bash"})

_TMP_PREFIX = ".memory-sync-"


class MemoryMountError(Exception):
    """A store cannot be mounted (missing, archived): the session cannot start."""


class SyncedMount(BaseModel):
    memory_store_id: str
    slug: str
    access: Access
    head: str | None = Field(None, description="The store's newest version id at the last pull")
    files: dict[str, str] = Field(
        default_factory=dict, description="Memory path -> sha256 of the content last synced (local = store then)"
    )
    rejected: dict[str, str] = Field(
        default_factory=dict, description="Memory path -> sha256 of local content the rules refused (told once)"
    )

    @property
    def workspace_path(self) -> str:
        return f"{WORKSPACE_MEMORY_DIR}/{self.slug}"

    @property
    def mount_path(self) -> str:
        return f"{SANDBOX_MEMORY}/{self.slug}"


class MemoryManifest(BaseModel):
    session_id: str = Field(description="The session the stores were attached to: writes are attributed to it")
    mounts: list[SyncedMount]


class MemorySync:
    def __init__(self, memory: MemoryService, state_dir: Path) -> None:
        self.memory = memory
        self.state_dir = state_dir

    # --- manifest ---------------------------------------------------------------------------------

    def manifest_path(self, workspace_id: str) -> Path:
        return self.state_dir / f"{workspace_id}.json"

    def load(self, workspace_id: str) -> MemoryManifest | None:
        try:
            text = self.manifest_path(workspace_id).read_text()
        except FileNotFoundError:
            return None
        return MemoryManifest.model_validate_json(text)

    def save(self, workspace_id: str, manifest: MemoryManifest) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.manifest_path(workspace_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(manifest.model_dump_json())
        os.replace(tmp, path)

    # --- provisioning -----------------------------------------------------------------------------

    def provision(
        self, session_id: str, workspace: Path, requests: list[MemoryMountRequest]
    ) -> tuple[MemoryManifest, list[MemoryMount]]:
        """Download every requested store into ``workspace/memory/<slug>`` and save the manifest.

        Raises MemoryMountError naming the store when one is missing or archived. A retried
        provisioning starts the folders over (no tool has run in them yet).
        """
        stores = []
        for req in requests:
            try:
                store = self.memory.retrieve_store(req.memory_store_id)
            except MemoryStoreNotFound:
                raise MemoryMountError(
                    f"memory store {req.memory_store_id} was not found: the session cannot mount it"
                ) from None
            if store.archived_at is not None:
                raise MemoryMountError(
                    f"memory store {req.memory_store_id} is archived: archived stores cannot be attached to sessions"
                )
            stores.append((req, store))
        mounts: list[MemoryMount] = []
        synced: list[SyncedMount] = []
        taken: set[str] = set()
        for req, store in stores:
            base = memory_store_slug(store.name)
            slug, n = base, 1
            while slug in taken:  # two stores with the same name: notes, notes-2, ...
                n += 1
                slug = f"{base}-{n}"
            taken.add(slug)
            mount = SyncedMount(memory_store_id=store.id, slug=slug, access=req.access)
            folder = _folder(workspace, mount)
            if folder.is_symlink() or folder.exists():
                _remove(folder)
            folder.mkdir(parents=True)
            mount.head = self._head(store.id)  # before the snapshot: a write in between is pulled later
            for entry in self.memory.snapshot(store.id):
                if _write_local(folder, entry.path, entry.content, read_only=req.access == "read_only"):
                    mount.files[entry.path] = entry.content_sha256
            synced.append(mount)
            mounts.append(
                MemoryMount(
                    memory_store_id=store.id,
                    name=store.name,
                    description=store.description,
                    mount_path=mount.mount_path,
                    workspace_path=mount.workspace_path,
                    access=req.access,
                    instructions=req.instructions,
                )
            )
        manifest = MemoryManifest(session_id=session_id, mounts=synced)
        self.save(session_id, manifest)
        return manifest, mounts

    # --- around tool calls ------------------------------------------------------------------------

    @staticmethod
    def binds(manifest: MemoryManifest) -> tuple[WorkspaceBind, ...]:
        return tuple(
            WorkspaceBind(source=m.workspace_path, target=Path(m.mount_path), read_only=m.access == "read_only")
            for m in manifest.mounts
        )

    @staticmethod
    def read_only_mount(root: str, real: str, manifest: MemoryManifest) -> SyncedMount | None:
        """The read-only mount holding the resolved path ``real`` (under the workspace ``root``)."""
        for m in manifest.mounts:
            if m.access == "read_only" and is_within(os.path.join(root, m.workspace_path), real):
                return m
        return None

    def pull(self, workspace: Path, manifest: MemoryManifest) -> None:
        """Bring other writers' changes into the files the agent has not changed (updates ``manifest``)."""
        for m in manifest.mounts:
            folder = _folder(workspace, m)
            if _ensure_folder(workspace, folder):
                # The agent removed or replaced the mount folder (a real mount could not be removed):
                # download it again rather than read that as "delete every memory".
                m.files, m.rejected, m.head = {}, {}, None
            try:
                head = self._head(m.memory_store_id)
            except MemoryStoreNotFound:
                continue  # the store was deleted: the local copy stays as it is
            if head == m.head:
                continue
            snapshot = {e.path: e for e in self.memory.snapshot(m.memory_store_id)}
            for path in sorted(set(snapshot) | set(m.files)):
                synced = m.files.get(path)
                if _local_sha(folder, path) != synced:
                    continue  # changed locally since the last sync: the push decides
                remote = snapshot.get(path)
                if remote is None:
                    _delete_local(folder, path)
                    m.files.pop(path, None)
                elif remote.content_sha256 != synced and _write_local(
                    folder, path, remote.content, read_only=m.access == "read_only"
                ):
                    m.files[path] = remote.content_sha256
            m.head = head

    def push(self, workspace: Path, manifest: MemoryManifest) -> list[str]:
        """Write the agent's changes back; returns notes for the agent (conflicts, refusals)."""
        notes: list[str] = []
        for m in manifest.mounts:
            if m.access == "read_only":
                notes += self._discard_changes(workspace, m)
            else:
                notes += self._push_mount(workspace, m, manifest.session_id)
        return notes

    # --- internals --------------------------------------------------------------------------------

    def _head(self, store_id: str) -> str | None:
        page = self.memory.list_versions(store_id, limit=1)
        return page.data[0].id if page.data else None

    def _push_mount(self, workspace: Path, m: SyncedMount, session_id: str) -> list[str]:
        folder = _folder(workspace, m)
        if not _intact(folder):
            return [
                f"{m.mount_path} was removed or replaced: nothing was saved or deleted in the memory store, "
                "and the folder is downloaded again before your next tool call."
            ]
        actor = session_actor(session_id)
        local, irregular = _scan(folder)
        notes: list[str] = []
        for path in irregular:
            if m.rejected.get(path) != "irregular":
                m.rejected[path] = "irregular"
                notes.append(f"{_shown(m, path)} is not a regular file (a link?): it was not saved to memory.")
        for path, sha in local.items():
            synced = m.files.get(path)
            if sha == synced:
                m.rejected.pop(path, None)
                continue
            if m.rejected.get(path) == sha:
                continue  # refused before, unchanged since: said once already
            content, problem = _check_memory(folder, path)
            if problem is not None or content is None:
                m.rejected[path] = sha
                notes.append(f"{_shown(m, path)} was not saved to memory: {problem}")
                continue
            try:
                if synced is None:
                    self.memory.create_memory(m.memory_store_id, path, content, actor=actor)
                else:
                    self.memory.update_memory(
                        m.memory_store_id,
                        path,
                        actor=actor,
                        content=content,
                        precondition={"type": "content_sha256", "content_sha256": synced},
                    )
            except (MemoryPreconditionFailed, MemoryPathConflict, MemoryNotFound):
                notes.append(self._reset_to_store(folder, m, path, "your change"))
                continue
            except MemoryStoreArchived:
                m.rejected[path] = sha
                notes.append(f"{_shown(m, path)} was not saved: the memory store is archived (read-only now).")
                continue
            except MemoryStoreNotFound:
                m.rejected[path] = sha
                notes.append(f"{_shown(m, path)} was not saved: the memory store no longer exists.")
                continue
            except InvalidMemoryRequest as err:  # a limit (2,000 memories) or rule the checks above missed
                m.rejected[path] = sha
                notes.append(f"{_shown(m, path)} was not saved to memory: {err}")
                continue
            m.files[path] = sha
            m.rejected.pop(path, None)
        for path, synced in list(m.files.items()):
            if path in local or path in irregular:
                continue
            try:
                self.memory.delete_memory(m.memory_store_id, path, actor=actor, expected_content_sha256=synced)
            except MemoryPreconditionFailed:
                notes.append(self._reset_to_store(folder, m, path, "your deletion"))
                continue
            except MemoryNotFound:
                pass  # deleted by another writer too: the same outcome
            except MemoryStoreNotFound:
                notes.append(f"{_shown(m, path)}: the memory store no longer exists; the deletion was not saved.")
            m.files.pop(path, None)
        for path in list(m.rejected):
            if path not in local and path not in irregular:
                m.rejected.pop(path)
        return notes

    def _reset_to_store(self, folder: Path, m: SyncedMount, path: str, what: str) -> str:
        """Another writer won: make the local file the store's current content again."""
        try:
            current = self.memory.retrieve_memory(m.memory_store_id, path, view="full")
        except MemoryNotFound:
            current = None
        m.rejected.pop(path, None)
        if current is None or current.content is None:
            _delete_local(folder, path)
            m.files.pop(path, None)
            now = "it was deleted there, so the file is gone"
        else:
            if _write_local(folder, path, current.content, read_only=False):
                m.files[path] = current.content_sha256
            now = "the file now holds the store's current version"
        return (
            f"MEMORY CONFLICT: {_shown(m, path)} was changed in the memory store by another session since you "
            f"last read it, so {what} was NOT saved ({now}). Read it again and re-apply your change if it "
            "is still needed."
        )

    def _discard_changes(self, workspace: Path, m: SyncedMount) -> list[str]:
        folder = _folder(workspace, m)
        if not _intact(folder):
            return [f"{m.mount_path} (read-only) was removed or replaced: it is restored before your next tool call."]
        local, irregular = _scan(folder)
        changed = sorted(p for p in set(local) | set(m.files) | set(irregular) if local.get(p) != m.files.get(p))
        if not changed:
            return []
        try:
            snapshot = {e.path: e for e in self.memory.snapshot(m.memory_store_id)}
        except MemoryStoreError:
            snapshot = {}
        for path in changed:
            remote = snapshot.get(path)
            _delete_local(folder, path)
            if remote is not None and _write_local(folder, path, remote.content, read_only=True):
                m.files[path] = remote.content_sha256
            else:
                m.files.pop(path, None)
        shown = ", ".join(_shown(m, p) for p in changed[:10])
        if len(changed) > 10:
            shown += f" and {len(changed) - 10} more"
        return [
            f"{m.mount_path} is a read-only memory store: your changes to {shown} were discarded "
            "(the files were restored from the store)."
        ]


# --- local files ------------------------------------------------------------------------------------


def _folder(workspace: Path, m: SyncedMount) -> Path:
    return workspace / WORKSPACE_MEMORY_DIR / m.slug


def _shown(m: SyncedMount, path: str) -> str:
    # Filenames may hold undecodable bytes (surrogate escapes): keep notes valid text.
    return (m.mount_path + path).encode("utf-8", "backslashreplace").decode("utf-8")


def _local_path(folder: Path, path: str) -> Path:
    return folder / path.lstrip("/")


def _intact(folder: Path) -> bool:
    """The mount folder is a real directory at its own place (no symlink on the way: the agent
    could point ``memory`` at a host directory, which the worker would then read or write)."""
    return folder.is_dir() and os.path.realpath(folder) == os.path.abspath(folder)


def _ensure_folder(workspace: Path, folder: Path) -> bool:
    """Recreate the mount folder if the agent removed or replaced it (or ``memory/`` itself, say by
    a symlink, which bubblewrap would refuse to bind); True when it had to."""
    if _intact(folder):
        return False
    current = workspace
    for part in folder.relative_to(workspace).parts:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            _remove(current)
    folder.mkdir(parents=True, exist_ok=True)
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for sub, _dirs, files in os.walk(path):  # read-only files of a read-only mount
            for name in files:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(sub, name), 0o644, follow_symlinks=False)
        shutil.rmtree(path)
    else:
        path.unlink()


def _open_regular(path: str, flags: int) -> int:
    # O_NOFOLLOW: a link swapped in after the check is not followed; O_NONBLOCK: nor is a FIFO waited on.
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


def _sha_file(real: str) -> str | None:
    try:
        st = os.lstat(real)
        if not stat.S_ISREG(st.st_mode):
            return None
        with open(real, "rb", opener=_open_regular) as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _inside(folder: Path, target: Path) -> bool:
    """``target``'s directory is really inside ``folder`` (no symlinked directory on the way)."""
    return is_within(str(folder), os.path.realpath(target.parent))


def _local_sha(folder: Path, path: str) -> str | None:
    target = _local_path(folder, path)
    return _sha_file(str(target)) if _inside(folder, target) else None


def _scan(folder: Path) -> tuple[dict[str, str], set[str]]:
    """Regular files below ``folder`` by memory path (-> sha256), and the paths of other entries
    (symlinks, devices). Directories are not memories; symlinked ones are not followed."""
    files: dict[str, str] = {}
    irregular: set[str] = set()
    if not folder.is_dir() or folder.is_symlink():
        return files, irregular
    for sub, dirs, names in os.walk(folder):
        rel_dir = os.path.relpath(sub, folder)
        for name in list(dirs):
            if os.path.islink(os.path.join(sub, name)):
                irregular.add(_memory_path(rel_dir, name))
        for name in names:
            if name.startswith(_TMP_PREFIX):
                continue
            path = _memory_path(rel_dir, name)
            sha = _sha_file(os.path.join(sub, name))
            if sha is None:
                irregular.add(path)
            else:
                files[path] = sha
    return files, irregular


def _memory_path(rel_dir: str, name: str) -> str:
    rel = name if rel_dir == "." else f"{rel_dir}/{name}"
    return "/" + rel.replace(os.sep, "/")


def _check_memory(folder: Path, path: str) -> tuple[str | None, str | None]:
    """The file's content if the memory rules allow it, else the reason (for the agent)."""
    try:
        validate_path(path)
    except InvalidMemoryRequest as err:
        return None, f"its path breaks the memory path rules ({err}); rename it."
    target = _local_path(folder, path)
    try:
        if not _inside(folder, target):
            raise OSError(f"{path} is not inside the memory folder")
        with open(target, "rb", opener=_open_regular) as f:
            data = f.read(MAX_CONTENT_BYTES + 1)
            size = os.fstat(f.fileno()).st_size
    except OSError as err:
        return None, f"it could not be read ({err.strerror or err})."
    if max(size, len(data)) > MAX_CONTENT_BYTES:
        return None, (
            f"it is {max(size, len(data)):,} bytes; a memory holds at most {MAX_CONTENT_BYTES:,} bytes (100 kB). "
            "Shorten it or split it into several files."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "memories are UTF-8 text and this file is not (binary?)."
    if "\x00" in text:
        return None, "memories are text and this file holds NUL bytes."
    return text, None


def _write_local(folder: Path, path: str, content: str, *, read_only: bool) -> bool:
    """Write a memory into the folder (atomically); False when the filesystem cannot hold it (a
    name too long, or a memory path that is also another memory's directory)."""
    target = _local_path(folder, path)
    if not _inside(folder, target):
        log.warning("memory path escapes its mount folder", path=path)
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content.encode("utf-8"))
            # Best effort for a read-only store without isolation (a root worker ignores it; the
            # sync after each tool call restores any change anyway).
            os.chmod(tmp, 0o444 if read_only else 0o644)
            if target.is_dir() and not target.is_symlink():
                raise IsADirectoryError(str(target))
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as err:
        log.warning("memory not written to the workspace", path=path, error=str(err))
        return False
    return True


def _delete_local(folder: Path, path: str) -> None:
    target = _local_path(folder, path)
    if not _inside(folder, target):
        return
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
        if target.is_dir() and not target.is_symlink():
            return
        target.unlink()
