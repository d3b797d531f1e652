"""Webhook endpoints, events and deliveries: typed, with Managed Agents' names.

Payloads are thin, as Managed Agents sends them: ``{"type": "event", "id", "created_at",
"data": {"type", "id", ...}}``; the receiver fetches the session (or dream) by id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

#: Event types this engine sends (``data.type``), named as Managed Agents names them; dream events
#: are this engine's own, in the same style.
WEBHOOK_EVENT_TYPES = (
    "session.status_run_started",
    "session.status_idled",
    "session.requires_action",
    "session.budget_reached",
    "session.status_terminated",
    "session.outcome_evaluation_ended",
    "session.thread_created",
    "session.thread_idled",
    "session.thread_terminated",
    "dream.completed",
    "dream.failed",
    "dream.canceled",
)

EndpointState = Literal["enabled", "disabled"]


class EndpointCreate(BaseModel):
    url: str = Field(min_length=1, max_length=2048)
    enabled_events: list[str] = Field(default_factory=lambda: list(WEBHOOK_EVENT_TYPES))
    name: str | None = Field(None, max_length=255)
    description: str | None = Field(None, max_length=1024)
    retry_window_seconds: float = Field(24 * 3600, gt=0, description="Keep retrying a delivery this long")
    initial_retry_seconds: float = Field(5, gt=0)
    max_retry_seconds: float = Field(600, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return url

    @field_validator("enabled_events")
    @classmethod
    def _known_events(cls, events: list[str]) -> list[str]:
        unknown = sorted(set(events) - set(WEBHOOK_EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types: {', '.join(unknown)} (known: {', '.join(WEBHOOK_EVENT_TYPES)})")
        return events


class WebhookEndpoint(BaseModel):
    """An endpoint as shown to users: never its secrets."""

    id: str
    type: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    name: str | None
    description: str | None
    enabled_events: list[str]
    state: EndpointState
    disabled_reason: str | None
    retry_window_seconds: float
    initial_retry_seconds: float
    max_retry_seconds: float
    created_at: datetime
    updated_at: datetime
    last_success_at: datetime | None = None


class NewWebhookEndpoint(WebhookEndpoint):
    """The create (and rotate) response: the only time a signing secret is shown."""

    signing_secret: str


class DeliveryAttempt(BaseModel):
    endpoint_id: str
    event_id: str
    attempt: int
    outcome: Literal["delivered", "failed", "disabled", "gave_up", "skipped"]
    status_code: int | None
    error: str | None
    at: datetime


class WebhookEventInput(BaseModel):
    """Input of the ``WebhookEvent`` workflow: one event, delivered to every subscribed endpoint."""

    event_id: str
    type: str
    data: dict[str, Any]
    created_at: datetime
    #: Per-session webhook URLs (``webhooks`` in the session input): delivered in addition to the
    #: endpoints subscribed to this event type. Each must be a registered endpoint's URL.
    session_urls: list[str] = Field(default_factory=list)
    #: Redeliver only to these endpoints (on demand), ignoring subscriptions.
    only_endpoints: list[str] | None = None


class FanoutTarget(BaseModel):
    endpoint_id: str
    retry_window_seconds: float
    initial_retry_seconds: float
    max_retry_seconds: float


class FanoutResult(BaseModel):
    targets: list[FanoutTarget]


class DeliverInput(BaseModel):
    event_id: str
    endpoint_id: str
    initial_retry_seconds: float
    max_retry_seconds: float


class DeliverResult(BaseModel):
    outcome: Literal["delivered", "disabled", "skipped"]
    status_code: int | None = None
    detail: str | None = None


class GiveUpInput(BaseModel):
    event_id: str
    endpoint_id: str
    last_error: str
