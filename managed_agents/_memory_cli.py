"""``managed-agents memory ...``: memory stores, memories and versions, straight in the store database.

The database is ``--store-url`` / ``$MANAGED_AGENTS_STORE_URL`` or the default SQLite file (the
one workers use). Changes are recorded as made by the user actor ``$USER``. Exit codes: 0 ok,
2 bad input or not found, 3 conflict (a ``--if-sha`` precondition failed, a path is taken).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from pydantic import BaseModel

    from managed_agents._memory.models import Memory, MemoryStore, MemoryVersion, UserActor
    from managed_agents._memory.service import MemoryService

# Kept outside the managed_agents._memory package, and importing the service only inside commands,
# so that the other commands of the CLI don't pay for importing it.
HELP = __doc__
memory_app = typer.Typer(rich_markup_mode="markdown", help=HELP, no_args_is_help=True)
stores_app = typer.Typer(
    rich_markup_mode="markdown", help="Memory stores: named containers of memories.", no_args_is_help=True
)
memories_app = typer.Typer(
    rich_markup_mode="markdown", help="Memories: UTF-8 text documents addressed by path.", no_args_is_help=True
)
versions_app = typer.Typer(
    rich_markup_mode="markdown", help="Memory versions: one immutable record per change.", no_args_is_help=True
)
memory_app.add_typer(stores_app, name="stores")
memory_app.add_typer(memories_app, name="memories")
memory_app.add_typer(versions_app, name="versions")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # errors are never cut mid-path

StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        envvar="MANAGED_AGENTS_STORE_URL",
        help="SQLAlchemy URL of the store (default: the workers' SQLite file under .managed-agents/)",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (errors too, on stderr)")]
StoreId = Annotated[str, typer.Argument(help="Memory store id (memstore_...)")]
PathOrId = Annotated[str, typer.Argument(help="A memory's path (/notes/a.md) or id (mem_...)")]


# --- plumbing ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _service(store_url: str | None, as_json: bool) -> Iterator[MemoryService]:
    import sqlalchemy.exc

    from managed_agents._memory.errors import MemoryStoreError
    from managed_agents._memory.service import MemoryService
    from managed_agents._settings import ManagedAgentsSettings

    if store_url is not None and not store_url.startswith(("sqlite", "postgresql")):
        _fail(as_json, "invalid_request_error", "--store-url: must be a sqlite:/// or postgresql+psycopg:// URL", 2)
    try:
        service = MemoryService(store_url or ManagedAgentsSettings().resolved_store_url())
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as err:
        _fail(as_json, "api_error", f"cannot open the store: {err}", 1)
    try:
        yield service
    except MemoryStoreError as err:
        _fail(as_json, err.error_type, err.message, 3 if err.status == 409 else 2)
    finally:
        service.close()


def _fail(as_json: bool, error_type: str, message: str, code: int) -> NoReturn:
    if as_json:
        print(json.dumps({"type": "error", "error": {"type": error_type, "message": message}}), file=sys.stderr)
    else:
        err_console.print(f"[red]{error_type}:[/] {escape(message)}")
    raise typer.Exit(code)


def _actor() -> UserActor:
    from managed_agents._memory.models import user_actor

    name = os.environ.get("USER")
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "unknown"
    return user_actor(name)


def _print_json(value: BaseModel | list[Any]) -> None:
    if isinstance(value, list):
        print(json.dumps([v.model_dump(mode="json") for v in value], indent=2, ensure_ascii=False))
    else:
        print(value.model_dump_json(indent=2))


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _who(actor: Any) -> str:
    if actor is None:
        return "-"
    data = actor.model_dump()
    kind = data.pop("type").removesuffix("_actor")
    return f"{kind}:{next(iter(data.values()))}"


def _store_table(stores: list[MemoryStore], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "name", "description", "created", "archived"):
        table.add_column(column, overflow="fold")
    for s in stores:
        table.add_row(s.id, escape(s.name), escape(s.description[:60]), _when(s.created_at), _when(s.archived_at))
    return table


def _memory_summary(m: Memory) -> str:
    return (
        f"{m.path} ({m.id}, {m.content_size_bytes} bytes, sha256 {m.content_sha256[:12]}, "
        f"version {m.memory_version_id})"
    )


def _read_content(content: str | None, file: Path | None, as_json: bool) -> str:
    if (content is None) == (file is None):
        _fail(as_json, "invalid_request_error", "give exactly one of --content TEXT or --file F", 2)
    if content is not None:
        return content
    assert file is not None
    try:
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as err:
        _fail(as_json, "invalid_request_error", f"--file: cannot read {file}: {err.strerror}", 2)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        _fail(as_json, "invalid_request_error", f"--file: {file} is not UTF-8 text (byte {err.start})", 2)


# --- stores ----------------------------------------------------------------------------------------


@stores_app.command("create")
def stores_create(
    name: Annotated[str, typer.Argument(help="The store's name (1-255 characters)")],
    description: Annotated[str, typer.Option(help="What the store holds (shown to agents)")] = "",
    metadata: Annotated[list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE, repeatable")] = None,
    store_url: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Create a memory store."""
    pairs: dict[str, str] = {}
    for item in metadata or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(as_json, "invalid_request_error", f"--metadata: expected KEY=VALUE (got {item!r})", 2)
        pairs[key] = value
    with _service(store_url, as_json) as svc:
        store = svc.create_store(name, description=description, metadata=pairs)
    if as_json:
        _print_json(store)
    else:
        console.print(f"created memory store {store.id} ({escape(store.name)})")


