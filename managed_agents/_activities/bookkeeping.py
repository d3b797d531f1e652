"""What a session notes when its status changes, in one local activity per workflow activation.

A turn that ends records the session in the dream index and hands its webhook events over
(``session.status_idled``, and ``session.status_terminated`` when the session ends with it). Each
was a local activity of its own; batched, the workflow task that ends a turn waits for one.
"""

from __future__ import annotations

from temporalio import activity

from managed_agents._activities.dream import DreamActivities
from managed_agents._activities.webhooks import WebhookActivities
from managed_agents._contract import SESSIONS_BOOKKEEPING
from managed_agents._models.activity_io import SessionBookkeepingInput


class SessionBookkeepingActivities:
    def __init__(self, webhooks: WebhookActivities, dreams: DreamActivities) -> None:
        self.webhooks = webhooks
        self.dreams = dreams

    @activity.defn(name=SESSIONS_BOOKKEEPING)
    async def bookkeeping(self, inp: SessionBookkeepingInput) -> int:
        """Index the finished turns, then start delivery of the webhook events; both idempotent, so
        a retried batch does nothing twice. Returns how many events had a subscriber."""
        # The index first: a receiver of session.status_idled may start a dream at once, and the
        # dream must find this session.
        for record in inp.finished_turns:
            await self.dreams.record_session(record)
        return await self.webhooks.enqueue_all(inp.webhook_events)
