"""``managed-agents dream ...``: start, watch and cancel dreams, review their proposals, schedule them.

Dreams run on the workers (Temporal); review reads and writes the memory database directly.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from managed_agents._contract import SCHEDULED_DREAM
from managed_agents._memory_cli import AsJson, StoreUrl, _actor, _fail, _service
from managed_agents._settings import DEFAULT_TASK_QUEUE

dream_app = typer.Typer(
    help="Dreams: curate a memory store from past sessions; review, promote or discard; schedule nightly runs.",
    no_args_is_help=True,
)
schedule_app = typer.Typer(
    rich_markup_mode="markdown", help="Dream schedules (Temporal Schedules).", no_args_is_help=True
)
dream_app.add_typer(schedule_app, name="schedule")
console = Console()

Address = Annotated[str | None, typer.Option(envvar="TEMPORAL_ADDRESS", help="Temporal host:port")]
Namespace = Annotated[str | None, typer.Option(envvar="TEMPORAL_NAMESPACE", help="Temporal namespace")]
TaskQueue = Annotated[str, typer.Option(envvar="MANAGED_AGENTS_TASK_QUEUE", help="Workers' task queue")]
DreamId = Annotated[str, typer.Argument(help="Dream id (drm_..., = workflow id)")]
Model = Annotated[str, typer.Option(help="Model for every stage")]


def _temporal(coro_fn: Any, address: str | None, namespace: str | None, as_json: bool = False) -> Any:
    from temporalio.service import RPCError

    from managed_agents._client import connect
    from managed_agents._dreams.client import DreamNotCancelable

    async def go() -> Any:
        return await coro_fn(await connect(address, namespace))

    try:
        return asyncio.run(go())
    except DreamNotCancelable as err:
        _fail(as_json, "invalid_request_error", str(err), 2)
    except (ValueError, ValidationError) as err:
        _fail(as_json, "invalid_request_error", str(err), 2)
    except RPCError as err:
        _fail(as_json, "not_found_error" if "not found" in err.message else "api_error", err.message, 2)
    except (ConnectionError, RuntimeError) as err:
        if "connect" in str(err).lower():
            _fail(as_json, "api_error", f"cannot reach Temporal: {err} (set --address or TEMPORAL_ADDRESS)", 2)
        raise


def _show_dream(dream: Any, as_json: bool) -> None:
    if as_json:
        print(dream.model_dump_json(indent=2))
        return
    p = dream.progress
    table = Table(show_header=False, box=None)
    table.add_row("dream", dream.id)
    colour = {"completed": "green", "failed": "red", "canceled": "yellow"}.get(dream.status, "bold")
    table.add_row("status", f"[{colour}]{dream.status}[/]" + (f"  ({escape(dream.error.type)})" if dream.error else ""))
    table.add_row("stage", p.stage)
    plural = "s" if p.parts_skipped > 1 else ""
    skipped = f", [yellow]{p.parts_skipped} part{plural} skipped[/]" if p.parts_skipped else ""
    table.add_row("sessions read", f"{p.sessions_read}/{p.sessions_total}  ({p.observations} observations{skipped})")
    table.add_row(
        "consolidation",
        f"batch {p.batches_done}/{p.batches_total}  (+{p.memories_written} written, -{p.memories_deleted} deleted)",
    )
    table.add_row("model requests", str(p.model_requests))
    u = dream.usage
    table.add_row("usage", f"in {u.input_tokens:,}  out {u.output_tokens:,}  cache read {u.cache_read_input_tokens:,}")
    table.add_row("output store", dream.outputs[0].memory_store_id if dream.outputs else "-")
    console.print(table)
    # Below the table, not inside a cell: a long message wraps readably and is not missed.
    if dream.error is not None:
        console.print(f"\n[bold red]dream {dream.status}: {escape(dream.error.type)}[/]")
        console.print(f"  {escape(dream.error.message)}")
    _warn_skipped(dream)


def _warn_skipped(dream: Any) -> None:
    """A completed dream that went without parts of its sessions (options.skip_unreadable_parts)."""
    if not dream.skipped_parts:
        return
    n = len(dream.skipped_parts)
    console.print(
        f"\n[bold yellow]warning: {n} transcript part{'s' if n > 1 else ''} could not be read and "
        f"{'were' if n > 1 else 'was'} left out; what {'they' if n > 1 else 'it'} held is not in the proposal:[/]"
    )
    for part in dream.skipped_parts:
        console.print(f"  - {escape(part.describe())}")


def _review_warning(dream: Any) -> str | None:
    """Why a proposal is not (only) a finished dream's work, for the review commands."""
    if dream.status == "failed":
        error = f" ({dream.error.type}: {dream.error.message})" if dream.error else ""
        return f"dream {dream.id} failed{error}: its store holds only what was written before it failed"
    if dream.status == "canceled":
        return f"dream {dream.id} was canceled: its store holds only what was written before"
    if dream.status != "completed":
        return f"dream {dream.id} is {dream.status}: its store is not finished"
    return None


