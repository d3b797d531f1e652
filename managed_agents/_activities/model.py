"""The model-request activity: one Messages API call per activity, Temporal owning retries."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import anthropic
from temporalio import activity
from temporalio.exceptions import ApplicationError

from managed_agents._contract import MODEL_REQUEST, REGISTER_SESSION
from managed_agents._logging import get_logger
from managed_agents._models.activity_io import (
    MemoryMount,
    ModelRequestInput,
    ModelRequestResult,
    ModelRetryNotice,
    RegisterSessionInput,
    RegisterSessionResult,
)
from managed_agents._models.agent import AgentDefinition
from managed_agents._models.session import CacheCreationUsage, RequestUsage
from managed_agents._pricing import cost_nanos
from managed_agents._prompt import build_request, next_cleared_before
from managed_agents._providers import ModelClientFactory, ModelProvider, as_provider
from managed_agents._retry import classify_model_error
from managed_agents._settings import ManagedAgentsSettings
from managed_agents._store import SessionStore

RETRY_SIGNAL = "model_request_retrying"
#: how often a pipelined request looks in the store for tool results stored by another process
FIRST_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 0.25

log = get_logger("managed_agents.model")


def default_client_factory(settings: ManagedAgentsSettings | None = None) -> ModelProvider:
    """The provider the settings (default: this worker's environment) name; its credentials are read
    on the worker, never from workflow history."""
    return as_provider(None, settings)


class ModelActivities:
    def __init__(self, store: SessionStore, client_factory: ModelProvider | ModelClientFactory | None = None) -> None:
        self.store = store
        self.provider = as_provider(client_factory)
        self._agents: dict[str, AgentDefinition] = {}
        self._memory: dict[str, list[MemoryMount]] = {}

    @activity.defn(name=REGISTER_SESSION)
    async def register_session(self, inp: RegisterSessionInput) -> RegisterSessionResult:
        ref = await asyncio.to_thread(self.store.put_agent, inp.agent)
        roster = [await asyncio.to_thread(self.store.put_agent, agent) for agent in inp.roster]
        return RegisterSessionResult(agent_ref=ref, roster_refs=roster)

    @activity.defn(name=MODEL_REQUEST)
    async def model_request(self, inp: ModelRequestInput) -> ModelRequestResult:
        info = activity.info()
        bound = log.bind(
            session_id=inp.session_id, turn=inp.turn, step=inp.step, activity="model_request", attempt=info.attempt
        )
        agent = await self._agent(inp.agent_ref, inp.agent)
        new = [m.model_dump() for m in inp.new_messages]
        used: dict[str, int] = {}
        if inp.await_tool_results:
            used = await self._await_tool_results(inp.session_id, inp.await_tool_results)
            new = [_name_attempts(m, used) for m in new]
        # Usually the transcript this worker left after the previous step: no store round trip.
        messages = self.store.transcript_in_memory(inp.session_id, inp.transcript_len, new, inp.transcript_version)
        if messages is None:
            messages = await self.store.call(self.store.read_for_request, inp.session_id, inp.transcript_len, new)
        length = len(messages)
        cleared = next_cleared_before(messages, inp.cleared_before, inp.context_window_tokens)
        memory = await self._memory_mounts(inp.memory_ref) if inp.memory_ref else []
        request = build_request(agent, messages, max_tokens=inp.max_tokens, cleared_before=cleared, memory=memory)
        request["model"] = self.provider.model_id(request["model"])
        bound.info("model request", model=inp.model, model_id=request["model"], messages=length)
        try:
            # Heartbeats: the worker's HeartbeatInterceptor, for the whole activity.
            async with self.provider.client(inp.model).messages.stream(**request) as stream:
                async for _event in stream:
                    pass
                message = await stream.get_final_message()
        except Exception as err:
            failure = classify_model_error(err)
            bound.warning("model request failed", error_type=failure.type, error=str(failure))
            if not failure.non_retryable and info.attempt < inp.max_attempts:
                await self._notify_retry(inp.session_id, info.attempt, failure)
            raise failure from err
        content: list[dict[str, Any]] = [block.model_dump(mode="json", exclude_none=True) for block in message.content]
        version = await self.store.call(
            self.store.commit_request,
            inp.session_id,
            messages,
            len(new),
            {"role": "assistant", "content": content},
            step=inp.step,
            attempt=info.attempt,
        )
        usage = _usage(message.usage)
        bound.info("model response", stop_reason=message.stop_reason, output_tokens=usage.output_tokens)
        return ModelRequestResult(
            message_id=message.id,
            # The agent's name, as for the cost: usage is kept per model the agent chose, not per
            # id a provider (Bedrock, Vertex) was asked for or answered with.
            model=inp.model,
            content=content,
            stop_reason=message.stop_reason,
            usage=usage,
            cost_nanos=cost_nanos(inp.model, usage),
            transcript_len=length + 1,
            transcript_version=version,
            cleared_before=cleared,
            tool_result_attempts=used,
        )

    async def _await_tool_results(self, session_id: str, tool_use_ids: list[str]) -> dict[str, int]:
        """Wait until the results of a pipelined request's tool calls are stored; which attempt
        wrote each. A sandbox in this process wakes the wait the moment it stores one; a sandbox
        elsewhere is seen by polling the store. The workflow cancels the wait if a tool call fails
        (the worker's heartbeats carry the cancellation)."""
        delay = FIRST_POLL_SECONDS
        with self.store.tool_result_waiter(session_id) as stored:
            while True:
                found = self.store.held_tool_result_attempts(session_id, tool_use_ids)
                missing = [i for i in tool_use_ids if i not in found]
                if missing:
                    found |= await self.store.call(self.store.stored_tool_result_attempts, session_id, missing)
                if len(found) == len(tool_use_ids):
                    return found
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stored.wait(), delay)
                stored.clear()
                delay = min(delay * 2, MAX_POLL_SECONDS)

    async def _agent(self, ref: str, inline: dict[str, Any] | None) -> AgentDefinition:
        # Held only once it is in the store (read from it, or written here): a later request that
        # names just the reference may run on another worker.
        agent = self._agents.get(ref)
        if agent is not None:
            return agent
        if inline is not None:
            stored = await self.store.call(self.store.put_agent, inline)
            if stored != ref:
                raise ApplicationError(
                    f"agent definition stored as {stored}, but the session computed {ref}",
                    type="AgentDefinitionMismatch",
                    non_retryable=True,
                )
            body = inline
        else:
            try:
                body = await self.store.call(self.store.get_agent, ref)
            except KeyError as err:
                raise ApplicationError(str(err), type="AgentDefinitionMissing") from err
        agent = self._agents[ref] = AgentDefinition.model_validate(body)
        return agent

    async def _memory_mounts(self, ref: str) -> list[MemoryMount]:
        # Content-addressed, so a cached entry never goes stale.
        mounts = self._memory.get(ref)
        if mounts is None:
            try:
                body = await asyncio.to_thread(self.store.get_blob, ref)
            except KeyError as err:
                raise ApplicationError(str(err), type="MemoryMountsMissing") from err
            mounts = self._memory[ref] = [MemoryMount.model_validate(m) for m in body]
        return mounts

    async def _notify_retry(self, session_id: str, attempt: int, failure: ApplicationError) -> None:
        details = failure.details[0] if failure.details else {}
        notice = ModelRetryNotice(
            attempt=attempt,
            error_type=failure.type or "unknown_error",
            message=str(details.get("message", failure.message)) if isinstance(details, dict) else failure.message,
            status_code=details.get("status_code") if isinstance(details, dict) else None,
            retry_in_seconds=failure.next_retry_delay.total_seconds() if failure.next_retry_delay else None,
        )
        try:
            await activity.client().get_workflow_handle(session_id).signal(RETRY_SIGNAL, notice)
        except Exception as err:  # the notice is informational; the retry happens regardless
            log.warning("could not notify session of retry", session_id=session_id, error=str(err))


def _name_attempts(message: dict[str, Any], attempts: dict[str, int]) -> dict[str, Any]:
    """Name the attempt a pipelined request found for each tool result it references."""
    content = [
        {**block, "attempt": attempts[block["tool_use_id"]]}
        if block.get("type") == "tool_result_ref" and block.get("attempt") is None and block["tool_use_id"] in attempts
        else block
        for block in message["content"]
    ]
    return {**message, "content": content}


def _usage(usage: anthropic.types.Usage) -> RequestUsage:
    cache_creation = CacheCreationUsage()
    if usage.cache_creation is not None:
        cache_creation = CacheCreationUsage(
            ephemeral_5m_input_tokens=usage.cache_creation.ephemeral_5m_input_tokens or 0,
            ephemeral_1h_input_tokens=usage.cache_creation.ephemeral_1h_input_tokens or 0,
        )
    return RequestUsage(
        input_tokens=usage.input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        cache_read_input_tokens=usage.cache_read_input_tokens or 0,
        cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
        cache_creation=cache_creation,
    )
