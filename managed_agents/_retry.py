"""HTTP-status retry classification for model requests: Temporal owns retries.

The Anthropic client runs with ``max_retries=0``; each failure becomes an ``ApplicationError``
whose ``type`` is the Managed Agents ``session.error`` type and whose retryability follows the
API's rules: 408/409/429/5xx/529 and connection errors retry (honouring ``retry-after`` through
``next_retry_delay``, and ``x-should-retry`` when the server says), other 4xx fail fast.
"""

from __future__ import annotations

import email.utils
import time
from datetime import timedelta

import anthropic
import httpx2
from temporalio.exceptions import ApplicationError

RETRYABLE_STATUS = {408, 409, 429}
#: An error event inside a streamed answer arrives on an HTTP 200: its type says what the status
#: would have been (an ``overloaded_error`` mid-stream is a 529 and retries like one).
STATUS_OF_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
    # Bedrock's stream exceptions (the SDK passes their name as the type), as the errors they carry
    "validationexception": 400,
    "accessdeniedexception": 403,
    "modeltimeoutexception": 408,
    "throttlingexception": 429,
    "internalserverexception": 500,
    "modelstreamerrorexception": 500,
    "serviceunavailableexception": 529,
}
MAX_RETRY_AFTER = timedelta(minutes=10)


def retry_after(headers: httpx2.Headers) -> timedelta | None:
    """``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date), as the SDK reads them."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return min(timedelta(milliseconds=float(raw_ms)), MAX_RETRY_AFTER)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return min(timedelta(seconds=float(raw)), MAX_RETRY_AFTER)
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
        return min(timedelta(seconds=max(seconds, 0)), MAX_RETRY_AFTER)


def error_type_for_status(status: int) -> str:
    if status == 429:
        return "model_rate_limited_error"
    if status == 529:
        return "model_overloaded_error"
    if status == 402:
        return "billing_error"
    return "model_request_failed_error"


def classify_model_error(err: BaseException) -> ApplicationError:
    """Map an exception from a model request to a typed, correctly retryable ApplicationError."""
    if isinstance(err, anthropic.APIStatusError):
        status = err.status_code
        if 200 <= status < 300:  # an error event in a stream: classify it by its type
            status = STATUS_OF_ERROR_TYPE.get((_api_error_type(err) or "").lower(), 500)
        should_retry = err.response.headers.get("x-should-retry")
        if should_retry in ("true", "false"):
            retryable = should_retry == "true"
        else:
            retryable = status in RETRYABLE_STATUS or status >= 500
        message = _api_message(err)
        return ApplicationError(
            f"Anthropic API {status}: {message}",
            {"status_code": status, "message": message},
            type=error_type_for_status(status),
            non_retryable=not retryable,
            next_retry_delay=retry_after(err.response.headers) if retryable else None,
        )
    if isinstance(err, (anthropic.APIConnectionError, httpx2.TransportError, ConnectionError, TimeoutError)):
        return ApplicationError(
            f"connection to the model API failed: {err.__class__.__name__}: {err}",
            {"status_code": None, "message": str(err)},
            type="model_request_failed_error",
        )
    return ApplicationError(
        f"model request failed: {err.__class__.__name__}: {err}",
        {"status_code": None, "message": str(err)},
        type="unknown_error",
        non_retryable=True,
    )


def _api_error_type(err: anthropic.APIStatusError) -> str | None:
    body = err.body
    inner = body.get("error") if isinstance(body, dict) else None
    kind = inner.get("type") if isinstance(inner, dict) else None
    return kind if isinstance(kind, str) else None


def _api_message(err: anthropic.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(body.get("message"), str):  # Bedrock's errors: {"message": ...}
            return str(body["message"])
    return err.message
