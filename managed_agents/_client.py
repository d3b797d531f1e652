"""Python API: start, drive and read sessions through any Temporal client.

Everything here is plain Temporal underneath (start workflow, update, query), so a service in any
language can do the same with its own Temporal SDK and the JSON Schemas in ``schemas/``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from managed_agents._contract import AGENT_SESSION, EVENTS_QUERY, SEND_EVENTS_UPDATE, SESSION_QUERY
from managed_agents._models.events import EventPage, SessionEvent
from managed_agents._models.session import SessionCreateParams, SessionObject
from managed_agents._settings import DEFAULT_TASK_QUEUE, temporal_connect_config

TERMINAL_EVENT = "session.status_terminated"


async def connect(address: str | None = None, namespace: str | None = None) -> Client:
    """A Temporal client with the pydantic data converter, from Temporal's standard settings."""
    config = temporal_connect_config(address, namespace)
    return await Client.connect(**config, data_converter=pydantic_data_converter)


def new_session_id() -> str:
    return f"sesn_{uuid.uuid4().hex[:24]}"


class SessionHandle:
    def __init__(self, handle: WorkflowHandle[Any, Any]) -> None:
        self._handle = handle
        self._client = handle._client

    @property
    def id(self) -> str:
        return self._handle.id

    async def send(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """``client.beta.sessions.events.send``: returns the echoed events with their ids."""
        result: list[dict[str, Any]] = await self._handle.execute_update(SEND_EVENTS_UPDATE, list(events))
        return result

    async def send_message(self, text: str) -> list[dict[str, Any]]:
        return await self.send({"type": "user.message", "content": [{"type": "text", "text": text}]})

    async def interrupt(self) -> list[dict[str, Any]]:
        return await self.send({"type": "user.interrupt"})

    async def confirm(self, tool_use_id: str, allow: bool, deny_message: str | None = None) -> list[dict[str, Any]]:
        event: dict[str, Any] = {
            "type": "user.tool_confirmation",
            "tool_use_id": tool_use_id,
            "result": "allow" if allow else "deny",
        }
        if deny_message is not None:
            event["deny_message"] = deny_message
        return await self.send(event)

    async def custom_tool_result(
        self, custom_tool_use_id: str, text: str, *, is_error: bool = False
    ) -> list[dict[str, Any]]:
        return await self.send(
            {
                "type": "user.custom_tool_result",
                "custom_tool_use_id": custom_tool_use_id,
                "content": [{"type": "text", "text": text}],
                "is_error": is_error,
            }
        )

    async def retrieve(self) -> SessionObject:
        return SessionObject.model_validate(await self._handle.query(SESSION_QUERY))

    async def events_page(self, after_seq: int = -1, limit: int = 100, run_id: str | None = None) -> EventPage:
        handle = self._client.get_workflow_handle(self.id, run_id=run_id) if run_id else self._handle
        raw = await handle.query(EVENTS_QUERY, {"after_seq": after_seq, "limit": limit})
        return EventPage.model_validate(raw)

    async def events(self, after_seq: int = -1) -> list[SessionEvent]:
        """Every event after ``after_seq``, following the session back through continue-as-new runs."""
        out: list[SessionEvent] = []
        async for event in self._pages(after_seq, run_id=None):
            out.append(event)
        return out

    async def _pages(self, after_seq: int, run_id: str | None) -> AsyncIterator[SessionEvent]:
        page = await self.events_page(after_seq, 1000, run_id)
        if after_seq + 1 < page.first_seq and page.previous_run_id:
            async for event in self._pages(after_seq, page.previous_run_id):
                if event.seq < page.first_seq:
                    yield event
        while True:
            for event in page.data:
                yield event
            if not page.has_more:
                return
            page = await self.events_page(page.next_seq - 1, 1000, run_id)

    async def stream(self, after_seq: int = -1, poll_interval: float = 0.25) -> AsyncIterator[SessionEvent]:
        """Follow the event log live until the session terminates (``session.status_terminated``)."""
        last = after_seq
        while True:
            try:
                events = await self.events(last)
            except RPCError:
                await asyncio.sleep(poll_interval)
                continue
            for event in events:
                last = event.seq
                yield event
                if event.type == TERMINAL_EVENT:
                    return
            if not events:
                await asyncio.sleep(poll_interval)

    def thread(self, thread_id: str) -> SessionHandle:
        """A coordinator's thread: a session of its own, with its own event log."""
        return SessionHandle(self._client.get_workflow_handle(f"{self.id}--{thread_id}"))

    async def result(self) -> SessionObject:
        """Wait for the workflow to complete; the session object it returns."""
        return SessionObject.model_validate(await self._handle.result())


class SessionClient:
    def __init__(self, client: Client, task_queue: str = DEFAULT_TASK_QUEUE) -> None:
        self.client = client
        self.task_queue = task_queue

    @classmethod
    async def connect(
        cls, address: str | None = None, namespace: str | None = None, task_queue: str = DEFAULT_TASK_QUEUE
    ) -> SessionClient:
        return cls(await connect(address, namespace), task_queue)

    async def create(
        self, params: dict[str, Any] | SessionCreateParams, *, session_id: str | None = None
    ) -> SessionHandle:
        """``client.beta.sessions.create``: validates locally first, so mistakes fail here, not in the worker."""
        if isinstance(params, SessionCreateParams):
            body = params.model_dump(mode="json", exclude_unset=True)
        else:
            SessionCreateParams.model_validate(params)
            body = params
        handle = await self.client.start_workflow(
            AGENT_SESSION, body, id=session_id or new_session_id(), task_queue=self.task_queue
        )
        return SessionHandle(handle)

    def get(self, session_id: str) -> SessionHandle:
        return SessionHandle(self.client.get_workflow_handle(session_id))
