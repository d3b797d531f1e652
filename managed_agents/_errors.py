"""The errors a caller of this plugin can meet, in one place, each with its retryability.

On the wire (a Temporal failure's ``type``, an event's ``error.type``) they carry Managed Agents'
snake_case error types, so a client in any language matches them the way it matches the API's;
in Python they are exception classes named the Python way. All are ``ApplicationError``: raised
in workflow code they fail the workflow (never the workflow task, which Temporal would retry
forever), and ``non_retryable`` says whether trying the same thing again can help.

Pure: workflow code raises these inside the workflow sandbox.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

#: Managed Agents' error types used below.
INVALID_REQUEST_ERROR = "invalid_request_error"
REQUEST_TOO_LARGE = "request_too_large"

#: Temporal rejects payloads over 2 MB; stay well under it, leaving room for encoding overhead.
MAX_ACTIVITY_ARGUMENT_BYTES = 1_500_000


class ManagedAgentsError(ApplicationError):
    """Base of this plugin's errors."""


class InvalidSessionInput(ManagedAgentsError):
    """An ``AgentSession`` input that is not a valid ``sessions.create`` body. Not retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(f"invalid AgentSession input: {message}", type=INVALID_REQUEST_ERROR, non_retryable=True)


class InvalidEvents(ManagedAgentsError):
    """Events the ``send_events`` update refuses (the message names the field). Not retryable:
    the same events fail the same way."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type=INVALID_REQUEST_ERROR, non_retryable=True)


class InvalidDreamInput(ManagedAgentsError):
    """A ``Dream`` (or ``ScheduledDream``) input that is not a valid ``dreams.create`` body."""

    def __init__(self, message: str) -> None:
        super().__init__(f"invalid Dream input: {message}", type=INVALID_REQUEST_ERROR, non_retryable=True)


class PayloadTooLargeError(ManagedAgentsError):
    """An activity argument over Temporal's payload limit, caught before it is scheduled (it would
    otherwise fail the workflow task, retried forever). Not retryable."""

    def __init__(self, what: str, size: int) -> None:
        super().__init__(
            f"{what}: argument is {size} bytes, over the {MAX_ACTIVITY_ARGUMENT_BYTES}-byte limit for one activity",
            type=REQUEST_TOO_LARGE,
            non_retryable=True,
        )


#: What the plugin registers as workflow failure exception types.
WORKFLOW_FAILURES: tuple[type[BaseException], ...] = (ManagedAgentsError,)
