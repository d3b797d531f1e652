"""Webhook delivery activities: find who gets an event, POST it signed, log every attempt.

Temporal owns the retries (jittered exponential backoff, via ``next_retry_delay``, over the
endpoint's retry window); every attempt carries the same ``webhook-id`` and the same body.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta

import aiohttp
from temporalio import activity
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from managed_agents._contract import (
    WEBHOOK_EVENT,
    WEBHOOKS_DELIVER,
    WEBHOOKS_ENQUEUE,
    WEBHOOKS_FANOUT,
    WEBHOOKS_GIVE_UP,
)
from managed_agents._logging import get_logger
from managed_agents._store import call_store
from managed_agents._webhooks.models import (
    DeliverInput,
    DeliverResult,
    FanoutResult,
    FanoutTarget,
    GiveUpInput,
    WebhookEventInput,
)
from managed_agents._webhooks.service import WebhookService, signature_header

log = get_logger("managed_agents.webhooks")

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)


class WebhookActivities:
    def __init__(self, service: WebhookService) -> None:
        self.service = service

    @activity.defn(name=WEBHOOKS_ENQUEUE)
    async def enqueue(self, inp: WebhookEventInput) -> bool:
        """Start delivery of a session's event if any endpoint gets it (the common case: none)."""
        return bool(await self.enqueue_all([inp]))

    async def enqueue_all(self, events: list[WebhookEventInput]) -> int:
        """``enqueue`` for several events, reading the endpoints once; how many were started."""
        if not events:
            return 0
        endpoints = await call_store(self.service.engine, self.service.list_endpoints)
        started = 0
        for inp in events:
            if self.service.subscribed(inp.type, inp.session_urls, endpoints) or inp.session_urls:
                await self._start_delivery(inp)
                started += 1
        return started

    async def _start_delivery(self, inp: WebhookEventInput) -> None:
        try:
            await activity.client().start_workflow(
                WEBHOOK_EVENT,
                inp,
                id=f"webhook-{inp.event_id}",
                task_queue=activity.info().task_queue,
            )
        except WorkflowAlreadyStartedError:
            pass  # a retried enqueue: the event is already on its way

    @activity.defn(name=WEBHOOKS_FANOUT)
    async def fanout(self, inp: WebhookEventInput) -> FanoutResult:
        body = json.dumps(
            {
                "type": "event",
                "id": inp.event_id,
                "created_at": inp.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "data": inp.data,
            },
            separators=(",", ":"),
        )
        await asyncio.to_thread(self.service.record_event, inp.event_id, inp.type, body, inp.created_at)
        if inp.only_endpoints is not None:
            endpoints = [await asyncio.to_thread(self.service.get, e) for e in inp.only_endpoints]
        else:
            endpoints = await asyncio.to_thread(self.service.subscribed, inp.type, inp.session_urls)
            for url in await asyncio.to_thread(self.service.unknown_urls, inp.session_urls):
                log.warning("session webhook URL is not a registered endpoint: not delivered", url=url)
        return FanoutResult(
            targets=[
                FanoutTarget(
                    endpoint_id=e.id,
                    retry_window_seconds=e.retry_window_seconds,
                    initial_retry_seconds=e.initial_retry_seconds,
                    max_retry_seconds=e.max_retry_seconds,
                )
                for e in endpoints
            ]
        )

    @activity.defn(name=WEBHOOKS_DELIVER)
    async def deliver(self, inp: DeliverInput) -> DeliverResult:
        attempt = activity.info().attempt
        endpoint = await asyncio.to_thread(self.service.get, inp.endpoint_id)
        if endpoint.state != "enabled":
            await asyncio.to_thread(
                self.service.log_attempt, inp.endpoint_id, inp.event_id, attempt, "skipped", None, "endpoint disabled"
            )
            return DeliverResult(outcome="skipped", detail=f"endpoint disabled: {endpoint.disabled_reason}")
        body = await asyncio.to_thread(self.service.event_body, inp.event_id)
        secrets = await asyncio.to_thread(self.service.active_secrets, inp.endpoint_id)
        now = datetime.now(UTC)
        headers = {
            "webhook-id": inp.event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature_header(secrets, inp.event_id, now, body),
            "content-type": "application/json",
            "user-agent": "temporal-managed-agents-webhooks/1",
        }
        status: int | None = None
        try:
            async with (
                aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http,
                http.post(endpoint.url, data=body.encode(), headers=headers, allow_redirects=False) as response,
            ):
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as err:
            error = f"{type(err).__name__}: {err}" or type(err).__name__
            await asyncio.to_thread(
                self.service.log_attempt, inp.endpoint_id, inp.event_id, attempt, "failed", None, error
            )
            raise self._retry(f"delivery to {endpoint.url} failed: {error}", attempt, inp) from err
        if 200 <= status < 300:
            await asyncio.to_thread(
                self.service.log_attempt, inp.endpoint_id, inp.event_id, attempt, "delivered", status, None
            )
            return DeliverResult(outcome="delivered", status_code=status)
        if 300 <= status < 400:
            reason = f"answered {status} (a redirect): redirects are never followed; re-enable once the URL is fixed"
            await asyncio.to_thread(
                self.service.log_attempt, inp.endpoint_id, inp.event_id, attempt, "disabled", status, reason
            )
            await asyncio.to_thread(self.service.set_state, inp.endpoint_id, False, reason)
            log.warning("webhook endpoint disabled", endpoint_id=inp.endpoint_id, reason=reason)
            return DeliverResult(outcome="disabled", status_code=status, detail=reason)
        await asyncio.to_thread(
            self.service.log_attempt, inp.endpoint_id, inp.event_id, attempt, "failed", status, f"HTTP {status}"
        )
        raise self._retry(f"{endpoint.url} answered HTTP {status}", attempt, inp)

    @activity.defn(name=WEBHOOKS_GIVE_UP)
    async def give_up(self, inp: GiveUpInput) -> None:
        """The retry window is over: record it, and disable an endpoint that kept failing."""
        reason = f"no successful delivery of {inp.event_id} within the retry window; last error: {inp.last_error}"
        attempt = activity.info().attempt
        await asyncio.to_thread(
            self.service.log_attempt, inp.endpoint_id, inp.event_id, attempt, "gave_up", None, reason
        )
        await asyncio.to_thread(self.service.set_state, inp.endpoint_id, False, reason)
        log.warning("webhook delivery given up; endpoint disabled", endpoint_id=inp.endpoint_id, event_id=inp.event_id)

    @staticmethod
    def _retry(message: str, attempt: int, inp: DeliverInput) -> ApplicationError:
        # Exponential backoff with full jitter, so many failing deliveries do not retry in lockstep.
        ceiling = min(inp.max_retry_seconds, inp.initial_retry_seconds * 2 ** (attempt - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        return ApplicationError(message, type="WebhookDeliveryFailed", next_retry_delay=timedelta(seconds=delay))
