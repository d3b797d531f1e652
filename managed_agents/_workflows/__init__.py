"""Workflows: the deterministic "brain". No I/O here; activities do the work."""

from managed_agents._workflows.dream import DreamWorkflow, ScheduledDream
from managed_agents._workflows.session import AgentSession
from managed_agents._workflows.webhook_event import WebhookEvent

#: What the plugin registers on a brain worker (and a replayer).
WORKFLOWS: list[type] = [AgentSession, WebhookEvent, DreamWorkflow, ScheduledDream]

__all__ = ["WORKFLOWS", "AgentSession", "DreamWorkflow", "ScheduledDream", "WebhookEvent"]
