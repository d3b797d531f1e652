"""Webhook endpoints, their secrets, events and the delivery log, in the store's database.

Secrets live here, never in workflow history: delivery activities read them by endpoint id.
Signing is Standard Webhooks (the ``standardwebhooks`` package, which the official ``anthropic``
SDK's ``webhooks.unwrap`` verifies with). Rotation keeps the previous secret signing alongside the
new one for a grace period, so receivers can switch keys without a gap.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from standardwebhooks import Webhook

from managed_agents._webhooks.models import (
    DeliveryAttempt,
    EndpointCreate,
    NewWebhookEndpoint,
    WebhookEndpoint,
)

metadata = sa.MetaData()

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("name", sa.String(255)),
    sa.Column("description", sa.Text),
    sa.Column("enabled_events", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("secrets", sa.Text, nullable=False),  # JSON: [{"secret", "expires_at"}], newest first
    sa.Column("retry_window_seconds", sa.Float, nullable=False),
    sa.Column("initial_retry_seconds", sa.Float, nullable=False),
    sa.Column("max_retry_seconds", sa.Float, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_success_at", sa.DateTime(timezone=True)),
)

webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the exact bytes signed and sent, on every attempt
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("endpoint_id", sa.String(64), nullable=False, index=True),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)


class WebhookError(Exception):
    status = 400


class EndpointNotFound(WebhookError):
    status = 404


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes (the format Standard Webhooks libraries expect)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signature_header(active_secrets: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """``v1,<sig>`` per active secret, space-separated: any one verifies."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in active_secrets)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite drops the time zone; everything stored here is UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class WebhookService:
    def __init__(self, engine: sa.Engine) -> None:
        from managed_agents._migrations import ensure_schema

        self.engine = engine
        ensure_schema(engine)  # managed migrations (revision 0002 holds these tables)

    # --- endpoints --------------------------------------------------------------------------------

    def create_endpoint(self, spec: EndpointCreate) -> NewWebhookEndpoint:
        now = _now()
        secret = new_secret()
        row = {
            "id": f"whep_{uuid.uuid4().hex[:24]}",
            "url": spec.url,
            "name": spec.name,
            "description": spec.description,
            "enabled_events": json.dumps(spec.enabled_events),
            "state": "enabled",
            "disabled_reason": None,
            "secrets": json.dumps([{"secret": secret, "expires_at": None}]),
            "retry_window_seconds": spec.retry_window_seconds,
            "initial_retry_seconds": spec.initial_retry_seconds,
            "max_retry_seconds": spec.max_retry_seconds,
            "created_at": now,
            "updated_at": now,
            "last_success_at": None,
        }
        with self.engine.begin() as conn:
            conn.execute(webhook_endpoints.insert().values(**row))
        return NewWebhookEndpoint(**self._public(row), signing_secret=secret)

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        return WebhookEndpoint(**self._public(self._row(endpoint_id)))

    def list_endpoints(self) -> list[WebhookEndpoint]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(webhook_endpoints).order_by(webhook_endpoints.c.created_at)).mappings()
            return [WebhookEndpoint(**self._public(dict(r))) for r in rows]

    def delete(self, endpoint_id: str) -> None:
        self._row(endpoint_id)
        with self.engine.begin() as conn:
            conn.execute(webhook_endpoints.delete().where(webhook_endpoints.c.id == endpoint_id))

    def set_state(self, endpoint_id: str, enabled: bool, reason: str | None = None) -> WebhookEndpoint:
        self._row(endpoint_id)
        with self.engine.begin() as conn:
            conn.execute(
                webhook_endpoints.update()
                .where(webhook_endpoints.c.id == endpoint_id)
                .values(
                    state="enabled" if enabled else "disabled",
                    disabled_reason=None if enabled else reason,
                    updated_at=_now(),
                )
            )
        return self.get(endpoint_id)

    def rotate_secret(self, endpoint_id: str, grace: timedelta = timedelta(hours=24)) -> NewWebhookEndpoint:
        """A new secret signs from now on; the current one keeps signing too until ``grace`` ends."""
        row = self._row(endpoint_id)
        now = _now()
        kept = [s for s in self._active(row, now)]
        for s in kept:
            s["expires_at"] = s["expires_at"] or (now + grace).isoformat()
        secret = new_secret()
        with self.engine.begin() as conn:
            conn.execute(
                webhook_endpoints.update()
                .where(webhook_endpoints.c.id == endpoint_id)
                .values(secrets=json.dumps([{"secret": secret, "expires_at": None}, *kept]), updated_at=now)
            )
        return NewWebhookEndpoint(**self._public(self._row(endpoint_id)), signing_secret=secret)

    def active_secrets(self, endpoint_id: str) -> list[str]:
        return [s["secret"] for s in self._active(self._row(endpoint_id), _now())]

    def subscribed(
        self, event_type: str, session_urls: list[str], endpoints: list[WebhookEndpoint] | None = None
    ) -> list[WebhookEndpoint]:
        """Enabled endpoints that get this event: subscribed to its type, or named by the session.
        ``endpoints``: a listing already read (several events checked against one read)."""
        return [
            e
            for e in (self.list_endpoints() if endpoints is None else endpoints)
            if e.state == "enabled" and (event_type in e.enabled_events or e.url in session_urls)
        ]

    def unknown_urls(self, urls: list[str]) -> list[str]:
        known = {e.url for e in self.list_endpoints()}
        return [u for u in urls if u not in known]

    # --- events and deliveries -----------------------------------------------------------------

    def record_event(self, event_id: str, type_: str, body: str, created_at: datetime) -> str:
        """Store the event body once (idempotent); every attempt sends these exact bytes."""
        with self.engine.begin() as conn:
            existing = conn.execute(
                sa.select(webhook_events.c.body).where(webhook_events.c.id == event_id)
            ).scalar_one_or_none()
            if existing is not None:
                return str(existing)
            conn.execute(webhook_events.insert().values(id=event_id, type=type_, body=body, created_at=created_at))
        return body

    def event_body(self, event_id: str) -> str:
        with self.engine.connect() as conn:
            body = conn.execute(
                sa.select(webhook_events.c.body).where(webhook_events.c.id == event_id)
            ).scalar_one_or_none()
        if body is None:
            raise WebhookError(f"no webhook event {event_id}")
        return str(body)

    def log_attempt(
        self, endpoint_id: str, event_id: str, attempt: int, outcome: str, status_code: int | None, error: str | None
    ) -> None:
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(
                webhook_deliveries.insert().values(
                    endpoint_id=endpoint_id,
                    event_id=event_id,
                    attempt=attempt,
                    outcome=outcome,
                    status_code=status_code,
                    error=error,
                    at=now,
                )
            )
            if outcome == "delivered":
                conn.execute(
                    webhook_endpoints.update().where(webhook_endpoints.c.id == endpoint_id).values(last_success_at=now)
                )

    def deliveries(self, endpoint_id: str, limit: int = 100) -> list[DeliveryAttempt]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(webhook_deliveries)
                .where(webhook_deliveries.c.endpoint_id == endpoint_id)
                .order_by(webhook_deliveries.c.seq.desc())
                .limit(limit)
            ).mappings()
            return [
                DeliveryAttempt(**{k: v for k, v in r.items() if k != "seq"} | {"at": _aware(r["at"])}) for r in rows
            ]

    # --- helpers ----------------------------------------------------------------------------------

    def _row(self, endpoint_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))
                .mappings()
                .first()
            )
        if row is None:
            raise EndpointNotFound(f"no webhook endpoint {endpoint_id}")
        return dict(row)

    @staticmethod
    def _active(row: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        out = []
        for s in json.loads(row["secrets"]):
            expires = s.get("expires_at")
            if expires is None or datetime.fromisoformat(expires) > now:
                out.append(s)
        return out

    @staticmethod
    def _public(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"],
            "url": row["url"],
            "name": row["name"],
            "description": row["description"],
            "enabled_events": json.loads(row["enabled_events"]),
            "state": row["state"],
            "disabled_reason": row["disabled_reason"],
            "retry_window_seconds": row["retry_window_seconds"],
            "initial_retry_seconds": row["initial_retry_seconds"],
            "max_retry_seconds": row["max_retry_seconds"],
            "created_at": _aware(row["created_at"]),
            "updated_at": _aware(row["updated_at"]),
            "last_success_at": _aware(row["last_success_at"]),
        }
