"""The team's worker: its own workflow and activity on its own task queue, plus ManagedAgentsPlugin.

Configured like ``python worker.py``: ``TEMPORAL_ADDRESS``, ``MANAGED_AGENTS_*`` (roles, data
directory, sandbox id), ``ANTHROPIC_*``. ``BILLING_TASK_QUEUE`` names the team's queue. A
sandbox-only worker polls the sessions' sandbox queue.
"""

from __future__ import annotations

import asyncio
import os
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from managed_agents import ManagedAgentsPlugin, ManagedAgentsSettings, sandbox_shared_queue
from tests.plugin_project.invoices import FollowUp, InvoiceReview, MistypedRequest, fetch_invoice


async def main() -> None:
    settings = ManagedAgentsSettings()
    queue = os.environ["BILLING_TASK_QUEUE"]
    client = await Client.connect(
        os.environ["TEMPORAL_ADDRESS"],
        namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
        plugins=[ManagedAgentsPlugin(settings)],
    )
    if "brain" in settings.roles:
        worker = Worker(
            client, task_queue=queue, workflows=[InvoiceReview, FollowUp, MistypedRequest], activities=[fetch_invoice]
        )
    else:
        worker = Worker(client, task_queue=sandbox_shared_queue(queue))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with worker:
        print("worker started", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)  # Temporal's bridge threads can abort at interpreter exit (sdk-python#300)
