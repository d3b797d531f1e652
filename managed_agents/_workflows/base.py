"""What every part of the session workflow shares: its state, the event log and status changes.

``AgentSession`` is assembled from this base and mixins (outcomes); each holds one concern, and
all of them run inside the one deterministic workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from managed_agents._contract import SESSIONS_BOOKKEEPING, SESSIONS_RECORD, WEBHOOKS_ENQUEUE
    from managed_agents._dreams.models import RecordSessionInput, mounted_memory_store_ids
    from managed_agents._errors import InvalidEvents as InvalidEvents  # re-exported
    from managed_agents._errors import InvalidSessionInput as InvalidSessionInput  # re-exported
    from managed_agents._models.activity_io import SessionBookkeepingInput
    from managed_agents._models.agent import ResolvedTool
    from managed_agents._models.events import StopReason
    from managed_agents._models.session import MonetaryAmount, RequestUsage
    from managed_agents._pricing import nanos_to_cents_str
    from managed_agents._webhooks.models import WebhookEventInput
    from managed_agents._workflows import activity_options as options
    from managed_agents._workflows.session_state import SessionState


def event_id(session_id: str, seq: int) -> str:
    """Deterministic and unique per session: the same on replay and across continue-as-new."""
    return "sevt_" + hashlib.sha256(f"{session_id}:{seq}".encode()).hexdigest()[:24]


def describe_validation_error(err: ValidationError, prefix: str = "") -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        parts.append(f"{prefix}{loc}: {e['msg']}" if loc or prefix else e["msg"])
    more = f" (and {len(err.errors()) - 5} more)" if len(err.errors()) > 5 else ""
    return "; ".join(parts) + more


#: Managed Agents' payloads name an organization and workspace; a self-hosted engine has one of each.
WEBHOOKS_PATCH = "webhook-events-v2"
SESSION_INDEX_PATCH = "session-index-v1"
#: sessions started before this patch ran one local activity per webhook event and index record
BATCHED_BOOKKEEPING_PATCH = "batched-bookkeeping-v1"
WEBHOOK_SCOPE = {"organization_id": "org_self_hosted", "workspace_id": "wrkspc_self_hosted"}


class SessionBase:
    """State and event-log helpers; subclasses implement the loop."""

    _s: SessionState
    _events: list[dict[str, Any]]
    _first_seq: int
    _tools: dict[str, ResolvedTool]
    _input_error: str | None
    _signal_tasks: list[asyncio.Task[None]]
    #: Webhook events and index records not yet handed to a local activity (see _bookkeeping).
    _batch: SessionBookkeepingInput | None = None
    #: The workspace being prepared beside the first model request (a fast start), if any.
    _provisioning: asyncio.Task[None] | None

    async def _sandbox_ready(self) -> None:
        """Wait for the workspace before anything uses ``sandbox_queue``; raises what preparing it raised."""
        if self._provisioning is not None:
            await self._provisioning

    def _fail_turn(self, error_type: str, message: str) -> None:
        self._emit(
            "session.error",
            error={"type": error_type, "message": message, "retry_status": {"type": "exhausted"}},
        )
        self._idle("retries_exhausted")

    def _record_inline_result(self, event_id_: str, tool_use_id: str, text: str, *, is_error: bool) -> None:
        content = [{"type": "text", "text": text}]
        self._emit("agent.tool_result", tool_use_id=event_id_, content=content, is_error=is_error)
        self._s.pending_content.append(
            {"type": "tool_result", "tool_use_id": tool_use_id, "content": content, "is_error": is_error}
        )

    def _add_usage(self, usage: RequestUsage, cost_nanos: int | None, model: str) -> None:
        s = self._s
        s.usage.add(usage)
        if cost_nanos is None:
            s.unpriced_model = model
        else:
            s.cost_nanos += cost_nanos
        self._on_usage(usage, cost_nanos, model)

    def _webhook(self, type_: str, event: dict[str, Any], **data: Any) -> None:
        """Hand a webhook event over for delivery, without waiting for it.

        A local activity (no server round trip) looks up who subscribes; only if someone does is a
        ``WebhookEvent`` workflow started for it, with an id derived from the session event, so a
        replay or a retry never sends the same event twice, and delivery outlives the session.
        """
        if not workflow.patched(WEBHOOKS_PATCH):
            return  # a session recorded before webhooks existed replays without them
        s = self._s
        inp = WebhookEventInput(
            event_id="whe_" + event["id"][5:],
            type=type_,
            data={"type": type_, "id": s.session_id, **WEBHOOK_SCOPE, **data},
            created_at=workflow.now(),
            session_urls=[w.url for w in s.params.webhooks] if self._input_error is None else [],
        )

        if workflow.patched(BATCHED_BOOKKEEPING_PATCH):
            self._bookkeeping().webhook_events.append(inp)
            return

        task = self._local_activity_quietly(WEBHOOKS_ENQUEUE, inp, "webhook event not enqueued")
        self._signal_tasks.append(asyncio.create_task(task))

    def _index_finished_turn(self) -> None:
        """Note in the session index that this session finished a turn, with the memory stores it
        mounted: a dream schedule picks "the sessions since its last run" from there, and a dream
        reads sessions in this order, so a later statement wins over an earlier one."""
        if self._input_error is not None or not workflow.patched(SESSION_INDEX_PATCH):
            return
        stores = mounted_memory_store_ids(self._s.params.resources)
        inp = RecordSessionInput(session_id=self._s.session_id, memory_store_ids=stores, finished_at=workflow.now())
        if workflow.patched(BATCHED_BOOKKEEPING_PATCH):
            self._bookkeeping().finished_turns.append(inp)
            return

        task = self._local_activity_quietly(SESSIONS_RECORD, inp, "session not indexed")
        self._signal_tasks.append(asyncio.create_task(task))

    def _bookkeeping(self) -> SessionBookkeepingInput:
        """This activation's batch of webhook events and index records, sent in one local activity.

        The batch's task starts with the first item and sends once the rest of the workflow code
        has gone as far as it can, so everything noted until then (a turn's end: idle event, index
        record, and the session's end) goes in the same local activity; a later item starts the
        next batch.
        """
        if self._batch is None:
            batch = self._batch = SessionBookkeepingInput()

            async def send() -> None:
                # Conditions are checked only once no workflow code is ready to run, so this waits
                # until the code that noted the first item has gone as far as it can in this
                # activation (at a turn's end: through the session's end, if it ends).
                await workflow.wait_condition(lambda: True)
                self._batch = None  # from here on, a new item starts a new batch
                await self._local_activity_quietly(SESSIONS_BOOKKEEPING, batch, "session bookkeeping not done")

            self._signal_tasks.append(asyncio.create_task(send()))
        return self._batch

    async def _local_activity_quietly(self, activity: str, arg: Any, failure: str) -> None:
        """Run a bookkeeping local activity; a failure is logged, never breaks the session."""
        try:
            await workflow.execute_local_activity(activity, arg, **options.bookkeeping_local())
        except Exception as err:
            workflow.logger.warning(failure, extra={"error": str(err)})

    # Hooks: a thread of a coordinator session reports these to its coordinator.
    def _on_usage(self, usage: RequestUsage, cost_nanos: int | None, model: str) -> None:
        pass

    def _on_idle(self, reason: str, event_ids: list[str] | None) -> None:
        pass

    def _model_call_options(self) -> dict[str, Any]:
        """Activity options of every model call (agent turns and the grader): Temporal owns retries."""
        opts = self._s.params.options
        return options.model_call(
            opts.model_request_timeout_seconds, opts.heartbeat_timeout_seconds, opts.max_model_attempts
        )

    def _budget_reached(self) -> bool:
        s = self._s
        if s.parent_budget_reached:
            return True  # the coordinator's budget, shared by every thread, is spent
        budget = s.params.budget
        if budget is None:
            return False
        if s.unpriced_model is not None:
            return True
        return s.cost_nanos >= int(budget.max_list_cost.amount) * 10_000_000

    # --- events and status ------------------------------------------------------------------------

    def _emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        s = self._s
        event = {
            "id": event_id(s.session_id, s.next_seq),
            "type": type_,
            "seq": s.next_seq,
            "processed_at": workflow.now().isoformat(),
            **fields,
        }
        s.next_seq += 1
        self._events.append(event)
        return event

    def _set_status(self, status: str) -> None:
        s = self._s
        now = workflow.now()
        if status in ("running", "rescheduling") and s.running_since is None:
            s.running_since = now
        elif status in ("idle", "terminated") and s.running_since is not None:
            s.active_seconds += (now - s.running_since).total_seconds()
            s.running_since = None
        if status == "running" and s.status != "running" and s.status != "rescheduling":
            s.status = "running"
            if not s.pending_actions:
                s.turn += 1
            self._webhook("session.status_run_started", self._emit("session.status_running"))
            return
        s.status = status  # type: ignore[assignment]

    def _idle(self, reason: str, event_ids: list[str] | None = None) -> None:
        s = self._s
        s.turn_active = False
        if reason != "requires_action":
            s.turn_steps = 0
        s.interrupt_requested = False
        s.stop_reason = StopReason(type=reason, event_ids=event_ids)  # type: ignore[arg-type]
        self._set_status("idle")
        self._emit("session.usage", usage=self._usage_json(), budget=_dump(s.params.budget))
        idle = self._emit("session.status_idle", stop_reason=s.stop_reason.model_dump(exclude_none=True))
        self._webhook("session.status_idled", idle)
        self._index_finished_turn()
        if reason == "requires_action":
            self._webhook("session.requires_action", idle)
        elif reason == "budget_reached":
            self._webhook("session.budget_reached", idle)
        self._on_idle(reason, event_ids)

    def _usage_json(self) -> dict[str, Any]:
        usage = self._s.usage.model_copy()
        usage.list_cost = MonetaryAmount(amount=nanos_to_cents_str(self._s.cost_nanos))
        return usage.model_dump(mode="json")


async def cancel_unless_done(handle: Any) -> None:
    """Cancel an activity the session stopped waiting for (an interrupt), and let it settle."""
    if handle.done():
        return
    handle.cancel()
    with contextlib.suppress(ActivityError, CancelledError, asyncio.CancelledError):
        await handle


def _zero_usage() -> dict[str, int]:
    return {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json") if model is not None else None