@dream_app.command("create")
def create(
    memory_store: Annotated[str, typer.Option("--store", help="Input memory store id (memstore_...)")],
    session: Annotated[list[str], typer.Option("--session", help="A session to read (repeat, 1-100)")],
    model: Model = "claude-sonnet-4-6",
    instructions: Annotated[str | None, typer.Option(help="Guidance for the dream (up to 4,096 characters)")] = None,
    skip_unreadable_parts: Annotated[
        bool,
        typer.Option(
            help="Go on without a transcript part the model never reads validly (listed on the dream) "
            "instead of failing with transcript_unreadable"
        ),
    ] = False,
    wait: Annotated[bool, typer.Option(help="Follow progress until the dream ends")] = True,
    as_json: AsJson = False,
    address: Address = None,
    namespace: Namespace = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
) -> None:
    """Start a dream over a memory store and past sessions (shaped like client.beta.dreams.create)."""
    from managed_agents._dreams.client import get_dream, start_dream

    body: dict[str, Any] = {
        "inputs": [
            {"type": "memory_store", "memory_store_id": memory_store},
            {"type": "sessions", "session_ids": session},
        ],
        "model": model,
    }
    if instructions is not None:
        body["instructions"] = instructions
    if skip_unreadable_parts:
        body["options"] = {"skip_unreadable_parts": True}

    async def go(client: Any) -> Any:
        handle = await start_dream(client, body, task_queue=task_queue)
        if not as_json:
            console.print(f"dream [bold]{handle.id}[/] started")
        last = ""
        while wait:
            dream = await get_dream(client, handle.id)
            p = dream.progress
            line = (
                f"{dream.status} · {p.stage} · sessions {p.sessions_read}/{p.sessions_total}"
                f" · batches {p.batches_done}/{p.batches_total}"
            )
            if line != last and not as_json:
                console.print(f"  {line}")
                last = line
            if dream.status in ("completed", "failed", "canceled"):
                return dream
            await asyncio.sleep(1.0)
        return await get_dream(client, handle.id)

    dream = _temporal(go, address, namespace, as_json)
    _show_dream(dream, as_json)
    if dream.status == "failed":
        raise typer.Exit(1)


@dream_app.command("get")
def get(dream_id: DreamId, as_json: AsJson = False, address: Address = None, namespace: Namespace = None) -> None:
    """Show a dream: status, stage, progress, usage, output store."""
    from managed_agents._dreams.client import get_dream

    _show_dream(_temporal(lambda c: get_dream(c, dream_id), address, namespace, as_json), as_json)


@dream_app.command("cancel")
def cancel(dream_id: DreamId, as_json: AsJson = False, address: Address = None, namespace: Namespace = None) -> None:
    """Cancel a pending or running dream (its output store keeps what was written)."""
    from managed_agents._dreams.client import cancel_dream

    _show_dream(_temporal(lambda c: cancel_dream(c, dream_id), address, namespace, as_json), as_json)


