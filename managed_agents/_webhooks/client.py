"""Redelivery on demand: start a new ``WebhookEvent`` run for a recorded event."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from temporalio.client import Client

from managed_agents._contract import WEBHOOK_EVENT
from managed_agents._settings import DEFAULT_TASK_QUEUE
from managed_agents._webhooks.models import WebhookEventInput
from managed_agents._webhooks.service import WebhookService


async def redeliver(
    client: Client,
    service: WebhookService,
    event_id: str,
    endpoint_ids: list[str],
    task_queue: str = DEFAULT_TASK_QUEUE,
) -> str:
    """Deliver a recorded event again (same id and body) to the given endpoints; returns the run's workflow id."""
    payload = json.loads(service.event_body(event_id))
    for endpoint_id in endpoint_ids:
        service.get(endpoint_id)  # fail fast on an unknown endpoint
    inp = WebhookEventInput(
        event_id=event_id,
        type=payload["data"]["type"],
        data=payload["data"],
        created_at=datetime.fromisoformat(payload["created_at"].replace("Z", "+00:00")),
        only_endpoints=endpoint_ids,
    )
    workflow_id = f"webhook-{event_id}-redelivery-{uuid.uuid4().hex[:8]}"
    await client.start_workflow(WEBHOOK_EVENT, inp, id=workflow_id, task_queue=task_queue)
    return workflow_id
