"""Calling agents from your own workflows: start or run an ``AgentSession`` (or a ``Dream``) as a
child workflow, send it events, and read its typed result.

Workflow code, so deterministic and free of I/O: child workflows started by name with plain JSON
inputs (the same contract any other Temporal client uses), ids from ``workflow.uuid4()``. ::

    @workflow.defn
    class InvoiceReview:
        @workflow.run
        async def run(self, invoice_id: str) -> str:
            session = await run_session({...}, id=f"review-{invoice_id}")
            return session.outcome_evaluations[-1].result
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from managed_agents._contract import AGENT_SESSION, DREAM, USER_EVENTS_SIGNAL
    from managed_agents._dreams.models import Dream, DreamCreateParams
    from managed_agents._errors import InvalidDreamInput, InvalidEvents, InvalidSessionInput
    from managed_agents._models.events import INBOUND_EVENTS
    from managed_agents._models.session import SessionCreateParams, SessionObject
    from managed_agents._workflows.base import describe_validation_error


def new_session_id() -> str:
    """A session id for workflow code (deterministic on replay), shaped like Managed Agents' ids."""
    return f"sesn_{workflow.uuid4().hex[:24]}"


def new_dream_id() -> str:
    return f"drm_{workflow.uuid4().hex[:24]}"


class SessionChildHandle:
    """An ``AgentSession`` started by this workflow as its child."""

    def __init__(self, handle: workflow.ChildWorkflowHandle[Any, Any]) -> None:
        self._handle = handle

    @property
    def id(self) -> str:
        """The session id (= the child's workflow id)."""
        return self._handle.id

    async def send(self, *events: Mapping[str, Any]) -> None:
        """Send ``user.*`` events (``user.message``, ``user.interrupt``, ``user.tool_confirmation``,
        ``user.custom_tool_result``, ``user.define_outcome``). They are checked here first, so a
        malformed event raises ``InvalidEvents`` in this workflow, naming the field. A
        workflow cannot send another workflow an update, so they go as a signal; one the session
        still refuses (answering a call that is not pending, say) becomes a ``session.error`` event.
        """
        payload = [dict(e) for e in events]
        try:
            INBOUND_EVENTS.validate_python(payload)
        except ValidationError as err:
            raise InvalidEvents(describe_validation_error(err, "events.")) from None
        await self._handle.signal(USER_EVENTS_SIGNAL, payload)

    async def send_message(self, text: str) -> None:
        await self.send({"type": "user.message", "content": [{"type": "text", "text": text}]})

    async def interrupt(self) -> None:
        await self.send({"type": "user.interrupt"})

    async def result(self) -> SessionObject:
        """The session object once the session ends (its workflow completes)."""
        return SessionObject.model_validate(await self._handle)


def _session_input(body: SessionCreateParams | Mapping[str, Any]) -> dict[str, Any]:
    # A mistake fails the calling workflow with a typed, non-retryable error naming the field: a
    # bare ValidationError would fail its workflow task instead, retried forever.
    try:
        params = body if isinstance(body, SessionCreateParams) else SessionCreateParams.model_validate(dict(body))
    except ValidationError as err:
        raise InvalidSessionInput(describe_validation_error(err)) from None
    return params.model_dump(mode="json", exclude_unset=True, by_alias=True)


async def start_session(
    body: SessionCreateParams | Mapping[str, Any], *, id: str | None = None, **child_options: Any
) -> SessionChildHandle:
    """Start an ``AgentSession`` as a child of this workflow and return its handle.

    Args:
        body: The session, shaped like ``client.beta.sessions.create`` (``agent`` may be an inline
            agent definition); checked here, so a mistake raises ``InvalidSessionInput`` (which
            fails this workflow, naming the field, unless caught).
        id: The session id (default: a new ``sesn_`` id).
        child_options: Passed to ``workflow.start_child_workflow`` (``task_queue``,
            ``parent_close_policy``, timeouts, ...). By default the child runs on this workflow's
            task queue and is terminated if this workflow closes first.
    """
    handle = await workflow.start_child_workflow(
        AGENT_SESSION, _session_input(body), id=id or new_session_id(), **child_options
    )
    return SessionChildHandle(handle)


async def run_session(
    body: SessionCreateParams | Mapping[str, Any], *, id: str | None = None, **child_options: Any
) -> SessionObject:
    """Run an ``AgentSession`` as a child workflow to its end and return the session object: its
    ``status``, ``stop_reason``, ``final_message``, ``outcome_evaluations`` and ``usage``."""
    return await (await start_session(body, id=id, **child_options)).result()


async def run_dream(
    body: DreamCreateParams | Mapping[str, Any], *, id: str | None = None, **child_options: Any
) -> Dream:
    """Run a ``Dream`` (shaped like ``client.beta.dreams.create``) as a child workflow; returns the
    dream object, whose ``outputs[0].memory_store_id`` is the curated store (``status`` says
    whether it completed)."""
    try:
        params = body if isinstance(body, DreamCreateParams) else DreamCreateParams.model_validate(dict(body))
    except ValidationError as err:
        raise InvalidDreamInput(describe_validation_error(err)) from None
    result = await workflow.execute_child_workflow(
        DREAM, params.model_dump(mode="json", exclude_unset=True), id=id or new_dream_id(), **child_options
    )
    return Dream.model_validate(result)