def _with_output(dream_id: str, address: str | None, namespace: str | None, as_json: bool) -> Any:
    """The dream, which must have an output store."""
    from managed_agents._dreams.client import get_dream

    dream = _temporal(lambda c: get_dream(c, dream_id), address, namespace, as_json)
    if not dream.outputs:
        _fail(as_json, "invalid_request_error", f"dream {dream_id} has no output store ({dream.status})", 2)
    return dream


@dream_app.command("diff")
def diff(
    dream_id: DreamId,
    full: Annotated[bool, typer.Option(help="Print each changed memory's unified diff")] = False,
    as_json: AsJson = False,
    store_url: StoreUrl = None,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """What the dream's proposed store changes, memory by memory, against its input store."""
    from managed_agents._dreams.review import diff_stores

    dream = _with_output(dream_id, address, namespace, as_json)
    proposed = str(dream.outputs[0].memory_store_id)
    with _service(store_url, as_json) as memory:
        changes = diff_stores(memory, proposed)
    # A failed dream's store is its clone plus whatever it wrote: "unchanged" there means "never
    # curated", so say how the dream ended before any table.
    warning = _review_warning(dream)
    if as_json:
        if warning or dream.skipped_parts:  # on stderr: stdout stays the list of changes
            note = {
                "type": "warning",
                "message": warning or f"{len(dream.skipped_parts)} transcript part(s) left out",
                "status": dream.status,
                "error": dream.error.model_dump() if dream.error else None,
                "skipped_parts": [part.model_dump() for part in dream.skipped_parts],
            }
            print(json.dumps(note), file=sys.stderr)
        print(json.dumps([c.model_dump() for c in changes], indent=2, ensure_ascii=False))
        return
    if warning:
        console.print(f"[bold red]{escape(warning)}[/]")
    _warn_skipped(dream)
    title = f"dream {dream_id} ({dream.status}): proposed {proposed}"
    table = Table(title=title)
    for column in ("memory", "change", "+lines", "-lines"):
        table.add_column(column)
    colour = {"added": "green", "removed": "red", "modified": "yellow", "unchanged": "dim"}
    for c in changes:
        table.add_row(escape(c.path), f"[{colour[c.change]}]{c.change}[/]", str(c.lines_added), str(c.lines_removed))
    console.print(table)
    if full:
        for c in changes:
            if c.diff:
                sys.stdout.write(c.diff + "\n")


@dream_app.command("promote")
def promote(
    dream_id: DreamId,
    force: Annotated[bool, typer.Option(help="Overwrite memories changed since the dream read them")] = False,
    as_json: AsJson = False,
    store_url: StoreUrl = None,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Write a completed dream's proposal into its input store (new versions, by you)."""
    from managed_agents._dreams.client import get_dream
    from managed_agents._dreams.records import DreamRecords
    from managed_agents._dreams.review import promote as promote_store

    dream = _temporal(lambda c: get_dream(c, dream_id), address, namespace, as_json)
    if dream.status != "completed" or not dream.outputs:
        _fail(
            as_json,
            "invalid_request_error",
            f"dream {dream_id} is {dream.status}: only a completed dream's store can be promoted",
            2,
        )
    with _service(store_url, as_json) as memory:
        result = promote_store(
            memory, DreamRecords(memory.engine), dream.outputs[0].memory_store_id, actor=_actor(), force=force
        )
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        console.print(
            f"promoted into [bold]{result.memory_store_id}[/]: {result.written} written, {result.deleted} deleted"
            + (f" (overwrote {', '.join(result.conflicts)})" if result.conflicts else "")
        )


@dream_app.command("discard")
def discard(
    dream_id: DreamId,
    as_json: AsJson = False,
    store_url: StoreUrl = None,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Discard a dream's proposal (its store is archived, still readable)."""
    from managed_agents._dreams.review import discard as discard_store

    proposed = str(_with_output(dream_id, address, namespace, as_json).outputs[0].memory_store_id)
    with _service(store_url, as_json) as memory:
        discard_store(memory, proposed)
    if as_json:
        print(json.dumps({"memory_store_id": proposed, "proposal": "discarded"}))
    else:
        console.print(f"discarded {proposed}")


# --- schedules -----------------------------------------------------------------------------------------


@schedule_app.command("create")
def schedule_create(
    schedule_id: Annotated[str, typer.Argument(help="Schedule id, e.g. dream-nightly-team-notes")],
    memory_store: Annotated[str, typer.Option("--store", help="Memory store to dream over")],
    cron: Annotated[str, typer.Option(help="Five-field cron, e.g. '0 3 * * *'")] = "0 3 * * *",
    time_zone: Annotated[str, typer.Option("--tz", help="IANA time zone of the cron")] = "UTC",
    model: Model = "claude-sonnet-4-6",
    instructions: Annotated[str | None, typer.Option(help="Guidance for every dream")] = None,
    skip_unreadable_parts: Annotated[
        bool,
        typer.Option(
            help="Each dream goes on without transcript parts the model never reads validly (listed on the "
            "dream) instead of failing; a failed run does not advance, so the next run reads the same sessions"
        ),
    ] = False,
    address: Address = None,
    namespace: Namespace = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
) -> None:
    """Dream on a schedule over the sessions that mounted the store and finished since the last
    successful run; overlapping runs are skipped, a missed run is caught up once."""
    from managed_agents._dreams.client import create_dream_schedule
    from managed_agents._dreams.models import DreamOptions

    async def go(client: Any) -> Any:
        handle = await create_dream_schedule(
            client,
            schedule_id=schedule_id,
            memory_store_id=memory_store,
            model=model,
            cron=cron,
            time_zone=time_zone,
            instructions=instructions,
            options=DreamOptions(skip_unreadable_parts=skip_unreadable_parts),
            task_queue=task_queue,
        )
        return await handle.describe()

    described = _temporal(go, address, namespace)
    upcoming = ", ".join(t.isoformat() for t in described.info.next_action_times[:3])
    console.print(f"schedule [bold]{schedule_id}[/] created; next runs: {upcoming}")


@schedule_app.command("trigger")
def schedule_trigger(
    schedule_id: Annotated[str, typer.Argument()], address: Address = None, namespace: Namespace = None
) -> None:
    """Run a dream schedule now."""

    async def go(client: Any) -> None:
        await client.get_schedule_handle(schedule_id).trigger()

    _temporal(go, address, namespace)
    console.print(f"triggered {schedule_id}")


@schedule_app.command("delete")
def schedule_delete(
    schedule_id: Annotated[str, typer.Argument()], address: Address = None, namespace: Namespace = None
) -> None:
    """Delete a dream schedule (dreams it started are kept)."""

    async def go(client: Any) -> None:
        await client.get_schedule_handle(schedule_id).delete()

    _temporal(go, address, namespace)
    console.print(f"deleted {schedule_id}")


@schedule_app.command("list")
def schedule_list(address: Address = None, namespace: Namespace = None) -> None:
    """Dream schedules and their next run."""

    async def go(client: Any) -> list[Any]:
        found = []
        async for entry in await client.list_schedules():
            action = getattr(entry.schedule, "action", None) if entry.schedule else None
            if action is None or getattr(action, "workflow", None) == SCHEDULED_DREAM:
                found.append(entry)
        return found

    table = Table()
    for column in ("schedule", "next run", "paused"):
        table.add_column(column)
    for entry in _temporal(go, address, namespace):
        info = entry.info
        upcoming = info.next_action_times[0].isoformat() if info and info.next_action_times else "-"
        paused = str(entry.schedule.state.paused) if entry.schedule else "-"
        table.add_row(entry.id, upcoming, paused)
    console.print(table)
