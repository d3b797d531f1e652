"""The names other services depend on: workflow types, updates, queries and signals.

Each name is spelled here once and imported everywhere else. They are a public contract: a
running workflow's history, another service's Temporal client and the JSON Schemas in
``schemas/`` all carry them, so a name never changes once released.

Pure: workflow code imports this module inside the workflow sandbox.
"""

from __future__ import annotations

from typing import Final

#: Default task queue of ``python worker.py`` and the CLI.
DEFAULT_TASK_QUEUE: Final = "managed-agents"

# --- workflow types ---------------------------------------------------------------------------------

#: One agent session (a coordinator session starts its threads as child ``AgentSession`` runs).
AGENT_SESSION: Final = "AgentSession"
#: One dream: a memory store and past sessions in, a curated memory store out.
DREAM: Final = "Dream"
#: What a dream schedule starts: picks the sessions, then runs a ``Dream`` child.
SCHEDULED_DREAM: Final = "ScheduledDream"
#: Durable delivery of one webhook event to every endpoint that should get it.
WEBHOOK_EVENT: Final = "WebhookEvent"

# --- AgentSession's handlers ----------------------------------------------------------------------

#: Update: ``user.*`` events in (validated; a rejected event never enters history); their echoes out.
SEND_EVENTS_UPDATE: Final = "send_events"
#: Signal: the same events from workflow code, which cannot send updates (see ``SessionChildHandle``).
USER_EVENTS_SIGNAL: Final = "user_events"
#: Query: the session object (``client.beta.sessions.retrieve``).
SESSION_QUERY: Final = "session"
#: Query: a page of the event log, ``{"after_seq": -1, "limit": 100}``.
EVENTS_QUERY: Final = "events"
#: Signal from the model-request activity: the request failed and Temporal retries it.
MODEL_RETRY_SIGNAL: Final = "model_request_retrying"
#: Signals between a coordinator session and its threads.
THREAD_REPORT_SIGNAL: Final = "thread_report"
THREAD_INPUT_SIGNAL: Final = "thread_input"

# --- Dream's handlers -----------------------------------------------------------------------------

#: Query: the dream object (``client.beta.dreams.retrieve``).
DREAM_QUERY: Final = "dream"


def sandbox_shared_queue(task_queue: str) -> str:
    """Queue on which any sandbox worker prepares a new session's workspace."""
    return f"{task_queue}-sandbox"


def sandbox_private_queue(task_queue: str, sandbox_id: str) -> str:
    """Queue served only by one sandbox worker: tool calls of the sessions it holds go here."""
    return f"{task_queue}-sandbox-{sandbox_id}"


# --- activities -----------------------------------------------------------------------------------
# Each is named ``managed_agents.<...>`` (the plugin recognises its own by that prefix). A name is
# in the history of every workflow that scheduled it, so it never changes.

MODEL_REQUEST: Final = "managed_agents.model_request"
REGISTER_SESSION: Final = "managed_agents.register_session"
SANDBOX_PROVISION: Final = "managed_agents.sandbox.provision"
OUTCOME_READ_RUBRIC: Final = "managed_agents.outcome.read_rubric"
OUTCOME_COLLECT_DELIVERABLES: Final = "managed_agents.outcome.collect_deliverables"
OUTCOME_GRADE: Final = "managed_agents.outcome.grade"
SESSIONS_BOOKKEEPING: Final = "managed_agents.sessions.bookkeeping"
SESSIONS_RECORD: Final = "managed_agents.sessions.record"
WEBHOOKS_ENQUEUE: Final = "managed_agents.webhooks.enqueue"
WEBHOOKS_FANOUT: Final = "managed_agents.webhooks.fanout"
WEBHOOKS_DELIVER: Final = "managed_agents.webhooks.deliver"
WEBHOOKS_GIVE_UP: Final = "managed_agents.webhooks.give_up"
DREAM_PREPARE: Final = "managed_agents.dream.prepare"
DREAM_EXTRACT: Final = "managed_agents.dream.extract"
DREAM_PLAN_CONSOLIDATION: Final = "managed_agents.dream.plan_consolidation"
DREAM_CONSOLIDATE: Final = "managed_agents.dream.consolidate"
DREAM_FINISH: Final = "managed_agents.dream.finish"
DREAM_SELECT_SESSIONS: Final = "managed_agents.dream.select_sessions"


def tool_activity(tool: str) -> str:
    """One activity per built-in tool (``managed_agents.tool.bash``, ...), so Temporal's UI and
    metrics show tool names."""
    return f"managed_agents.tool.{tool}"
