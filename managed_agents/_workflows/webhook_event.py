"""``WebhookEvent``: deliver one event to every endpoint that should get it, durably.

Started (and abandoned) by the session that emitted the event, so delivery never slows or breaks
it. Each endpoint's delivery retries with jittered exponential backoff over the endpoint's retry
window, with the same event id on every attempt; what is finally given up is recorded, and the
endpoint is disabled with the reason.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from managed_agents._contract import WEBHOOK_EVENT, WEBHOOKS_DELIVER, WEBHOOKS_FANOUT, WEBHOOKS_GIVE_UP
    from managed_agents._webhooks.models import (
        DeliverInput,
        DeliverResult,
        FanoutResult,
        FanoutTarget,
        GiveUpInput,
        WebhookEventInput,
    )
    from managed_agents._workflows import activity_options as options


@workflow.defn(name=WEBHOOK_EVENT)
class WebhookEvent:
    @workflow.run
    async def run(self, inp: WebhookEventInput) -> dict[str, str]:
        fanout = await workflow.execute_activity(
            WEBHOOKS_FANOUT,
            inp,
            result_type=FanoutResult,
            **options.webhook_call(30),
        )
        outcomes = await asyncio.gather(*(self._deliver(inp.event_id, t) for t in fanout.targets))
        return dict(zip((t.endpoint_id for t in fanout.targets), outcomes, strict=True))

    async def _deliver(self, event_id: str, target: FanoutTarget) -> str:
        try:
            result = await workflow.execute_activity(
                WEBHOOKS_DELIVER,
                DeliverInput(
                    event_id=event_id,
                    endpoint_id=target.endpoint_id,
                    initial_retry_seconds=target.initial_retry_seconds,
                    max_retry_seconds=target.max_retry_seconds,
                ),
                result_type=DeliverResult,
                **options.webhook_call(60),
                schedule_to_close_timeout=timedelta(seconds=target.retry_window_seconds),
                # The activity sets each delay itself (jittered); the policy only bounds the attempts.
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=target.initial_retry_seconds),
                    maximum_interval=timedelta(seconds=target.max_retry_seconds),
                    non_retryable_error_types=["EndpointNotFound"],
                ),
            )
        except ActivityError as err:
            cause = err.cause or err
            await workflow.execute_activity(
                WEBHOOKS_GIVE_UP,
                GiveUpInput(event_id=event_id, endpoint_id=target.endpoint_id, last_error=str(cause)),
                **options.webhook_call(30),
            )
            return "gave_up"
        return result.outcome
