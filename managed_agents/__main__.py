"""``python -m managed_agents``: the ``managed-agents`` command."""

from managed_agents._cli import main

main()
