"""A team's own Temporal project that adds ManagedAgentsPlugin to its workers: it imports only
public names (``from managed_agents import ...``). tests/test_plugin.py runs it."""
