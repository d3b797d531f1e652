"""Size checks on activity arguments before they are scheduled.

An oversize argument would otherwise fail the workflow *task*, which Temporal retries forever
(pydantic-ai#7164). Checking first turns it into a clear, non-retryable error for this turn.
"""

from __future__ import annotations

from temporalio import workflow

from managed_agents._errors import MAX_ACTIVITY_ARGUMENT_BYTES, PayloadTooLargeError

__all__ = ["MAX_ACTIVITY_ARGUMENT_BYTES", "PayloadTooLargeError", "check_payload_size"]


def check_payload_size(argument: object, what: str) -> None:
    size = len(workflow.payload_converter().to_payloads([argument])[0].data)
    if size > MAX_ACTIVITY_ARGUMENT_BYTES:
        raise PayloadTooLargeError(what, size)
