"""Size checks on activity arguments before they are scheduled.

An oversize argument would otherwise fail the workflow *task*, which Temporal retries forever
(pydantic-ai#7164). Checking first turns it into a clear, non-retryable error for this turn.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

#: Temporal rejects payloads over 2 MB; stay well under it, leaving room for encoding overhead.
MAX_ACTIVITY_ARGUMENT_BYTES = 1_500_000


class PayloadTooLargeError(ApplicationError):
    def __init__(self, what: str, size: int) -> None:
        super().__init__(
            f"{what}: argument is {size} bytes, over the {MAX_ACTIVITY_ARGUMENT_BYTES}-byte limit for one activity",
            type="PayloadTooLarge",
            non_retryable=True,
        )


def check_payload_size(argument: object, what: str) -> None:
    size = len(workflow.payload_converter().to_payloads([argument])[0].data)
    if size > MAX_ACTIVITY_ARGUMENT_BYTES:
        raise PayloadTooLargeError(what, size)
