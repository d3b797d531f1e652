"""The team's own workflow and activity: review an invoice with a graded agent session."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

from managed_agents import run_session

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
