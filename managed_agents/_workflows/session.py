"""``AgentSession``: one Claude Managed Agents session as a Temporal workflow.

The brain: deterministic, I/O-free, replayable. Each step runs one model-request activity and then
the tool activities the model asked for, on the sandbox worker that holds the session's workspace.
Events go in through the ``send_events`` update and come out through the ``session`` and
``events`` queries, named as Managed Agents names them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutType
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from managed_agents._content_hash import content_ref
    from managed_agents._contract import (
        AGENT_SESSION,
        EVENTS_QUERY,
        MODEL_REQUEST,
        MODEL_RETRY_SIGNAL,
        REGISTER_SESSION,
        SANDBOX_PROVISION,
        SEND_EVENTS_UPDATE,
        SESSION_QUERY,
        THREAD_INPUT_SIGNAL,
        THREAD_REPORT_SIGNAL,
        USER_EVENTS_SIGNAL,
        sandbox_shared_queue,
        tool_activity,
    )
    from managed_agents._models.activity_io import (
        MEMORY_STORE_UNAVAILABLE,
        MemoryMountRequest,
        ModelRequestInput,
        ModelRequestResult,
        ModelRetryNotice,
        ProvisionSandboxInput,
        ProvisionSandboxResult,
        RegisterSessionInput,
        RegisterSessionResult,
        ToolCallInput,
        ToolCallResult,
        TranscriptMessage,
    )
    from managed_agents._models.agent import ResolvedTool
    from managed_agents._models.events import (
        INBOUND_EVENTS,
        EventPage,
        SessionEvent,
        UserCustomToolResultEvent,
        UserDefineOutcomeEvent,
        UserInterruptEvent,
        UserMessageEvent,
        UserToolConfirmationEvent,
    )
    from managed_agents._models.outcome import OutcomeState
    from managed_agents._models.session import SessionCreateParams, SessionObject, SessionStats
    from managed_agents._models.threads import ThreadInput, ThreadReport
    from managed_agents._prompt import order_user_blocks
    from managed_agents._workflows import activity_options as options
    from managed_agents._workflows.base import (
        InvalidEvents,
        InvalidSessionInput,
        _zero_usage,
        cancel_unless_done,
        describe_validation_error,
        event_id,
    )
    from managed_agents._workflows.outcomes import OutcomesMixin
    from managed_agents._workflows.payload_guard import PayloadTooLargeError, check_payload_size
    from managed_agents._workflows.session_state import PendingAction, SessionState
    from managed_agents._workflows.threads import ThreadsMixin

SANDBOX_UNAVAILABLE = "SandboxUnavailable"
CONTINUATION_KEY = "_continuation"
#: sessions started before this patch registered the agent, then provisioned the sandbox
PARALLEL_START_PATCH = "parallel-start-v1"
#: sessions started before this patch registered the agent (with the workspace) before the first
#: model request; since, the first request carries the agent and the workspace is prepared beside it
FAST_START_PATCH = "fast-start-v1"
#: sessions whose workspace could not be prepared before this patch failed without a session.error
PROVISION_FAILURE_PATCH = "provision-failure-v1"
#: sessions started before this patch scheduled each model request after the tool calls it answers
PIPELINE_PATCH = "pipelined-model-request-v1"
MAX_EVENT_PAGE = 1000
MAX_UPDATE_BYTES = 1_000_000


@workflow.defn(name=AGENT_SESSION)
class AgentSession(OutcomesMixin, ThreadsMixin):
    @workflow.init
    def __init__(self, raw: Any) -> None:
        # Typed ``Any`` on purpose: a typed parameter that fails to decode fails the workflow *task*,
        # which Temporal retries forever. Validating here fails the workflow with a clear message.
        self._input_error: str | None = None
        self._events: list[dict[str, Any]] = []
        self._first_seq = 0
        self._tools: dict[str, ResolvedTool] = {}
        self._signal_tasks = []
        self._waiting_for = set()
        self._provisioning = None
        self._pipelined: _Pipelined | None = None
        info = workflow.info()
        try:
            if not isinstance(raw, dict):
                raise InvalidSessionInput("expected a JSON object shaped like client.beta.sessions.create")
            if CONTINUATION_KEY in raw:
                self._s = SessionState.model_validate(raw[CONTINUATION_KEY])
                self._resuming = True
            else:
                params = SessionCreateParams.model_validate(raw)
                self._s = SessionState(session_id=info.workflow_id, params=params, created_at=workflow.now())
                self._resuming = False
        except ValidationError as err:
            self._input_error = describe_validation_error(err)
            self._s = SessionState.model_construct(session_id=info.workflow_id, created_at=workflow.now())  # type: ignore[call-arg]
            return
        except InvalidSessionInput as err:
            self._input_error = err.message
            self._s = SessionState.model_construct(session_id=info.workflow_id, created_at=workflow.now())  # type: ignore[call-arg]
            return
        self._first_seq = self._s.next_seq
        self._tools = {t.name: t for t in self._s.params.agent_definition.resolved_tools()}
        if not self._resuming:
            # Recorded here, not in run(): an update delivered with the first activation is handled
            # before run() starts, and must already see these events (an outcome in progress, say).
            for event in self._s.params.initial_events:
                self._accept(event)

    # --- public surface -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, raw: Any) -> dict[str, Any]:
        if self._input_error is not None:
            raise InvalidSessionInput(self._input_error)
        if not self._resuming:
            await self._start()
        while True:
            await workflow.wait_condition(self._has_work)
            if self._s.pending_actions and self._s.interrupt_requested:
                self._interrupt_blocked_turn()
            elif self._s.turn_active or (self._s.pending_actions and self._all_actions_resolved()):
                await self._run_turn()
            elif self._startable():
                await self._start_queued_threads()
            elif self._finished():
                break
            elif workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new()
            else:
                self._s.interrupt_requested = False  # an interrupt with nothing to interrupt
        for record in self._s.threads:
            if record.status != "terminated":
                record.status = "terminated"  # the threads end with the session (parent close policy)
                ended = self._emit(
                    "session.thread_status_terminated", session_thread_id=record.thread_id, agent_name=record.agent_name
                )
                self._webhook("session.thread_terminated", ended, session_thread_id=record.thread_id)
        await self._sandbox_ready()  # a workspace that could not be prepared fails the session
        self._set_status("terminated")
        self._webhook("session.status_terminated", self._emit("session.status_terminated"))
        await self._flush_signals()
        return self._session_object().model_dump(mode="json")

    @workflow.update(name=SEND_EVENTS_UPDATE)
    async def send_events(self, events: Any) -> list[dict[str, Any]]:
        """Send ``user.*`` events (``client.beta.sessions.events.send``); returns their echoes."""
        echoes = []
        for event in INBOUND_EVENTS.validate_python(events):
            echoes.append(self._accept(event))
        return echoes

    @send_events.validator
    def _validate_events(self, events: Any) -> None:
        if self._input_error is not None:
            raise InvalidEvents(f"session failed to start: {self._input_error}")
        if self._s.status == "terminated":
            raise InvalidEvents("session is terminated and accepts no more events")
        if not isinstance(events, list) or not events:
            raise InvalidEvents("events: expected a non-empty JSON array of events")
        size = len(workflow.payload_converter().to_payloads([events])[0].data)
        if size > MAX_UPDATE_BYTES:
            raise InvalidEvents(f"events: {size} bytes is over the {MAX_UPDATE_BYTES}-byte limit of one send")
        try:
            parsed = INBOUND_EVENTS.validate_python(events)
        except ValidationError as err:
            raise InvalidEvents(describe_validation_error(err, "events.")) from None
        answered: set[str] = set()
        for i, event in enumerate(parsed):
            if isinstance(event, UserDefineOutcomeEvent):
                active = self._s.active_outcome
                if active is not None or any(isinstance(e, UserDefineOutcomeEvent) for e in parsed[:i]):
                    which = active.outcome_id if active else "another event of this send"
                    raise InvalidEvents(
                        f"events.{i}: an outcome is already in progress ({which}); define the next one after its "
                        "terminal span.outcome_evaluation_end"
                    )
            if isinstance(event, UserInterruptEvent) and event.session_thread_id is not None:
                if self._thread(event.session_thread_id) is None:
                    raise InvalidEvents(
                        f"events.{i}.session_thread_id: no thread {event.session_thread_id!r} in this session"
                    )
            if isinstance(event, (UserToolConfirmationEvent, UserCustomToolResultEvent)):
                ref = event.tool_use_id if isinstance(event, UserToolConfirmationEvent) else event.custom_tool_use_id
                kind = "confirm" if isinstance(event, UserToolConfirmationEvent) else "custom"
                action = self._find_action(ref)
                field = "tool_use_id" if kind == "confirm" else "custom_tool_use_id"
                routed = self._thread_action_route(ref)
                if action is None and routed is not None and routed[1].kind == kind:
                    if routed[0] in answered:
                        raise InvalidEvents(f"events.{i}.{field}: {ref!r} was already answered")
                    answered.add(routed[0])
                    continue  # a thread's call, cross-posted here: routed to the thread
                if action is None or action.kind != kind:
                    kind_name = event.type.split(".")[1]
                    raise InvalidEvents(f"events.{i}.{field}: {ref!r} is not a pending {kind_name} request")
                if action.resolved or action.event_id in answered:
                    raise InvalidEvents(f"events.{i}.{field}: {ref!r} was already answered")
                answered.add(action.event_id)

    @workflow.signal(name=USER_EVENTS_SIGNAL)
    def user_events(self, events: Any) -> None:
        """The same ``user.*`` events from workflow code, which can signal another workflow but not
        send it an update (``SessionChildHandle.send``). A signal cannot be refused: events that
        fail the update's validation are dropped whole, and a ``session.error`` says why."""
        try:
            self._validate_events(events)
        except InvalidEvents as err:
            message = f"events sent by signal were not accepted: {err.message}"
            self._emit(
                "session.error",
                error={"type": "unknown_error", "message": message, "retry_status": {"type": "exhausted"}},
            )
            return
        for event in INBOUND_EVENTS.validate_python(events):
            self._accept(event)

    @workflow.signal(name=THREAD_REPORT_SIGNAL)
    def _thread_report(self, report: ThreadReport) -> None:
        """A thread of this coordinator session reports status, usage or calls awaiting the user."""
        self._on_thread_report(report)

    @workflow.signal(name=THREAD_INPUT_SIGNAL)
    def _thread_input(self, inp: ThreadInput) -> None:
        """This thread's coordinator routes events (messages, answers, interrupts) to it."""
        self._on_thread_input(inp)

    @workflow.signal(name=MODEL_RETRY_SIGNAL)
    def _model_request_retrying(self, notice: ModelRetryNotice) -> None:
        if self._s.status not in ("running", "rescheduling"):
            return  # a late notice from a request the session already gave up on (e.g. interrupted)
        self._set_status("rescheduling")
        self._emit("session.status_rescheduled")
        self._emit(
            "session.error",
            error={
                "type": notice.error_type,
                "message": notice.message,
                "retry_status": {"type": "retrying"},
                "status_code": notice.status_code,
                "retry_in_seconds": notice.retry_in_seconds,
                "attempt": notice.attempt,
            },
        )

    @workflow.query(name=SESSION_QUERY)
    def session(self) -> dict[str, Any]:
        return self._session_object().model_dump(mode="json")

    @workflow.query(name=EVENTS_QUERY)
    def events(self, request: dict[str, Any] | None = None) -> dict[str, Any]:
        """A page of the event log: ``{"after_seq": -1, "limit": 100}``."""
        request = request or {}
        after = int(request.get("after_seq", -1))
        limit = max(1, min(int(request.get("limit", 100)), MAX_EVENT_PAGE))
        start = max(after + 1 - self._first_seq, 0)
        page = self._events[start : start + limit]
        next_seq = page[-1]["seq"] + 1 if page else max(after + 1, self._first_seq)
        return EventPage(
            data=[SessionEvent.model_validate(e) for e in page],
            first_seq=self._first_seq,
            next_seq=next_seq,
            has_more=start + limit < len(self._events),
            previous_run_id=workflow.info().continued_run_id,
        ).model_dump(mode="json", exclude_none=False)

    # --- lifecycle ----------------------------------------------------------------------------------

    async def _start(self) -> None:
        s = self._s
        ctx = s.thread_context
        needs_agent_ref = True
        if ctx is not None and ctx.agent_ref:
            s.agent_ref = ctx.agent_ref  # the coordinator stored it already
            needs_agent_ref = False
        if ctx is not None:
            s.sandbox_queue = ctx.sandbox_queue  # the coordinator's sandbox and workspace
            s.memory_ref = ctx.memory_ref  # and its memory mounts
            if needs_agent_ref:
                await self._register_agents()
            return
        if needs_agent_ref and self._can_start_fast() and workflow.patched(FAST_START_PATCH):
            # Nothing the first model request needs comes from the store or the sandbox: it carries
            # the agent definition (stored by that request, under the reference computed here), and
            # the workspace is prepared while the model answers; tools wait for it (_sandbox_ready).
            s.agent_ref = content_ref(s.params.agent_definition.model_dump(mode="json"))
            s.agent_inline = True
            self._provisioning = asyncio.create_task(self._provision_sandbox())
            return
        if needs_agent_ref and workflow.patched(PARALLEL_START_PATCH):
            # Storing the agent and preparing the workspace do not depend on each other: one round
            # trip before the first model request, not two.
            await asyncio.gather(self._register_agents(), self._provision_sandbox())
            return
        if needs_agent_ref:
            await self._register_agents()
        await self._provision_sandbox()

    def _can_start_fast(self) -> bool:
        # Memory mounts go into the first request's system prompt, so their provisioning comes
        # first; a coordinator's roster agents must be stored before any thread starts.
        params = self._s.params
        return not params.resources and not params.agent_definition.roster()

    async def _register_agents(self) -> None:
        params = self._s.params
        roster = params.agent_definition.roster()
        registered = await workflow.execute_activity(
            REGISTER_SESSION,
            RegisterSessionInput(
                session_id=self._s.session_id,
                agent=params.agent_definition.model_dump(mode="json"),
                roster=[agent.model_dump(mode="json") for agent in roster.values()],
            ),
            result_type=RegisterSessionResult,
            **options.store_call(params.options.heartbeat_timeout_seconds, timeout_seconds=60),
        )
        self._s.agent_ref = registered.agent_ref
        self._s.roster_refs = dict(zip(roster, registered.roster_refs, strict=True))

    async def _provision_sandbox(self) -> None:
        params = self._s.params
        memory = [
            MemoryMountRequest(memory_store_id=r.memory_store_id, access=r.access, instructions=r.instructions)
            for r in params.resources
        ]
        queue = sandbox_shared_queue(workflow.info().task_queue)
        try:
            provisioned = await workflow.execute_activity(
                SANDBOX_PROVISION,
                ProvisionSandboxInput(session_id=self._s.session_id, memory_stores=memory),
                result_type=ProvisionSandboxResult,
                task_queue=queue,
                # Downloading memory stores takes longer than creating a folder.
                **options.sandbox_call(
                    300 if memory else 60,
                    params.options.heartbeat_timeout_seconds,
                    params.options.sandbox_provision_seconds,
                ),
            )
        except ActivityError as err:
            if isinstance(err.cause, ApplicationError) and err.cause.type == MEMORY_STORE_UNAVAILABLE:
                await self._fail_start(err.cause.message)
            if not workflow.patched(PROVISION_FAILURE_PATCH):
                raise  # a session that failed here before the patch replays as it failed
            await self._fail_start(
                _provision_failure(err, queue, params.options.sandbox_provision_seconds), SANDBOX_UNAVAILABLE
            )
        self._s.sandbox_queue = provisioned.task_queue
        self._s.memory_mounts = provisioned.memory_mounts
        self._s.memory_ref = provisioned.memory_ref

    async def _fail_start(self, message: str, error_type: str = MEMORY_STORE_UNAVAILABLE) -> NoReturn:
        """The session cannot start (a memory store cannot be mounted, no workspace): say so in the
        event log, terminate, and fail the workflow with the same message, as bad input does."""
        self._emit(
            "session.error", error={"type": "unknown_error", "message": message, "retry_status": {"type": "terminal"}}
        )
        self._set_status("terminated")
        self._webhook("session.status_terminated", self._emit("session.status_terminated"))
        await self._flush_signals()
        raise ApplicationError(message, type=error_type, non_retryable=True)

    def _has_work(self) -> bool:
        s = self._s
        return (
            s.turn_active
            or s.interrupt_requested
            or (bool(s.pending_actions) and self._all_actions_resolved())
            or self._finished()
            or bool(self._startable())
            or workflow.info().is_continue_as_new_suggested()
        )

    def _finished(self) -> bool:
        s = self._s
        return (
            not s.params.options.keep_alive
            and s.stop_reason is not None
            and s.stop_reason.type != "requires_action"
            and not s.turn_active
            and not s.pending_actions
            and not self._threads_with_work()
            and workflow.all_handlers_finished()
        )

    async def _continue_as_new(self) -> None:
        await self._sandbox_ready()  # the next run's state names the sandbox
        await self._flush_signals()
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.logger.info("continuing as new", extra={"next_seq": self._s.next_seq, "step": self._s.step})
        workflow.continue_as_new({CONTINUATION_KEY: self._s.model_dump(mode="json")})

    # --- inbound events -------------------------------------------------------------------------------

    def _accept(self, event: Any) -> dict[str, Any]:
        """Record an inbound event in the log and route it; runs in the update handler."""
        s = self._s
        fields = event.model_dump(mode="json", exclude={"type"}, exclude_none=True)
        if isinstance(event, UserDefineOutcomeEvent):
            fields["outcome_id"] = "outc_" + event_id(s.session_id, s.next_seq)[5:]
            fields.setdefault("max_iterations", 3)
        echo = self._emit(event.type, **fields)
        if isinstance(event, UserDefineOutcomeEvent):
            rubric = event.rubric
            s.outcomes.append(
                OutcomeState(
                    outcome_id=fields["outcome_id"],
                    description=event.description,
                    rubric=rubric.content if rubric.type == "text" else "",
                    rubric_source=rubric.model_dump(mode="json"),
                    max_iterations=event.max_iterations or 3,
                )
            )
            if not s.pending_actions:
                s.turn_active = True
        elif isinstance(event, UserMessageEvent):
            s.pending_content.extend(b.model_dump(mode="json", exclude_none=True) for b in event.content)
            if not s.pending_actions:
                s.turn_active = True
        elif isinstance(event, UserInterruptEvent):
            if event.session_thread_id is not None:
                record = self._thread(event.session_thread_id)
                if record is not None:
                    self._route_to_thread(record, [{"type": "user.interrupt"}])
                return echo
            for record in s.threads:
                if record.status in ("running", "queued"):
                    self._route_to_thread(record, [{"type": "user.interrupt"}])
            if s.turn_active or s.pending_actions:
                s.interrupt_requested = True
        elif isinstance(event, (UserToolConfirmationEvent, UserCustomToolResultEvent)) and self._route_answer(
            event, echo
        ):
            pass
        elif isinstance(event, UserToolConfirmationEvent):
            action = self._find_action(event.tool_use_id)
            assert action is not None
            action.decision = event.result
            action.deny_message = event.deny_message
        elif isinstance(event, UserCustomToolResultEvent):
            action = self._find_action(event.custom_tool_use_id)
            assert action is not None
            action.result_content = [b.model_dump(mode="json", exclude_none=True) for b in event.content]
            action.result_is_error = bool(event.is_error)
        return echo

    def _route_answer(self, event: Any, echo: dict[str, Any]) -> bool:
        """An answer to a thread's call cross-posted here goes to that thread. True if routed."""
        ref = event.tool_use_id if isinstance(event, UserToolConfirmationEvent) else event.custom_tool_use_id
        if self._find_action(ref) is not None:
            return False
        found = self._thread_action_route(ref)
        if found is None:
            return False
        key, route = found
        del self._s.thread_actions[key]
        record = self._thread(route.thread_id)
        echo["session_thread_id"] = route.thread_id
        routed = event.model_dump(mode="json", exclude_none=True)
        routed["tool_use_id" if isinstance(event, UserToolConfirmationEvent) else "custom_tool_use_id"] = (
            route.thread_event_id
        )
        if record is not None:
            self._route_to_thread(record, [routed])
            self._mark_running(record)
        return True

    def _accept_routed(self, raw: dict[str, Any]) -> None:
        [event] = INBOUND_EVENTS.validate_python([raw])
        if isinstance(event, (UserToolConfirmationEvent, UserCustomToolResultEvent)):
            ref = event.tool_use_id if isinstance(event, UserToolConfirmationEvent) else event.custom_tool_use_id
            action = self._find_action(ref)
            if action is None or action.resolved:
                workflow.logger.warning("routed answer for no pending call", extra={"ref": ref})
                return
        self._accept(event)

    def _find_action(self, ref: str) -> PendingAction | None:
        for action in self._s.pending_actions:
            if ref in (action.event_id, action.tool_use_id):
                return action
        return None

    def _all_actions_resolved(self) -> bool:
        return all(a.resolved for a in self._s.pending_actions)

    # --- the turn -------------------------------------------------------------------------------------

    async def _run_turn(self) -> None:
        s = self._s
        s.turn_active = True
        self._set_status("running")
        if s.pending_actions:
            await self._settle_actions()
        while True:
            if self._pipelined is not None and not self._pipelined_still_wanted():
                await self._drop_pipelined()
            if s.interrupt_requested:
                self._idle("end_turn")
                return None
            if s.turn_steps >= s.params.options.max_steps_per_turn:
                self._emit(
                    "session.error",
                    error={
                        "type": "tool_use_limit_reached_error",
                        "message": f"the turn reached {s.turn_steps} tool-use rounds (options.max_steps_per_turn)",
                        "retry_status": {"type": "exhausted"},
                    },
                )
                self._idle("retries_exhausted")
                return None
            if self._budget_reached():
                self._idle("budget_reached")
                return None
            if self._pipelined is None and workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new()  # (never with a request in flight: none is pipelined then)
            if not await self._start_pending_outcome():
                await self._drop_pipelined()
                self._idle("end_turn")
                return None
            self._deliver_thread_results()
            result = await self._request_model()
            if result is None:
                return
            s.turn_steps += 1
            tool_uses = self._emit_response(result)
            if result.stop_reason == "refusal":
                self._idle("refusal")
                return None
            if not tool_uses:
                if s.pending_content and not s.interrupt_requested:
                    continue  # a user.message arrived while the model answered: answer it too
                outcome = s.active_outcome
                if outcome is not None and outcome.result == "running" and not s.interrupt_requested:
                    if self._budget_reached():
                        self._idle("budget_reached")
                        return None
                    if await self._evaluate_outcome(outcome):
                        continue  # revise, or the final acknowledgment turn
                self._idle("end_turn")
                return None
            await self._dispatch_tools(tool_uses)
            if s.pending_actions:
                if not self._all_actions_resolved():
                    blocking = [a.event_id for a in s.pending_actions if not a.resolved]
                    self._idle("requires_action", event_ids=blocking)
                    return None
                await self._settle_actions()

    async def _request_model(self) -> ModelRequestResult | None:
        s = self._s
        pipelined, self._pipelined = self._pipelined, None
        if pipelined is not None:
            start = self._emit("span.model_request_start")  # its tool results are in: it is under way
            handle = pipelined.handle
            sent: list[dict[str, Any]] = [
                b for b in s.pending_content if b.get("type") == "tool_result_ref" and b["tool_use_id"] in pipelined.ids
            ]
        else:
            sent = list(s.pending_content)
            if not sent:  # nothing new to say: the transcript already ends with the agent's answer
                self._idle("end_turn")
                return None
            new_messages = [TranscriptMessage(role="user", content=order_user_blocks(sent))]
            inp = self._model_request_input(new_messages)
            start = self._emit("span.model_request_start")
            try:
                check_payload_size(inp, "model request")
            except PayloadTooLargeError as err:
                self._emit(
                    "span.model_request_end",
                    model_request_start_id=start["id"],
                    is_error=True,
                    model_usage=_zero_usage(),
                )
                self._fail_turn("unknown_error", err.message)
                return None
            handle = self._start_model_request(inp)
        await workflow.wait_condition(lambda: handle.done() or s.interrupt_requested)
        await cancel_unless_done(handle)
        try:
            result = handle.result()
        except (ActivityError, CancelledError, asyncio.CancelledError) as err:
            self._emit(
                "span.model_request_end", model_request_start_id=start["id"], is_error=True, model_usage=_zero_usage()
            )
            if s.interrupt_requested:
                self._idle("end_turn")
                return None
            cause = err.cause if isinstance(err, ActivityError) else None
            error_type = cause.type if isinstance(cause, ApplicationError) and cause.type else "unknown_error"
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            self._fail_turn(error_type, message)
            return None
        if pipelined is not None and result.tool_result_attempts != {b["tool_use_id"]: b.get("attempt") for b in sent}:
            # It sent a result from a tool attempt whose completion Temporal then rejected (its worker
            # was presumed lost, and a later attempt's result is the one in the event log). Its
            # reply answers results the session never saw: ask again with the accepted ones.
            self._add_usage(result.usage, result.cost_nanos, result.model)  # (it was paid for)
            self._emit(
                "span.model_request_end", model_request_start_id=start["id"], is_error=True, model_usage=_zero_usage()
            )
            workflow.logger.warning("pipelined request sent another attempt's tool result; asking again")
            return await self._request_model()
        taken = {id(b) for b in sent}
        s.pending_content = [b for b in s.pending_content if id(b) not in taken]
        s.agent_inline = False  # stored by this request
        s.transcript_len = result.transcript_len
        s.transcript_version = result.transcript_version
        if result.cleared_before != s.cleared_before:
            s.cleared_before = result.cleared_before
            self._emit("agent.thread_context_compacted")
        self._add_usage(result.usage, result.cost_nanos, result.model)
        if s.status == "rescheduling":
            self._set_status("running")
            self._emit("session.status_running")
        self._emit(
            "span.model_request_end",
            model_request_start_id=start["id"],
            is_error=False,
            model_usage=result.usage.model_dump(
                include={"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"}
            ),
        )
        return result

    def _model_request_input(
        self, new_messages: list[TranscriptMessage], await_tool_results: list[str] | None = None
    ) -> ModelRequestInput:
        s = self._s
        opts = s.params.options
        return ModelRequestInput(
            session_id=s.session_id,
            agent_ref=s.agent_ref or "",
            agent=s.params.agent_definition.model_dump(mode="json") if s.agent_inline else None,
            model=s.params.agent_definition.model_id,
            max_tokens=opts.max_tokens,
            step=s.step + 1,
            turn=s.turn,
            transcript_len=s.transcript_len,
            transcript_version=s.transcript_version,
            new_messages=new_messages,
            context_window_tokens=opts.context_window_tokens,
            cleared_before=s.cleared_before,
            max_attempts=opts.max_model_attempts,
            memory_ref=s.memory_ref,
            await_tool_results=await_tool_results or [],
        )

    def _start_model_request(self, inp: ModelRequestInput, *, waits_for_tools: bool = False) -> Any:
        self._s.step += 1
        call = self._model_call_options()
        if waits_for_tools:  # its clock runs while the tools do
            call["start_to_close_timeout"] += timedelta(seconds=options.TOOL_START_TO_CLOSE_SECONDS)
        return workflow.start_activity(MODEL_REQUEST, inp, result_type=ModelRequestResult, **call)

    # --- pipelined model requests ---------------------------------------------------------------------
    #
    # A step is a model request, then the tool calls it asks for, then the next model request with
    # their results. Scheduled one after the other, the next request waits for a workflow task
    # after the tools finish. When nothing but those results can go into it, the session schedules
    # it with the tools instead: the model activity waits for the results in the store and starts
    # the moment the sandbox stores them, while Temporal reports the tools' completion.

    def _can_pipeline(self) -> bool:
        s = self._s
        outcome = s.active_outcome
        return (
            s.params.options.pipeline_model_requests
            and not s.pending_content  # a message that arrived meanwhile goes with the results
            and not s.interrupt_requested
            and s.turn_steps < s.params.options.max_steps_per_turn
            and not self._budget_reached()
            and not workflow.info().is_continue_as_new_suggested()
            and (outcome is None or outcome.result != "pending")
            and s.params.agent_definition.multiagent is None  # thread results join a coordinator's requests
            # A budget shared with other threads can run out while the tools run, and an activity
            # learns of its cancellation only at its next heartbeat: too late to stop the request.
            and not (s.thread_context is not None and s.thread_context.report_usage)
            and workflow.patched(PIPELINE_PATCH)
        )

    def _start_pipelined(self, tool_use_ids: list[str]) -> None:
        refs = [{"type": "tool_result_ref", "tool_use_id": i} for i in tool_use_ids]
        inp = self._model_request_input([TranscriptMessage(role="user", content=refs)], tool_use_ids)
        try:
            check_payload_size(inp, "model request")
        except PayloadTooLargeError:
            return  # the request made after the tools reports it
        self._pipelined = _Pipelined(handle=self._start_model_request(inp, waits_for_tools=True), ids=set(tool_use_ids))

    def _pipelined_still_wanted(self) -> bool:
        """The pipelined request is still the request the session would make now."""
        s = self._s
        assert self._pipelined is not None
        refs = {b["tool_use_id"] for b in s.pending_content if b.get("type") == "tool_result_ref"}
        return (
            self._pipelined.ids <= refs  # every tool call it waits for succeeded (none was answered inline)
            and not s.interrupt_requested
            and s.turn_steps < s.params.options.max_steps_per_turn
            and not self._budget_reached()
        )

    async def _drop_pipelined(self) -> None:
        pipelined, self._pipelined = self._pipelined, None
        if pipelined is None:
            return
        await cancel_unless_done(pipelined.handle)
        try:
            result = pipelined.handle.result()
        except (ActivityError, CancelledError, asyncio.CancelledError):
            return
        self._add_usage(result.usage, result.cost_nanos, result.model)  # answered before the cancel: paid for

    def _emit_response(self, result: ModelRequestResult) -> list[tuple[str, dict[str, Any]]]:
        """Turn the model's content into events; return the tool calls as (event id, block)."""
        tool_uses: list[tuple[str, dict[str, Any]]] = []
        text: list[dict[str, Any]] = []

        def flush_text() -> None:
            if text:
                self._emit("agent.message", content=list(text))
                self._s.final_message = "\n".join(b["text"] for b in text)
                text.clear()

        for block in result.content:
            kind = block.get("type")
            if kind == "text":
                text.append({"type": "text", "text": block["text"]})
                continue
            flush_text()
            if kind in ("thinking", "redacted_thinking"):
                self._emit("agent.thinking")
            elif kind == "tool_use":
                tool = self._tools.get(block["name"])
                if tool is not None and tool.kind == "coordinator":
                    event = self._emit(
                        "agent.tool_use",
                        name=block["name"],
                        input=block["input"],
                        evaluated_permission="allow",
                        evaluation={"type": "always_allow"},
                    )
                elif tool is not None and tool.kind == "custom":
                    event = self._emit("agent.custom_tool_use", name=block["name"], input=block["input"])
                elif tool is not None and tool.enabled:
                    permission = "ask" if tool.permission in ("always_ask", "auto") else "allow"
                    event = self._emit(
                        "agent.tool_use",
                        name=block["name"],
                        input=block["input"],
                        evaluated_permission=permission,
                        evaluation={"type": tool.permission},
                    )
                else:
                    event = self._emit(
                        "agent.tool_use", name=block["name"], input=block["input"], evaluated_permission="deny"
                    )
                tool_uses.append((event["id"], block))
        flush_text()
        return tool_uses

    async def _dispatch_tools(self, tool_uses: list[tuple[str, dict[str, Any]]]) -> None:
        """Run what is allowed now, refuse what is not available, queue what needs the client."""
        s = self._s
        run_now: list[tuple[str, dict[str, Any]]] = []
        delegation: list[tuple[str, dict[str, Any]]] = []
        for event_id_, block in tool_uses:
            tool = self._tools.get(block["name"])
            if tool is not None and tool.kind == "coordinator":
                delegation.append((event_id_, block))
            elif tool is None or (tool.kind == "builtin" and not tool.enabled):
                self._record_inline_result(
                    event_id_, block["id"], f"tool {block['name']!r} is not available to this agent", is_error=True
                )
            elif tool.kind == "custom":
                s.pending_actions.append(
                    PendingAction(event_id=event_id_, tool_use_id=block["id"], name=block["name"], kind="custom")
                )
            elif tool.permission in ("always_ask", "auto"):
                s.pending_actions.append(
                    PendingAction(
                        event_id=event_id_,
                        tool_use_id=block["id"],
                        name=block["name"],
                        kind="confirm",
                        input=block["input"],
                    )
                )
            else:
                run_now.append((event_id_, block))
        pipeline = len(run_now) == len(tool_uses) and self._can_pipeline()
        await self._run_tools(run_now, pipeline=pipeline)
        if delegation:
            await self._run_coordinator_tools(delegation)

    async def _settle_actions(self) -> None:
        """All pending actions are answered: run the allowed ones, answer the rest."""
        s = self._s
        actions, s.pending_actions = s.pending_actions, []
        run_now = []
        for action in actions:
            if action.kind == "custom":
                s.pending_content.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": action.tool_use_id,
                        "content": action.result_content or [],
                        "is_error": action.result_is_error,
                    }
                )
            elif action.decision == "allow":
                run_now.append(
                    (action.event_id, {"id": action.tool_use_id, "name": action.name, "input": action.input})
                )
            else:
                why = action.deny_message or "the user denied this tool call"
                self._record_inline_result(
                    action.event_id, action.tool_use_id, f"permission denied: {why}", is_error=True
                )
        await self._run_tools(run_now)

    async def _run_tools(self, calls: list[tuple[str, dict[str, Any]]], *, pipeline: bool = False) -> None:
        """Run tool calls on the session's sandbox; ``pipeline``: schedule the next model request with them."""
        if not calls:
            return
        await self._sandbox_ready()
        s = self._s
        opts = s.params.options
        started: list[tuple[str, dict[str, Any], Any]] = []
        for event_id_, block in calls:
            inp = ToolCallInput(
                session_id=s.session_id,
                workspace_id=s.workspace_id,
                shared_workspace=bool(s.threads) or s.thread_context is not None,
                networking=s.params.environment.networking.model_dump(mode="json"),
                runtime=s.params.environment.runtime,
                turn=s.turn,
                tool_use_id=block["id"],
                name=block["name"],
                input=block["input"],
            )
            try:
                check_payload_size(inp, f"tool call {block['name']}")
            except PayloadTooLargeError as err:
                self._record_inline_result(event_id_, block["id"], err.message, is_error=True)
                continue
            handle = workflow.start_activity(
                tool_activity(block["name"]),
                inp,
                result_type=ToolCallResult,
                task_queue=s.sandbox_queue,
                **options.tool_call(
                    opts.heartbeat_timeout_seconds, opts.sandbox_schedule_to_start_seconds, opts.max_tool_attempts
                ),
            )
            started.append((event_id_, block, handle))
        if pipeline and len(started) == len(calls):
            self._start_pipelined([block["id"] for _, block, _ in started])
        await workflow.wait_condition(lambda: all(h.done() for *_, h in started) or s.interrupt_requested)
        for *_, handle in started:
            if not handle.done():
                handle.cancel()
        for event_id_, block, handle in started:
            try:
                result = await handle
            except (ActivityError, CancelledError, asyncio.CancelledError) as err:
                if s.interrupt_requested:
                    why = "interrupted by the user before the tool finished"
                else:
                    why = _sandbox_failure(err, s.params.options.sandbox_schedule_to_start_seconds)
                self._record_inline_result(event_id_, block["id"], why, is_error=True)
                continue
            self._emit("agent.tool_result", tool_use_id=event_id_, content=result.content, is_error=result.is_error)
            ref = {"type": "tool_result_ref", "tool_use_id": block["id"]}
            if result.attempt is not None:
                ref["attempt"] = result.attempt  # which stored result the workflow accepted
            s.pending_content.append(ref)

    def _interrupt_blocked_turn(self) -> None:
        """``user.interrupt`` while waiting on the client: deny what is pending, idle with end_turn."""
        s = self._s
        for action in s.pending_actions:
            if action.kind == "custom" and action.result_content is not None:
                s.pending_content.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": action.tool_use_id,
                        "content": action.result_content,
                        "is_error": action.result_is_error,
                    }
                )
            else:
                self._record_inline_result(
                    action.event_id, action.tool_use_id, "interrupted by the user", is_error=True
                )
        s.pending_actions = []
        self._idle("end_turn")

    def _session_object(self) -> SessionObject:
        s = self._s
        now = workflow.now()
        active = s.active_seconds + ((now - s.running_since).total_seconds() if s.running_since else 0.0)
        params = s.params if self._input_error is None else None
        return SessionObject(
            id=s.session_id,
            status=s.status,
            agent=params.agent_definition.model_dump(mode="json") if params else {},
            environment_id=params.environment_id if params else "",
            title=params.title if params else None,
            metadata=params.metadata if params else {},
            budget=params.budget if params else None,
            usage=self._usage_json(),  # type: ignore[arg-type]
            stats=SessionStats(active_seconds=active, duration_seconds=(now - s.created_at).total_seconds()),
            created_at=s.created_at,
            updated_at=now,
            stop_reason=s.stop_reason,
            final_message=s.final_message,
            outcome_evaluations=[o.resource() for o in s.outcomes] if params else [],
            resources=s.memory_resources() if params else [],
            event_count=s.next_seq,
            threads=[t.summary() for t in s.threads],
        )


