"""The bundled mock model's behaviour for the offline demo: a tiny scripted engineer.

It reads the conversation it is sent (like a real model would) and answers step by step: write a
script, run it, report the real output the tool returned. Only for demos without an API key.

Dream requests (a forced ``record_observations`` / ``write_memory_store`` call) go to the
rule-following dreamer (``managed_agents.testing.dreamer``), so ``managed-agents dream create``
against the demo's worker runs end to end. The dreamer learns only from lines of the form
``remember: <topic> = <value>``: a dream over the demo's fib session completes with nothing learnt
(``/facts.md`` empty); give a session such a line (e.g. a user message "remember: language =
python") to see it curated.
"""

from __future__ import annotations

from typing import Any

from managed_agents.testing.dreamer import dreamer_responder, is_dream_request
from managed_agents.testing.mock_claude import Turn

DEMO_TASK = (
    "Write a Python script fib.py that prints the first 10 Fibonacci numbers on one line, "
    "run it, and tell me what it printed."
)

FIB_SCRIPT = """\
def fib(n):
    a, b = 0, 1
    for _ in range(n):
        yield a
        a, b = b, a + b


print(" ".join(str(x) for x in fib(10)))
"""


def demo_responder(body: dict[str, Any]) -> Turn:
    if is_dream_request(body):
        # The scripted engineer's tool calls are no answer to a forced tool call: the pipeline would
        # send them back as a correction, and the API refuses a tool_use left without its result.
        return dreamer_responder(body)
    messages = body.get("messages", [])
    steps = sum(1 for m in messages if m.get("role") == "assistant")
    if steps == 0:
        return Turn.tool_use(
            "write", {"file_path": "fib.py", "content": FIB_SCRIPT}, text="I'll write the script first."
        )
    if steps == 1:
        return Turn.tool_use("bash", {"command": "python3 fib.py"}, text="Now let me run it.")
    output = _last_tool_output(messages).strip()
    return Turn.text(f"fib.py ran and printed: {output}")


def _last_tool_output(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        for block in message.get("content", []):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                content = block.get("content")
                if isinstance(content, list):
                    return "".join(b.get("text", "") for b in content if isinstance(b, dict))
                return str(content)
    return ""
