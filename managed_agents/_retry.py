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


def _api_message(err: anthropic.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return err.message