@dataclass
class _Pipelined:
    """A model request scheduled with the tool calls whose results it waits for."""

    handle: Any
    ids: set[str]


def _provision_failure(err: ActivityError, queue: str, wait_seconds: float) -> str:
    """Why the session's workspace could not be prepared, and what to do about it."""
    cause = err.cause or err
    if isinstance(cause, ActivityTimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START:
        return (
            f"no sandbox worker took this session's workspace within {wait_seconds:g}s "
            f"(options.sandbox_provision_seconds): start one on task queue {queue!r}, "
            "e.g. `python worker.py --role sandbox`"
        )
    return f"the sandbox could not prepare this session's workspace: {cause}"


def _sandbox_failure(err: BaseException, wait_seconds: float) -> str:
    """Tell the agent plainly what happened to its tool call when the sandbox itself failed."""
    cause = err.cause if isinstance(err, ActivityError) and err.cause else err
    if isinstance(cause, ActivityTimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START:
        return (
            f"the sandbox worker holding this session's workspace did not take the call within {wait_seconds:g}s: "
            "it is down or overloaded. The workspace stays on its host and is used again when it is back; "
            "until then tool calls fail like this one."
        )
    if isinstance(cause, ActivityTimeoutError) and cause.type == TimeoutType.HEARTBEAT:
        return "the sandbox worker was lost while running this tool (it stopped responding); the call did not finish"
    return f"the sandbox could not run this tool: {cause}"
