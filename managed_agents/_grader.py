"""The outcome grader's prompt and answer format.

The grader runs in a fresh context: it sees the outcome description, the rubric and the
deliverables (the agent's final message and the files in its workspace), never the agent's
reasoning, tool calls or transcript, so the agent's choices cannot sway it. It answers through a
forced tool call whose input is validated as a ``GraderVerdict``.
"""

from __future__ import annotations

from typing import Any

GRADE_TOOL = "submit_grade"

GRADER_SYSTEM = """\
You are an exacting, impartial grader. You receive a task description, a rubric, and the \
deliverables an agent produced: its final message and the files in its workspace. You do not see \
how the agent worked, and you must not guess at it: judge only what is delivered.

Grade each rubric criterion independently: passed or not, with a concrete reason that cites the \
deliverables. Then give the verdict:
- "satisfied" only if every criterion passed;
- "needs_revision" if any criterion failed; the explanation must say precisely what to change;
- "rubric_not_applicable" only if the rubric cannot be applied to these deliverables at all (for \
example it contradicts the task description, or grades something the task never asked for).
Answer by calling the submit_grade tool exactly once."""

GRADE_TOOL_DEFINITION: dict[str, Any] = {
    "name": GRADE_TOOL,
    "description": "Submit the grade: one entry per rubric criterion, then the overall verdict.",
    "input_schema": {
        "type": "object",
        "properties": {
            "criteria": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "criterion": {"type": "string", "description": "The rubric criterion, briefly"},
                        "passed": {"type": "boolean"},
                        "reason": {"type": "string", "description": "Why, citing the deliverables"},
                    },
                    "required": ["criterion", "passed", "reason"],
                },
            },
            "verdict": {"type": "string", "enum": ["satisfied", "needs_revision", "rubric_not_applicable"]},
            "explanation": {
                "type": "string",
                "description": "For needs_revision: exactly what must change. Otherwise: why.",
            },
        },
        "required": ["criteria", "verdict", "explanation"],
    },
}


def grader_prompt(
    description: str, rubric: str, final_message: str | None, files: list[tuple[str, str]], omitted: int
) -> str:
    parts = [
        "<task_description>",
        description,
        "</task_description>",
        "<rubric>",
        rubric,
        "</rubric>",
        "<agent_final_message>",
        final_message or "(the agent gave no final message)",
        "</agent_final_message>",
        "<workspace_files>",
    ]
    if not files:
        parts.append("(the workspace has no files)")
    for path, body in files:
        parts += [f'<file path="{path}">', body, "</file>"]
    if omitted:
        parts.append(f"({omitted} more files were left out by size limits)")
    parts.append("</workspace_files>")
    return "\n".join(parts)


def revision_request(explanation: str, criteria: list[dict[str, Any]], iteration: int, max_iterations: int) -> str:
    failing = [c for c in criteria if not c.get("passed")]
    lines = [
        f"An independent grader reviewed your work (evaluation {iteration + 1} of at most {max_iterations}) "
        "and it needs revision.",
        "",
        explanation,
    ]
    if failing:
        lines += ["", "Failing criteria:"] + [f"- {c['criterion']}: {c['reason']}" for c in failing]
    lines += ["", "Revise the deliverables to meet every criterion, then reply with a short summary."]
    return "\n".join(lines)


def outcome_kickoff(description: str, rubric: str) -> str:
    return (
        "Produce the following outcome. When you are done, reply with a short summary of what you delivered; "
        "an independent grader will then check your deliverables (your final message and the files in the "
        f"workspace) against the rubric.\n\n<task>\n{description}\n</task>\n\n<rubric>\n{rubric}\n</rubric>"
    )


def acknowledgment_request(best_iteration: int | None, explanation: str | None) -> str:
    best = (
        f" The best-scoring iteration was evaluation {best_iteration + 1}; a copy of its deliverables is kept."
        if best_iteration is not None
        else ""
    )
    return (
        "The evaluation budget for this outcome is exhausted and the rubric is still not fully met."
        f"{best} Last feedback: {explanation or '(none)'}\n"
        "Do not continue working. Reply with a brief acknowledgment: what is done and what is still missing."
    )