@stores_app.command("list")
def stores_list(
    include_archived: Annotated[bool, typer.Option(help="Include archived stores")] = False,
    store_url: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """List memory stores, newest first."""
    stores: list[MemoryStore] = []
    with _service(store_url, as_json) as svc:
        page: str | None = None
        while True:
            result = svc.list_stores(include_archived=include_archived, limit=100, page=page)
            stores.extend(result.data)
            if not (page := result.next_page):
                break
    if as_json:
        _print_json(stores)
    else:
        console.print(_store_table(stores, f"{len(stores)} memory store(s)"))


@stores_app.command("get")
def stores_get(store_id: StoreId, store_url: StoreUrl = None, as_json: AsJson = False) -> None:
    """Show a memory store."""
    with _service(store_url, as_json) as svc:
        store = svc.retrieve_store(store_id)
        count = len(svc.snapshot(store_id))
    if as_json:
        _print_json(store)
        return
    table = Table(title=f"memory store {store.id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("name", escape(store.name))
    table.add_row("description", escape(store.description) or "-")
    table.add_row("metadata", escape(json.dumps(store.metadata, ensure_ascii=False)))
    table.add_row("memories", str(count))
    table.add_row("created", _when(store.created_at))
    table.add_row("updated", _when(store.updated_at))
    table.add_row("archived", _when(store.archived_at))
    if store.proposal:
        table.add_row("proposal", escape(store.proposal.model_dump_json()))
    console.print(table)


@stores_app.command("archive")
def stores_archive(store_id: StoreId, store_url: StoreUrl = None, as_json: AsJson = False) -> None:
    """Archive a store (irreversible: its memories become read-only)."""
    with _service(store_url, as_json) as svc:
        store = svc.archive_store(store_id)
    if as_json:
        _print_json(store)
    else:
        console.print(f"archived memory store {store.id} at {_when(store.archived_at)}")


@stores_app.command("delete")
def stores_delete(store_id: StoreId, store_url: StoreUrl = None, as_json: AsJson = False) -> None:
    """Delete a store with all its memories and versions."""
    with _service(store_url, as_json) as svc:
        deleted = svc.delete_store(store_id)
    if as_json:
        _print_json(deleted)
    else:
        console.print(f"deleted memory store {deleted.id}")


# --- memories ----------------------------------------------------------------------------------------


@memories_app.command("write")
def memories_write(
    store_id: StoreId,
    path: Annotated[str, typer.Argument(help="The memory's path, e.g. /notes/todo.md")],
    content: Annotated[str | None, typer.Option("--content", help="The new content")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Read the content from a file ('-': stdin)")] = None,
    if_sha: Annotated[
        str | None, typer.Option("--if-sha", help="Write only if the current content has this SHA-256")
    ] = None,
    store_url: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Create or update the memory at PATH."""
    text = _read_content(content, file, as_json)
    precondition = {"type": "content_sha256", "content_sha256": if_sha} if if_sha is not None else None
    with _service(store_url, as_json) as svc:
        memory = svc.write_memory(store_id, path, text, _actor(), precondition)
    if as_json:
        _print_json(memory)
    else:
        console.print(f"wrote {escape(_memory_summary(memory))}")


@memories_app.command("get")
def memories_get(store_id: StoreId, memory: PathOrId, store_url: StoreUrl = None, as_json: AsJson = False) -> None:
    """Print a memory's content (--json: the memory object, content included)."""
    with _service(store_url, as_json) as svc:
        found = svc.retrieve_memory(store_id, memory, view="full")
    if as_json:
        _print_json(found)
    else:
        sys.stdout.write(found.content or "")
        sys.stdout.flush()


@memories_app.command("list")
def memories_list(
    store_id: StoreId,
    prefix: Annotated[str | None, typer.Option(help="Only paths below this prefix (ending with '/')")] = None,
    depth: Annotated[int, typer.Option(help="Roll up paths deeper than this below the prefix (0: all)")] = 0,
    store_url: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """List a store's memories in path order."""
    from managed_agents._memory.models import Memory, MemoryPrefix

    items: list[Memory | MemoryPrefix] = []
    with _service(store_url, as_json) as svc:
        page: str | None = None
        while True:
            result = svc.list_memories(store_id, path_prefix=prefix, depth=depth, limit=100, page=page)
            items.extend(result.data)
            if not (page := result.next_page):
                break
    if as_json:
        _print_json(items)
        return
    table = Table(title=f"{len(items)} item(s) in {store_id}")
    for column in ("path", "id", "bytes", "sha256", "updated"):
        table.add_column(column, overflow="fold")
    for item in items:
        if isinstance(item, Memory):
            table.add_row(
                escape(item.path),
                item.id,
                str(item.content_size_bytes),
                item.content_sha256[:12],
                _when(item.updated_at),
            )
        else:
            table.add_row(escape(item.path), "(prefix)", "", "", "")
    console.print(table)


@memories_app.command("delete")
def memories_delete(
    store_id: StoreId,
    memory: PathOrId,
    if_sha: Annotated[
        str | None, typer.Option("--if-sha", help="Delete only if the current content has this SHA-256")
    ] = None,
    store_url: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Delete a memory (its versions are kept)."""
    with _service(store_url, as_json) as svc:
        deleted = svc.delete_memory(store_id, memory, actor=_actor(), expected_content_sha256=if_sha)
    if as_json:
        _print_json(deleted)
    else:
        console.print(f"deleted memory {deleted.id}")


# --- versions ----------------------------------------------------------------------------------------


def _version_table(versions: list[MemoryVersion], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "memory", "operation", "path", "bytes", "sha256", "by", "at", "redacted"):
        table.add_column(column, overflow="fold")
    for v in versions:
        table.add_row(
            v.id,
            v.memory_id,
            v.operation,
            escape(v.path or "-"),
            "-" if v.content_size_bytes is None else str(v.content_size_bytes),
            (v.content_sha256 or "-")[:12],
            escape(_who(v.created_by)),
            _when(v.created_at),
            _when(v.redacted_at) if v.redacted_at else "",
        )
    return table


@versions_app.command("list")
def versions_list(
    store_id: StoreId,
    memory: Annotated[
        str | None, typer.Option("--memory", help="Only this memory's versions: mem_... id, or the path of a live one")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many versions (newest first)", min=1)] = 100,
    store_url: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """List memory versions, newest first."""
    versions: list[MemoryVersion] = []
    with _service(store_url, as_json) as svc:
        memory_id = memory
        if memory and memory.startswith("/"):
            memory_id = svc.retrieve_memory(store_id, memory, view="basic").id
        page: str | None = None
        while len(versions) < limit:
            result = svc.list_versions(store_id, memory_id=memory_id, limit=min(100, limit - len(versions)), page=page)
            versions.extend(result.data)
            if not (page := result.next_page):
                break
    if as_json:
        _print_json(versions)
    else:
        console.print(_version_table(versions, f"{len(versions)} version(s) in {store_id}"))


@versions_app.command("get")
def versions_get(
    store_id: StoreId,
    version_id: Annotated[str, typer.Argument(help="memver_... id")],
    store_url: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Print a version's content (--json: the version object)."""
    with _service(store_url, as_json) as svc:
        version = svc.retrieve_version(store_id, version_id)
    if as_json:
        _print_json(version)
    elif version.redacted_at is not None:
        err_console.print(f"version {version.id} was redacted at {_when(version.redacted_at)}")
    else:
        sys.stdout.write(version.content or "")
        sys.stdout.flush()


@versions_app.command("redact")
def versions_redact(
    store_id: StoreId,
    version_id: Annotated[str, typer.Argument(help="memver_... id (not a live memory's current version)")],
    store_url: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Redact a version: its content and path are erased, the record stays."""
    with _service(store_url, as_json) as svc:
        version = svc.redact_version(store_id, version_id, actor=_actor())
    if as_json:
        _print_json(version)
    else:
        console.print(f"redacted version {version.id} of memory {version.memory_id}")
