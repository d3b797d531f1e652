"""Activities: where the session touches the world (Claude, the sandbox, the session log store).

Activity names are namespaced and stable (``managed_agents.*``): they are recorded in histories.
"""

from managed_agents._activities.model import ModelActivities, ModelClientFactory
from managed_agents._activities.sandbox import SandboxActivities

__all__ = ["ModelActivities", "ModelClientFactory", "SandboxActivities"]
