"""Multiagent orchestration inside the session workflow.

A coordinator session (``agent.multiagent``) gets four tools that run in workflow code:
``create_agent`` starts a thread (a child ``AgentSession`` on the same workspace and sandbox),
``send_to_agent`` follows up with one, ``wait_for_agents`` collects results and ``list_agents``
shows them. Threads run in parallel, at most ``options.max_concurrent_threads`` at once (the
rest are queued, never dropped). A thread reports to its coordinator by signal: status, usage
(one budget for all), and calls waiting on the user, which the coordinator cross-posts so the user
answers on the session and the answer is routed back to the thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from managed_agents._contract import AGENT_SESSION, THREAD_INPUT_SIGNAL, THREAD_REPORT_SIGNAL
    from managed_agents._coordination import (
        TOOL_INPUTS,
        CreateAgentInput,
        SendToAgentInput,
        WaitForAgentsInput,
    )
    from managed_agents._models.session import RequestUsage
    from managed_agents._models.threads import (
        ThreadAction,
        ThreadContext,
        ThreadInput,
        ThreadRecord,
        ThreadReport,
    )
    from managed_agents._workflows.base import SessionBase, describe_validation_error, event_id
    from managed_agents._workflows.session_state import ThreadActionRoute


class ThreadsMixin(SessionBase):
    _signal_tasks: list[asyncio.Task[None]]
    _waiting_for: set[str]

    # --- thread side: report to the coordinator ---------------------------------------------------------

    def _report(self, report: ThreadReport) -> None:
        ctx = self._s.thread_context
        if ctx is None:
            return
        parent = workflow.get_external_workflow_handle(ctx.parent_session_id)
        self._send_later(parent.signal(THREAD_REPORT_SIGNAL, report))

    def _send_later(self, signal: Awaitable[None]) -> None:
        async def send() -> None:
            try:
                await signal
            except Exception as err:  # the other side is gone (session ended): nothing to tell
                workflow.logger.info("signal not delivered", extra={"error": str(err)})

        self._signal_tasks.append(asyncio.create_task(send()))

    async def _flush_signals(self) -> None:
        tasks, self._signal_tasks = self._signal_tasks, []
        if tasks:
            await asyncio.gather(*tasks)

    def _on_usage(self, usage: RequestUsage, cost_nanos: int | None, model: str) -> None:
        ctx = self._s.thread_context
        if ctx is None:
            return
        if ctx.report_usage or cost_nanos is None:
            # A budget is shared with the coordinator: it must see every request as it happens.
            self._report(
                ThreadReport(
                    thread_id=ctx.thread_id,
                    kind="usage",
                    usage=usage,
                    cost_nanos=cost_nanos,
                    unpriced_model=model if cost_nanos is None else None,
                )
            )
        else:  # no budget: one report per turn is enough (each signal costs the coordinator a task)
            self._s.unreported_usage.add(usage)
            self._s.unreported_cost_nanos += cost_nanos

    def _on_idle(self, reason: str, event_ids: list[str] | None) -> None:
        s = self._s
        ctx = s.thread_context
        if ctx is None:
            return
        actions = []
        for ident in event_ids or []:
            event = next((e for e in reversed(self._events) if e["id"] == ident), None)
            if event is not None:
                actions.append(
                    ThreadAction(event_id=ident, type=event["type"], name=event["name"], input=event["input"])
                )
        outcome = s.outcomes[-1].resource() if s.outcomes else None
        usage, cost = s.unreported_usage, s.unreported_cost_nanos
        s.unreported_usage, s.unreported_cost_nanos = RequestUsage(), 0
        self._report(
            ThreadReport(
                thread_id=ctx.thread_id,
                kind="idle",
                stop_reason=s.stop_reason.model_dump(exclude_none=True) if s.stop_reason else None,
                final_message=s.final_message,
                actions=actions,
                outcome=outcome,
                usage_since_last=usage,
                cost_nanos_since_last=cost,
            )
        )

    def _on_thread_input(self, inp: ThreadInput) -> None:
        """Events the coordinator routed to this thread (already validated there)."""
        if inp.budget_reached:
            self._s.parent_budget_reached = True
        for raw in inp.events:
            try:
                self._accept_routed(raw)
            except (ValidationError, AssertionError) as err:
                workflow.logger.warning("routed event ignored", extra={"error": str(err)})

    def _accept_routed(self, raw: dict[str, Any]) -> None:
        raise NotImplementedError  # the session workflow accepts events

    # --- coordinator side ---------------------------------------------------------------------------

    def _thread(self, ref: str) -> ThreadRecord | None:
        return next((t for t in self._s.threads if t.thread_id == ref or t.workflow_id == ref), None)

    def _threads_with_work(self) -> bool:
        """Threads still running or queued, results not yet delivered, or calls awaiting the user."""
        return any(t.status in ("queued", "running") or t.undelivered for t in self._s.threads) or bool(
            self._s.thread_actions
        )

    def _startable(self) -> list[ThreadRecord]:
        s = self._s
        running = sum(t.status == "running" for t in s.threads)
        room = max(s.params.options.max_concurrent_threads - running, 0)
        return [t for t in s.threads if t.status == "queued"][:room]

    async def _start_queued_threads(self) -> None:
        ready = self._startable()
        for record in ready:
            self._mark_running(record)  # counts against the limit from now on
        if ready:
            await asyncio.gather(*(self._start_thread(r) for r in ready))

    async def _start_thread(self, record: ThreadRecord) -> None:
        s = self._s
        roster = s.params.agent_definition.roster()
        agent = roster[record.agent_name]
        options = s.params.options.model_copy(update={"keep_alive": True})
        ctx = ThreadContext(
            parent_session_id=s.session_id,
            thread_id=record.thread_id,
            agent_name=record.agent_name,
            workspace_id=s.workspace_id,
            sandbox_queue=s.sandbox_queue or "",
            agent_ref=s.roster_refs.get(record.agent_name),
            report_usage=s.params.budget is not None,
            memory_ref=s.memory_ref,
        )
        events, record.queued_events = record.queued_events, []
        body = {
            "agent": agent.model_dump(mode="json", exclude_none=True),
            "initial_events": events,
            "options": options.model_dump(mode="json"),
            "thread": ctx.model_dump(mode="json"),
            "environment": s.params.environment.model_dump(mode="json"),
            "title": f"{record.agent_name} ({record.thread_id})",
        }
        await workflow.start_child_workflow(
            AGENT_SESSION,
            body,
            id=record.workflow_id,
            task_queue=workflow.info().task_queue,
            parent_close_policy=ParentClosePolicy.TERMINATE,
        )

    def _route_to_thread(self, record: ThreadRecord, events: list[dict[str, Any]]) -> None:
        if record.status == "queued":
            record.queued_events.extend(events)
            return
        handle = workflow.get_external_workflow_handle(record.workflow_id)
        self._send_later(handle.signal(THREAD_INPUT_SIGNAL, ThreadInput(events=events)))

    def _on_thread_report(self, report: ThreadReport) -> None:
        s = self._s
        record = self._thread(report.thread_id)
        if record is None or record.status == "terminated":
            return
        fields = {"session_thread_id": record.thread_id, "agent_name": record.agent_name}
        if report.kind == "usage" and report.usage is not None:
            self._thread_usage(record, report.usage, report.cost_nanos, report.unpriced_model)
        elif report.kind == "idle":
            if report.usage_since_last is not None:
                self._thread_usage(record, report.usage_since_last, report.cost_nanos_since_last, None)
            record.status = "idle"
            record.stop_reason = report.stop_reason
            record.final_message = report.final_message
            record.outcome = report.outcome
            idled = self._emit("session.thread_status_idle", **fields, stop_reason=report.stop_reason)
            self._webhook("session.thread_idled", idled, session_thread_id=record.thread_id)
            if report.stop_reason and report.stop_reason.get("type") == "requires_action":
                for action in report.actions:
                    cross = self._emit(
                        action.type,
                        name=action.name,
                        input=action.input,
                        session_thread_id=record.thread_id,
                        **({"evaluated_permission": "ask"} if action.type == "agent.tool_use" else {}),
                    )
                    s.thread_actions[cross["id"]] = ThreadActionRoute(
                        thread_id=record.thread_id,
                        thread_event_id=action.event_id,
                        kind="confirm" if action.type == "agent.tool_use" else "custom",
                    )
                return
            record.undelivered = True
            if record.final_message:
                self._emit(
                    "agent.thread_message_received",
                    from_session_thread_id=record.thread_id,
                    from_agent_name=record.agent_name,
                    content=[{"type": "text", "text": record.final_message}],
                )
            if not s.turn_active and not s.pending_actions and record.thread_id not in self._waiting_for:
                s.turn_active = True  # wake the coordinator: a result is waiting for it

    def _thread_usage(
        self, record: ThreadRecord, usage: RequestUsage, cost_nanos: int | None, unpriced: str | None
    ) -> None:
        s = self._s
        record.usage.add(usage)
        record.cost_nanos += cost_nanos or 0
        # One budget for the whole session: the coordinator's counters include every thread's.
        self._add_usage(usage, cost_nanos, unpriced or "")
        if self._budget_reached():
            for other in s.threads:
                if other.status == "running":
                    handle = workflow.get_external_workflow_handle(other.workflow_id)
                    self._send_later(handle.signal(THREAD_INPUT_SIGNAL, ThreadInput(budget_reached=True)))

    def _mark_running(self, record: ThreadRecord) -> None:
        record.status = "running"
        self._emit("session.thread_status_running", session_thread_id=record.thread_id, agent_name=record.agent_name)

    def _thread_action_route(self, ref: str) -> tuple[str, ThreadActionRoute] | None:
        for key, route in self._s.thread_actions.items():
            if ref in (key, route.thread_event_id):
                return key, route
        return None

    def _deliver_thread_results(self) -> None:
        """Results of threads that finished while nobody waited reach the coordinator's next request."""
        for record in self._s.threads:
            if record.undelivered:
                record.undelivered = False
                self._s.pending_content.append({"type": "text", "text": _result_text(record)})

    # --- the coordinator's tools ---------------------------------------------------------------------

    async def _run_coordinator_tools(self, calls: list[tuple[str, dict[str, Any]]]) -> None:
        """Run delegation tool calls in order: starts first (concurrently), then waits."""
        outputs: dict[str, tuple[str, bool]] = {}
        for _event_id, block in calls:
            if block["name"] != "wait_for_agents":
                outputs[block["id"]] = self._coordinator_tool_now(block)
        await self._start_queued_threads()
        for _event_id, block in calls:
            if block["name"] == "wait_for_agents":
                outputs[block["id"]] = await self._wait_for_agents(block)
        for event_id_, block in calls:
            text, is_error = outputs[block["id"]]
            self._record_inline_result(event_id_, block["id"], text, is_error=is_error)

    def _coordinator_tool_now(self, block: dict[str, Any]) -> tuple[str, bool]:
        s = self._s
        name = block["name"]
        try:
            args = TOOL_INPUTS[name].model_validate(block["input"])
        except ValidationError as err:
            return f"invalid input: {describe_validation_error(err)}", True
        if isinstance(args, CreateAgentInput):
            roster = s.params.agent_definition.roster()
            if args.agent not in roster:
                return f"unknown agent {args.agent!r}; choose one of: {', '.join(sorted(roster))}", True
            thread_id = "sthr_" + event_id(s.session_id, s.next_seq)[5:]
            record = ThreadRecord(
                thread_id=thread_id,
                agent_name=args.agent,
                workflow_id=f"{s.session_id}--{thread_id}",
                created_at=workflow.now(),
            )
            if args.rubric:
                first: dict[str, Any] = {
                    "type": "user.define_outcome",
                    "description": args.task,
                    "rubric": {"type": "text", "content": args.rubric},
                }
                if args.max_iterations:
                    first["max_iterations"] = args.max_iterations
            else:
                first = {"type": "user.message", "content": [{"type": "text", "text": args.task}]}
            record.queued_events.append(first)
            s.threads.append(record)
            created = self._emit("session.thread_created", session_thread_id=thread_id, agent_name=args.agent)
            self._webhook("session.thread_created", created, session_thread_id=thread_id)
            self._emit(
                "agent.thread_message_sent",
                to_session_thread_id=thread_id,
                to_agent_name=args.agent,
                content=[{"type": "text", "text": args.task}],
            )
            running = sum(t.status == "running" for t in s.threads)
            ahead = sum(t.status == "queued" for t in s.threads) - 1
            queued = running + ahead >= s.params.options.max_concurrent_threads
            note = " It is queued until a running thread finishes." if queued else ""
            return f"Started thread {thread_id} running {args.agent}.{note} Use wait_for_agents for its result.", False
        if isinstance(args, SendToAgentInput):
            target = self._thread(args.thread_id)
            if target is None:
                return f"no thread {args.thread_id!r}; list_agents shows yours", True
            if target.status == "terminated":
                return f"thread {args.thread_id} is terminated and takes no more messages", True
            self._route_to_thread(
                target, [{"type": "user.message", "content": [{"type": "text", "text": args.message}]}]
            )
            if target.status == "idle":
                self._mark_running(target)
            self._emit(
                "agent.thread_message_sent",
                to_session_thread_id=target.thread_id,
                to_agent_name=target.agent_name,
                content=[{"type": "text", "text": args.message}],
            )
            return f"Sent to {target.thread_id} ({target.agent_name}).", False
        lines = [f"{t.thread_id} ({t.agent_name}): {t.status}" for t in s.threads] or ["no threads yet"]
        return "\n".join(lines), False

    async def _wait_for_agents(self, block: dict[str, Any]) -> tuple[str, bool]:
        s = self._s
        try:
            args = WaitForAgentsInput.model_validate(block["input"])
        except ValidationError as err:
            return f"invalid input: {describe_validation_error(err)}", True
        if args.thread_ids:
            targets = [self._thread(t) for t in args.thread_ids]
            unknown = [t for t, r in zip(args.thread_ids, targets, strict=True) if r is None]
            if unknown:
                return f"no such threads: {', '.join(unknown)}", True
            records = [r for r in targets if r is not None]
        else:
            records = [t for t in s.threads if t.status in ("queued", "running") or t.undelivered]
        if not records:
            return "No threads have work outstanding.", False
        self._waiting_for = {r.thread_id for r in records}

        def settled() -> bool:
            # A thread waiting on the user (requires_action) is not done: keep waiting for it.
            done = all(
                r.status == "terminated"
                or (r.status == "idle" and (r.stop_reason or {}).get("type") != "requires_action")
                for r in records
            )
            return done or s.interrupt_requested

        try:
            while not settled():
                await workflow.wait_condition(lambda: settled() or bool(self._startable()))
                await self._start_queued_threads()
        finally:
            self._waiting_for = set()
        if s.interrupt_requested:
            return "Interrupted by the user while waiting.", True
        texts = []
        for r in records:
            r.undelivered = False
            texts.append(_result_text(r))
        return "\n\n".join(texts), False


def _result_text(record: ThreadRecord) -> str:
    reason = (record.stop_reason or {}).get("type", record.status)
    head = f"[{record.thread_id} ({record.agent_name}) — {reason}]"
    outcome = f"\noutcome: {record.outcome['result']}" if record.outcome else ""
    return f"{head}\n{record.final_message or '(no message)'}{outcome}"
