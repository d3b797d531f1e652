"""Run a managed-agents worker: ``python worker.py --help``."""

from managed_agents._worker import main

if __name__ == "__main__":
    main()
