"""Claude Managed Agents' mechanics (sessions, outcomes, multiagent, dreams, webhooks) as a
Temporal plugin.

    from managed_agents import ManagedAgentsPlugin, ManagedAgentsSettings, run_session

    client = await Client.connect("temporal:7233", plugins=[ManagedAgentsPlugin()])

The names below are the public API; every other module is private and may change. The testing
kit (a Claude-compatible mock server) is ``managed_agents.testing``.

Names are imported on first use (PEP 562): Temporal's workflow sandbox re-imports this package
whenever workflow code imports one of its modules, and must not pull in the worker side (store,
sandbox, HTTP clients) to do so.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from managed_agents._client import SessionClient, SessionHandle
    from managed_agents._contract import (
        AGENT_SESSION,
        DEFAULT_TASK_QUEUE,
        DREAM,
        SCHEDULED_DREAM,
        sandbox_private_queue,
        sandbox_shared_queue,
    )
    from managed_agents._dreams.models import Dream, DreamCreateParams
    from managed_agents._errors import (
        InvalidDreamInput,
        InvalidEvents,
        InvalidSessionInput,
        ManagedAgentsError,
        PayloadTooLargeError,
    )
    from managed_agents._memory.service import MemoryService
    from managed_agents._models.events import SessionEvent
    from managed_agents._models.session import SessionCreateParams, SessionObject
    from managed_agents._plugin import ManagedAgentsPlugin
    from managed_agents._settings import ManagedAgentsSettings
    from managed_agents._workflow_api import SessionChildHandle, run_dream, run_session, start_session

#: public name -> the private module that defines it
_EXPORTS = {
    # the plugin and its settings
    "ManagedAgentsPlugin": "managed_agents._plugin",
    "ManagedAgentsSettings": "managed_agents._settings",
    # from your workflows (child workflows)
    "run_session": "managed_agents._workflow_api",
    "start_session": "managed_agents._workflow_api",
    "run_dream": "managed_agents._workflow_api",
    "SessionChildHandle": "managed_agents._workflow_api",
    # from other services (a Temporal client)
    "SessionClient": "managed_agents._client",
    "SessionHandle": "managed_agents._client",
    # what goes in and comes out
    "SessionCreateParams": "managed_agents._models.session",
    "SessionObject": "managed_agents._models.session",
    "SessionEvent": "managed_agents._models.events",
    "DreamCreateParams": "managed_agents._dreams.models",
    "Dream": "managed_agents._dreams.models",
    # memory stores, straight in the store database
    "MemoryService": "managed_agents._memory.service",
    # errors
    "ManagedAgentsError": "managed_agents._errors",
    "InvalidSessionInput": "managed_agents._errors",
    "InvalidEvents": "managed_agents._errors",
    "InvalidDreamInput": "managed_agents._errors",
    "PayloadTooLargeError": "managed_agents._errors",
    # names of the public contract
    "AGENT_SESSION": "managed_agents._contract",
    "DREAM": "managed_agents._contract",
    "SCHEDULED_DREAM": "managed_agents._contract",
    "DEFAULT_TASK_QUEUE": "managed_agents._contract",
    "sandbox_shared_queue": "managed_agents._contract",
    "sandbox_private_queue": "managed_agents._contract",
}

__all__ = [
    "AGENT_SESSION",
    "DEFAULT_TASK_QUEUE",
    "DREAM",
    "SCHEDULED_DREAM",
    "Dream",
    "DreamCreateParams",
    "InvalidDreamInput",
    "InvalidEvents",
    "InvalidSessionInput",
    "ManagedAgentsError",
    "ManagedAgentsPlugin",
    "ManagedAgentsSettings",
    "MemoryService",
    "PayloadTooLargeError",
    "SessionChildHandle",
    "SessionClient",
    "SessionCreateParams",
    "SessionEvent",
    "SessionHandle",
    "SessionObject",
    "run_dream",
    "run_session",
    "sandbox_private_queue",
    "sandbox_shared_queue",
    "start_session",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'managed_agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # next time, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
