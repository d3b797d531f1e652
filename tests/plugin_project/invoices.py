"""The team's own workflow and activity: review an invoice with a graded agent session."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

from managed_agents import run_session, start_session

RUBRIC = "- report.md exists\n- it states the invoice total"


@activity.defn
async def fetch_invoice(invoice_id: str) -> str:
    """Stands in for the team's billing system."""
    return f"Invoice {invoice_id}: 3 items, total 42 EUR"


@workflow.defn
class InvoiceReview:
    @workflow.run
    async def run(self, invoice_id: str) -> dict[str, str]:
        invoice = await workflow.execute_activity(
            fetch_invoice, invoice_id, start_to_close_timeout=timedelta(seconds=10)
        )
        session = await run_session(
            {
                "agent": {
                    "name": "invoice-reviewer",
                    "model": "claude-sonnet-4-6",
                    "tools": [{"type": "agent_toolset_20260401"}],
                },
                "initial_events": [
                    {
                        "type": "user.define_outcome",
                        "description": f"Review {invoice_id} and write report.md. {invoice}",
                        "rubric": {"type": "text", "content": RUBRIC},
                    }
                ],
            },
            id=f"review-{invoice_id}",
        )
        verdict = session.outcome_evaluations[-1]
        return {"session_id": session.id, "verdict": verdict.result, "final_message": session.final_message or ""}


AGENT = {"name": "assistant", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]}


@workflow.defn
class FollowUp:
    """A session started as a child, sent a second message while it works, then awaited."""

    @workflow.run
    async def run(self, topic: str) -> dict[str, str]:
        session = await start_session(
            {"agent": AGENT, "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": topic}]}]}
        )
        await session.send_message(f"{topic}: and a follow-up")
        result = await session.result()
        return {"session_id": session.id, "final_message": result.final_message or ""}


@workflow.defn
class MistypedRequest:
    """A session body without a model: the workflow fails, naming the field."""

    @workflow.run
    async def run(self) -> str:
        await run_session({"agent": {"name": "no-model"}})
        return "never"
