"""``managed-agents``: run the demo, start and drive sessions, follow them live, run a worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from managed_agents._client import SessionClient, SessionHandle, new_session_id
from managed_agents._dream_cli import dream_app
from managed_agents._memory_cli import memory_app
from managed_agents._models.session import SessionCreateParams
from managed_agents._render import render_event, session_table
from managed_agents._settings import DEFAULT_TASK_QUEUE

app = typer.Typer(rich_markup_mode="markdown", help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(memory_app, name="memory")
app.add_typer(dream_app, name="dream")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # errors are never cut mid-path
T = TypeVar("T")

Address = Annotated[str | None, typer.Option(envvar="TEMPORAL_ADDRESS", help="Temporal host:port")]
Namespace = Annotated[str | None, typer.Option(envvar="TEMPORAL_NAMESPACE", help="Temporal namespace")]
TaskQueue = Annotated[str, typer.Option(envvar="MANAGED_AGENTS_TASK_QUEUE", help="AgentSession task queue")]
SessionId = Annotated[str, typer.Argument(help="Session id (= workflow id)")]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except WorkflowUpdateFailedError as err:
        err_console.print(f"[red]rejected:[/] {err.cause}")
        raise typer.Exit(2) from None
    except RPCError as err:
        err_console.print(f"[red]Temporal error:[/] {err.message}")
        raise typer.Exit(2) from None
    except (ConnectionError, RuntimeError) as err:
        if "connect" in str(err).lower():
            err_console.print(f"[red]cannot reach Temporal:[/] {err} (set --address or TEMPORAL_ADDRESS)")
            raise typer.Exit(2) from None
        raise


async def _sessions(address: str | None, namespace: str | None, task_queue: str) -> SessionClient:
    return await SessionClient.connect(address, namespace, task_queue)


async def _follow(handle: SessionHandle, after_seq: int = -1) -> None:
    """Render events until the session terminates (a kept-alive session: until Ctrl-C)."""
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        async for event in handle.stream(after_seq):
            render_event(console, event, handle.id)


@app.command()
def demo(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            show_default=False,
            help="Where the store, workspaces and the dev server's SQLite file live (default: "
            "$MANAGED_AGENTS_DATA_DIR or ./.managed-agents, the directory every command uses)",
        ),
    ] = None,
    task: Annotated[str | None, typer.Option(help="The task for the example agent")] = None,
    model: Annotated[str, typer.Option(help="Claude model (used when ANTHROPIC_API_KEY is set)")] = "claude-sonnet-4-6",
    keep_running: Annotated[bool, typer.Option(help="Keep the server and worker up afterwards")] = False,
) -> None:
    """The main job: embedded Temporal dev server + worker + one example session, end to end."""
    from managed_agents._demo import DEMO_TASK, run_demo
    from managed_agents._settings import ManagedAgentsSettings

    directory = data_dir or ManagedAgentsSettings().data_dir
    try:
        code = asyncio.run(
            run_demo(console, data_dir=directory, task=task or DEMO_TASK, model=model, keep_running=keep_running)
        )
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM: everything it started has stopped
        code = 130
    sys.stdout.flush()
    os._exit(code)  # Temporal's Rust bridge can abort at interpreter exit (sdk-python#300)


@app.command()
def start(
    message: Annotated[str | None, typer.Option("--message", "-m", help="First user message")] = None,
    agent: Annotated[str | None, typer.Option(help="Agent definition: a JSON file path or inline JSON")] = None,
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Whole session input (sessions.create body): file or JSON")
    ] = None,
    model: Annotated[str, typer.Option(help="Model, when --agent is not given")] = "claude-sonnet-4-6",
    outcome: Annotated[
        str | None, typer.Option(help="Define an outcome (user.define_outcome): what the agent should produce")
    ] = None,
    rubric: Annotated[str | None, typer.Option(help="The outcome's rubric, as text (markdown)")] = None,
    rubric_file: Annotated[
        str | None, typer.Option(help="The outcome's rubric, as a file path inside the session's workspace")
    ] = None,
    max_iterations: Annotated[
        int | None, typer.Option(help="Evaluate-and-revise cycles (default 3, at most 20)")
    ] = None,
    grader_model: Annotated[str | None, typer.Option(help="Model of the grader (default: the agent's)")] = None,
    keep_alive: Annotated[bool, typer.Option(help="Stay open after the agent's turn ends")] = False,
    session_id: Annotated[str | None, typer.Option(help="Session id (default: a new sesn_ id)")] = None,
    follow: Annotated[bool, typer.Option(help="Follow the session's events live")] = True,
    address: Address = None,
    namespace: Namespace = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
) -> None:
    """Start a session (workflow AgentSession) and follow it."""
    body: dict[str, Any] = _load_json(input, "--input") if input else {}
    if agent:
        body["agent"] = _load_json(agent, "--agent")
    body.setdefault("agent", {"name": "assistant", "model": model, "tools": [{"type": "agent_toolset_20260401"}]})
    if message is not None:
        if not message.strip():
            err_console.print("[red]-m/--message: the message is empty[/]")
            raise typer.Exit(2)
        body.setdefault("initial_events", []).append(
            {"type": "user.message", "content": [{"type": "text", "text": message}]}
        )
    if outcome:
        if bool(rubric) == bool(rubric_file):
            err_console.print("[red]--outcome needs exactly one of --rubric or --rubric-file[/]")
            raise typer.Exit(2)
        event: dict[str, Any] = {
            "type": "user.define_outcome",
            "description": outcome,
            "rubric": {"type": "text", "content": rubric} if rubric else {"type": "file", "file_id": rubric_file},
        }
        if max_iterations is not None:
            event["max_iterations"] = max_iterations
        body.setdefault("initial_events", []).append(event)
    if not body.get("initial_events") and not keep_alive:
        # Without a first event the session would idle at once and wait, silently, for nothing.
        err_console.print(
            '[red]nothing to start:[/] give a first message (-m "..."), an --outcome, initial_events in --input, '
            "or --keep-alive to open an idle session and send events later"
        )
        raise typer.Exit(2)
    if keep_alive:
        body.setdefault("options", {})["keep_alive"] = True
    if grader_model:
        body.setdefault("options", {})["grader_model"] = grader_model
    try:
        SessionCreateParams.model_validate(body)
    except ValidationError as err:
        err_console.print(f"[red]invalid session input:[/]\n{err}")
        raise typer.Exit(2) from None

    async def go() -> None:
        sessions = await _sessions(address, namespace, task_queue)
        handle = await sessions.create(body, session_id=session_id or new_session_id())
        console.print(f"[bold]session[/] {handle.id}")
        if follow:
            await _follow(handle)
            console.print(session_table(await handle.retrieve()))

    _run(go())


@app.command()
def follow(
    session_id: SessionId,
    from_start: Annotated[bool, typer.Option(help="Replay the log from the first event")] = True,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Attach to a session and follow its events live until it terminates."""

    async def go() -> None:
        handle = (await _sessions(address, namespace, DEFAULT_TASK_QUEUE)).get(session_id)
        after = -1
        if not from_start:
            after = (await handle.retrieve()).event_count - 1
        await _follow(handle, after)
        console.print(session_table(await handle.retrieve()))

    _run(go())


