"""One model request that must answer by calling a given tool, with the answer validated.

An answer without the call, or with input the validator refuses, goes back to the model with the
problem named (up to ``max_answers`` answers), as the outcome grader does. Retryable API errors
(429, 5xx, connection) are raised for Temporal to retry the activity; a non-retryable one (400,
401...) is returned as the error, for the workflow to report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from managed_agents._providers import ModelClient
from managed_agents._retry import classify_model_error

T = TypeVar("T")


def validation_problems(err: ValidationError, limit: int = 5) -> str:
    """A pydantic error as one line the model can act on: ``field.path: message; ...``."""
    return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in err.errors()[:limit])


@dataclass
class ForcedToolAnswer(Generic[T]):
    value: T | None = None
    error: str | None = None
    corrections: list[str] = field(default_factory=list)
    requests: int = 0
    usage: dict[str, int] = field(
        default_factory=lambda: {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
    )

    def add_usage(self, usage: Any) -> None:
        for key in self.usage:
            self.usage[key] += getattr(usage, key, 0) or 0


async def call_forced_tool(
    client: ModelClient,
    *,
    model: str,
    max_tokens: int,
    system: str,
    tool: dict[str, Any],
    prompt: str,
    validate: Callable[[dict[str, Any]], tuple[T | None, str | None]],
    max_answers: int = 3,
) -> ForcedToolAnswer[T]:
    """``validate(tool_input)`` returns ``(value, None)`` or ``(None, problem)``."""
    answer: ForcedToolAnswer[T] = ForcedToolAnswer()
    name = tool["name"]
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    for _ in range(max_answers):
        try:
            request: dict[str, Any] = {
                "model": model,
                "max_tokens": max_tokens,
                "system": system,
                "tools": [tool],
                "tool_choice": {"type": "tool", "name": name},
                "messages": messages,
            }
            response = await client.messages.create(**request)
        except Exception as err:
            failure = classify_model_error(err)
            if failure.non_retryable:
                answer.error = f"model request failed: {failure.message}"
                return answer
            raise failure from err
        answer.requests += 1
        answer.add_usage(response.usage)
        content = [b.model_dump(mode="json", exclude_none=True) for b in response.content]
        call = next((b for b in content if b.get("type") == "tool_use" and b.get("name") == name), None)
        if call is None:
            problem = f"no {name} tool call in the answer"
        else:
            value, problem_or_none = validate(call.get("input") or {})
            if problem_or_none is None:
                answer.value = value
                return answer
            problem = problem_or_none
        answer.corrections.append(problem)
        messages.append({"role": "assistant", "content": content})
        retry_text = f"Rejected: {problem}. Call {name} again."
        # Every tool_use in the answer needs its tool_result in the next message (the API
        # rejects the request otherwise), whichever tool the model called: the correction rides
        # on them; an answer with no tool call at all gets it as plain text.
        calls = [b for b in content if b.get("type") == "tool_use"]
        reply: list[dict[str, Any]] = [
            {
                "type": "tool_result",
                "tool_use_id": b["id"],
                "is_error": True,
                "content": [{"type": "text", "text": retry_text}],
            }
            for b in calls
        ]
        messages.append({"role": "user", "content": reply or [{"type": "text", "text": retry_text}]})
    answer.error = f"no valid {name} call in {max_answers} answers: " + "; ".join(answer.corrections[-3:])
    return answer
