"""Terminal rendering of session events, for following a session live."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from managed_agents._models.events import SessionEvent
from managed_agents._models.session import SessionObject

MAX_LINES = 6


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", "⏎ ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _blocks_text(blocks: list[dict[str, Any]] | None) -> str:
    return "\n".join(b.get("text", f"[{b.get('type')}]") for b in blocks or [])


def _clip_lines(text: str) -> str:
    lines = text.rstrip("\n").splitlines() or [""]
    more = f"\n… {len(lines) - MAX_LINES} more lines" if len(lines) > MAX_LINES else ""
    return "\n".join(lines[:MAX_LINES]) + more


def render_event(console: Console, event: SessionEvent, session_id: str) -> None:
    e = event.model_extra or {}
    kind = event.type
    thread = e.get("session_thread_id")
    if thread and kind in ("agent.tool_use", "agent.custom_tool_use"):
        console.print(f"[magenta]  [from thread {thread}][/]")
    if kind == "user.message":
        console.print(f"[bold cyan]▶ user[/] {escape(_blocks_text(e.get('content')))}")
    elif kind == "agent.message":
        console.print(f"[bold green]◀ agent[/] {escape(_blocks_text(e.get('content')))}")
    elif kind == "agent.thinking":
        console.print("[dim]  … thinking[/]")
    elif kind == "agent.tool_use":
        note = ""
        if e.get("evaluated_permission") == "ask":
            note = f"\n    [yellow]needs confirmation:[/] managed-agents confirm {session_id} {event.id} --allow|--deny"
        elif e.get("evaluated_permission") == "deny":
            note = " [red](not available)[/]"
        console.print(f"[magenta]⚙ {escape(str(e.get('name')))}[/] {escape(_short(e.get('input')))}{note}")
    elif kind == "agent.custom_tool_use":
        console.print(
            f"[magenta]⚙ {escape(str(e.get('name')))} (custom)[/] {escape(_short(e.get('input')))}\n"
            f"    [yellow]needs a result:[/] managed-agents tool-result {session_id} {event.id} '<text>'"
        )
    elif kind == "agent.tool_result":
        style = "red" if e.get("is_error") else "dim"
        text = _clip_lines(_blocks_text(e.get("content")))
        console.print("\n".join(f"[{style}]  ↳ {escape(line)}[/]" for line in text.splitlines()))
    elif kind == "session.status_idle":
        reason = e.get("stop_reason", {})
        console.print(f"[bold]■ idle[/] ({reason.get('type')})")
    elif kind == "session.status_running":
        console.print("[bold]● running[/]")
    elif kind == "session.status_rescheduled":
        console.print("[yellow]↻ rescheduled (retrying)[/]")
    elif kind == "session.status_terminated":
        console.print("[bold]✔ terminated[/]")
    elif kind == "session.error":
        err = e.get("error", {})
        status = err.get("retry_status", {}).get("type")
        console.print(f"[red]✖ {escape(str(err.get('type')))} ({status}): {escape(str(err.get('message')))}[/]")
    elif kind == "span.model_request_end":
        u = e.get("model_usage", {})
        console.print(
            f"[dim]  model: {u.get('input_tokens', 0)} in, {u.get('output_tokens', 0)} out, "
            f"{u.get('cache_read_input_tokens', 0)} cache read, "
            f"{u.get('cache_creation_input_tokens', 0)} cache write[/]"
        )
    elif kind == "session.usage":
        usage = e.get("usage", {})
        cost = (usage.get("list_cost") or {}).get("amount", "0")
        console.print(
            f"[dim]  usage: {usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out, "
            f"{usage.get('cache_read_input_tokens', 0)} cache read, list cost ${int(cost) / 100:.2f}[/]"
        )
    elif kind == "user.define_outcome":
        console.print(
            f"[bold cyan]▶ outcome[/] {escape(str(e.get('description')))} "
            f"[dim]({e.get('outcome_id')}, up to {e.get('max_iterations')} evaluations)[/]"
        )
    elif kind == "span.outcome_evaluation_start":
        console.print(f"[bold blue]⚖ grading[/] evaluation {int(e.get('iteration', 0)) + 1} …")
    elif kind == "span.outcome_evaluation_ongoing":
        console.print("[dim blue]  … grader still working[/]")
    elif kind == "span.outcome_evaluation_end":
        result = str(e.get("result"))
        style = {"satisfied": "bold green", "needs_revision": "yellow"}.get(result, "bold red")
        console.print(f"[{style}]⚖ {result}[/] (evaluation {int(e.get('iteration', 0)) + 1})")
        for c in e.get("criteria", []):
            mark = "[green]✔[/]" if c.get("passed") else "[red]✘[/]"
            console.print(
                f"    {mark} {escape(str(c.get('criterion')))}: [dim]{escape(_short(c.get('reason'), 120))}[/]"
            )
        if e.get("explanation"):
            console.print(f"    [dim]{escape(_short(e.get('explanation'), 300))}[/]")
        if "best_iteration" in e:
            console.print(f"    best: evaluation {e['best_iteration'] + 1}, kept in {e.get('best_snapshot_dir')}")
    elif kind == "session.thread_created":
        console.print(
            f"[bold magenta]⑂ thread[/] {e.get('session_thread_id')} started ({escape(str(e.get('agent_name')))})"
        )
    elif kind == "session.thread_status_idle":
        reason = (e.get("stop_reason") or {}).get("type")
        console.print(
            f"[magenta]  ⑂ {e.get('session_thread_id')} ({escape(str(e.get('agent_name')))}) idle: {reason}[/]"
        )
    elif kind == "session.thread_status_terminated":
        console.print(f"[dim]  ⑂ {e.get('session_thread_id')} terminated[/]")
    elif kind == "agent.thread_message_sent":
        text = _short(_blocks_text(e.get("content")), 200)
        console.print(f"[magenta]  → {escape(str(e.get('to_agent_name')))}[/] {escape(text)}")
    elif kind == "agent.thread_message_received":
        text = _short(_blocks_text(e.get("content")), 200)
        console.print(f"[magenta]  ← {escape(str(e.get('from_agent_name')))}[/] {escape(text)}")
    elif kind == "agent.thread_context_compacted":
        console.print("[dim]  (older tool results cleared from context)[/]")


def session_table(session: SessionObject, ui_url: str | None = None) -> Table:
    table = Table(title=f"session {session.id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("status", session.status)
    table.add_row("stop reason", session.stop_reason.type if session.stop_reason else "-")
    table.add_row("final message", session.final_message or "-")
    u = session.usage
    table.add_row(
        "tokens",
        f"{u.input_tokens} in, {u.output_tokens} out, {u.cache_read_input_tokens} cache read, "
        f"{u.cache_creation.ephemeral_5m_input_tokens + u.cache_creation.ephemeral_1h_input_tokens} cache write",
    )
    table.add_row("list cost", f"${int(u.list_cost.amount) / 100:.2f}" if u.list_cost else "-")
    for o in session.outcome_evaluations:
        best = f", best evaluation {o.best_iteration + 1}" if o.best_iteration is not None else ""
        table.add_row(f"outcome {o.outcome_id}", f"{o.result} after {len(o.iterations)} evaluation(s){best}")
    for t in session.threads:
        cost = int(t["usage"]["list_cost"]["amount"]) / 100
        table.add_row(
            f"thread {t['id']}",
            f"{t['agent_name']}: {t['status']}, {t['usage']['output_tokens']} output tokens, ${cost:.2f}",
        )
    table.add_row("events", str(session.event_count))
    table.add_row("active seconds", f"{session.stats.active_seconds:.1f}")
    if ui_url:
        table.add_row("Temporal UI", f"{ui_url}/namespaces/default/workflows/{session.id}")
    return table