@app.command()
def send(
    session_id: SessionId,
    text: Annotated[str, typer.Argument(help="The user message")],
    follow: Annotated[bool, typer.Option(help="Follow events after sending")] = False,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Send a user.message to a session."""

    async def go() -> None:
        handle = (await _sessions(address, namespace, DEFAULT_TASK_QUEUE)).get(session_id)
        [echo] = await handle.send_message(text)
        console.print(f"sent {echo['id']}")
        if follow:
            await _follow(handle, echo["seq"] - 1)

    _run(go())


@app.command()
def interrupt(session_id: SessionId, address: Address = None, namespace: Namespace = None) -> None:
    """Send user.interrupt: stop the agent's current work and return control."""

    async def go() -> None:
        handle = (await _sessions(address, namespace, DEFAULT_TASK_QUEUE)).get(session_id)
        [echo] = await handle.interrupt()
        console.print(f"sent {echo['id']}")

    _run(go())


@app.command()
def confirm(
    session_id: SessionId,
    tool_use_id: Annotated[str, typer.Argument(help="The agent.tool_use event id awaiting confirmation")],
    allow: Annotated[
        bool | None, typer.Option("--allow/--deny", help="Allow or deny the tool call (one is required)")
    ] = None,
    message: Annotated[str | None, typer.Option(help="Reason, with --deny")] = None,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Answer an always_ask tool call (user.tool_confirmation): --allow or --deny."""
    # A permission question never defaults to allow: the choice must be said.
    if allow is None:
        err_console.print("[red]say --allow or --deny:[/] a tool call is never allowed by default")
        raise typer.Exit(2)
    if allow and message:
        err_console.print("[red]--message is the reason of a --deny[/]")
        raise typer.Exit(2)

    async def go() -> None:
        handle = (await _sessions(address, namespace, DEFAULT_TASK_QUEUE)).get(session_id)
        [echo] = await handle.confirm(tool_use_id, allow, message)
        console.print(f"sent {echo['id']}")

    _run(go())


@app.command("tool-result")
def tool_result(
    session_id: SessionId,
    custom_tool_use_id: Annotated[str, typer.Argument(help="The agent.custom_tool_use event id")],
    text: Annotated[str, typer.Argument(help="The tool's result")],
    is_error: Annotated[bool, typer.Option("--error", help="The tool failed")] = False,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Send a custom tool's result (user.custom_tool_result)."""

    async def go() -> None:
        handle = (await _sessions(address, namespace, DEFAULT_TASK_QUEUE)).get(session_id)
        [echo] = await handle.custom_tool_result(custom_tool_use_id, text, is_error=is_error)
        console.print(f"sent {echo['id']}")

    _run(go())


@app.command()
def get(
    session_id: SessionId,
    as_json: Annotated[bool, typer.Option("--json", help="Print the session object as JSON")] = False,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Show a session (the `session` query)."""

    async def go() -> None:
        session = await (await _sessions(address, namespace, DEFAULT_TASK_QUEUE)).get(session_id).retrieve()
        if as_json:
            print(session.model_dump_json(indent=2))
        else:
            console.print(session_table(session))

    _run(go())


@app.command()
def events(
    session_id: SessionId,
    thread: Annotated[str | None, typer.Option(help="A thread's own event log (sthr_… id)")] = None,
    after_seq: Annotated[int, typer.Option(help="Only events after this seq")] = -1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line")] = False,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Print a session's event log (across continue-as-new runs)."""

    async def go() -> None:
        sessions = await _sessions(address, namespace, DEFAULT_TASK_QUEUE)
        handle = sessions.get(session_id if thread is None else f"{session_id}--{thread}")
        for event in await handle.events(after_seq):
            if as_json:
                print(event.model_dump_json())
            else:
                render_event(console, event, session_id)

    _run(go())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def worker(ctx: typer.Context) -> None:
    """Run a worker (the flags of `python worker.py`; `managed-agents worker --help` lists them)."""
    from managed_agents._worker import main

    main(ctx.args)


@app.command()
def schema(
    check: Annotated[bool, typer.Option(help="Fail if the committed schemas differ from the models")] = False,
) -> None:
    """Write (or check) the JSON Schemas of the workflow inputs in schemas/."""
    from managed_agents import _schemas as schemas

    if check:
        stale = schemas.stale()
        if stale:
            err_console.print(f"[red]stale schemas:[/] {', '.join(stale)} — run `managed-agents schema`")
            raise typer.Exit(1)
        console.print("schemas are up to date")
        return
    for path in schemas.write():
        console.print(f"wrote {path}")


@app.command("mock-claude")
def mock_claude(port: Annotated[int, typer.Option(help="Port to listen on")] = 8765) -> None:
    """Serve the bundled Claude-compatible mock (Messages API) for offline experiments."""
    from managed_agents.testing.demo_model import demo_responder
    from managed_agents.testing.mock_claude import MockClaude

    with MockClaude(default=demo_responder, port=port) as mock:
        console.print(f"mock Claude at {mock.base_url} (ANTHROPIC_BASE_URL={mock.base_url}); Ctrl-C to stop")
        try:
            while True:
                asyncio.run(asyncio.sleep(3600))
        except KeyboardInterrupt:
            pass


webhooks_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Webhook endpoints: signed notifications when work finishes.",
    no_args_is_help=True,
)
app.add_typer(webhooks_app, name="webhooks")

StoreUrl = Annotated[
    str | None, typer.Option(envvar="MANAGED_AGENTS_STORE_URL", help="Store URL (default: the local SQLite file)")
]


def _webhook_service(store_url: str | None) -> Any:
    from managed_agents._database import create_store_engine
    from managed_agents._settings import ManagedAgentsSettings
    from managed_agents._webhooks.service import WebhookService

    return WebhookService(create_store_engine(store_url or ManagedAgentsSettings().resolved_store_url()))


def _print_endpoint(endpoint: Any, as_json: bool) -> None:
    if as_json:
        print(endpoint.model_dump_json(indent=2))
        return
    state = "[green]enabled[/]" if endpoint.state == "enabled" else f"[red]disabled[/] ({endpoint.disabled_reason})"
    console.print(
        f"[bold]{endpoint.id}[/] {endpoint.url} {state}\n  events: {', '.join(endpoint.enabled_events) or '-'}"
    )


@webhooks_app.command("create")
def webhooks_create(
    url: Annotated[str, typer.Option(help="Where to POST events")],
    event: Annotated[
        list[str] | None, typer.Option("--event", "-e", help="Event type to subscribe to (repeat; default: all)")
    ] = None,
    none: Annotated[bool, typer.Option("--no-events", help="Subscribe to nothing (per-session URLs only)")] = False,
    name: Annotated[str | None, typer.Option()] = None,
    retry_window_hours: Annotated[float, typer.Option(help="How long to keep retrying one delivery")] = 24.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    store_url: StoreUrl = None,
) -> None:
    """Register an endpoint. Its signing secret (whsec_...) is shown once, here."""
    from managed_agents._webhooks.models import WEBHOOK_EVENT_TYPES, EndpointCreate

    try:
        spec = EndpointCreate(
            url=url,
            enabled_events=[] if none else (event or list(WEBHOOK_EVENT_TYPES)),
            name=name,
            retry_window_seconds=retry_window_hours * 3600,
        )
    except ValidationError as err:
        err_console.print(f"[red]invalid endpoint:[/] {err}")
        raise typer.Exit(2) from None
    created = _webhook_service(store_url).create_endpoint(spec)
    _print_endpoint(created, as_json)
    if not as_json:
        console.print(f"signing secret (shown once; verify with Standard Webhooks): [bold]{created.signing_secret}[/]")


@webhooks_app.command("list")
def webhooks_list(as_json: Annotated[bool, typer.Option("--json")] = False, store_url: StoreUrl = None) -> None:
    """List endpoints."""
    for endpoint in _webhook_service(store_url).list_endpoints():
        _print_endpoint(endpoint, as_json)


@webhooks_app.command("enable")
def webhooks_enable(endpoint_id: str, store_url: StoreUrl = None) -> None:
    """Re-enable an endpoint (after a redirect or a failing period disabled it)."""
    _print_endpoint(_webhooks_call(lambda s: s.set_state(endpoint_id, True), store_url), False)


@webhooks_app.command("disable")
def webhooks_disable(endpoint_id: str, store_url: StoreUrl = None) -> None:
    """Stop sending to an endpoint."""
    _print_endpoint(_webhooks_call(lambda s: s.set_state(endpoint_id, False, "disabled by the user"), store_url), False)


@webhooks_app.command("rotate-secret")
def webhooks_rotate(
    endpoint_id: str,
    grace_hours: Annotated[float, typer.Option(help="How long the old secret keeps signing too")] = 24.0,
    store_url: StoreUrl = None,
) -> None:
    """New signing secret; the old one also signs until the grace period ends (no downtime)."""
    from datetime import timedelta

    rotated = _webhooks_call(lambda s: s.rotate_secret(endpoint_id, timedelta(hours=grace_hours)), store_url)
    console.print(f"new signing secret (shown once): [bold]{rotated.signing_secret}[/]")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    endpoint_id: str,
    limit: Annotated[int, typer.Option()] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    store_url: StoreUrl = None,
) -> None:
    """The endpoint's delivery log: every attempt, status code, error; what was given up."""
    from rich.table import Table

    attempts = _webhooks_call(lambda s: s.deliveries(endpoint_id, limit), store_url)
    if as_json:
        for a in attempts:
            print(a.model_dump_json())
        return
    table = Table("at", "event", "attempt", "outcome", "status", "error")
    for a in attempts:
        table.add_row(
            a.at.isoformat(timespec="seconds"),
            a.event_id,
            str(a.attempt),
            a.outcome,
            str(a.status_code or "-"),
            a.error or "",
        )
    console.print(table)


@webhooks_app.command("redeliver")
def webhooks_redeliver(
    event_id: str,
    endpoint: Annotated[list[str], typer.Option("--endpoint", help="Endpoint id (repeat)")],
    address: Address = None,
    namespace: Namespace = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    store_url: StoreUrl = None,
) -> None:
    """Deliver a recorded event again (same id, same body) to the given endpoints."""
    from managed_agents._client import connect
    from managed_agents._webhooks.client import redeliver

    service = _webhook_service(store_url)

    async def go() -> str:
        return await redeliver(await connect(address, namespace), service, event_id, endpoint, task_queue)

    console.print(f"redelivery started: {_run(go())}")


def _webhooks_call(fn: Any, store_url: str | None) -> Any:
    from managed_agents._webhooks.service import WebhookError

    try:
        return fn(_webhook_service(store_url))
    except WebhookError as err:
        err_console.print(f"[red]{err}[/]")
        raise typer.Exit(2) from None


def _load_json(value: str, what: str) -> dict[str, Any]:
    """``value`` is inline JSON (it starts with ``{``) or the path of a JSON file."""
    if value.lstrip().startswith("{"):
        text = value
    else:
        path = Path(value)
        try:
            text = path.read_text()
        except FileNotFoundError:
            err_console.print(f"[red]{what}: no such file: {value}[/] (give a JSON file's path, or inline JSON)")
            raise typer.Exit(2) from None
        except OSError as err:
            err_console.print(f"[red]{what}: cannot read {value}:[/] {err.strerror}")
            raise typer.Exit(2) from None
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as err:
        err_console.print(f"[red]{what}: not valid JSON[/] ({err.msg} at line {err.lineno} column {err.colno})")
        raise typer.Exit(2) from None
    if not isinstance(loaded, dict):
        err_console.print(f"[red]{what}: expected a JSON object[/]")
        raise typer.Exit(2)
    return loaded


def main() -> None:
    """Entry point: run the command, then leave without interpreter teardown.

    Temporal's Rust bridge threads can crash the interpreter while it finalises (sdk-python#300),
    turning a clean exit code into a segfault; flushing and ``os._exit`` avoids that.
    """
    code = 0
    try:
        app()  # standalone mode: prints usage errors itself and exits through SystemExit
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
