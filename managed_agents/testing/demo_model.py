"""The bundled mock model's behaviour for the offline demo: a tiny scripted engineer.

It reads the conversation it is sent (like a real model would) and answers step by step: write a
script, run it, report the real output the tool returned. Only for demos without an API key.
"""

from __future__ import annotations

from typing import Any

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
