"""A price on tool calls: what makes RL learn *when* to call a tool, not only to call it.

With tools that are always right, calling always pays as much as answering well, and RL learns to call on
everything, even what the model knows (measured on the tiny tool ladder: bench/RESULTS.md, "Tools in
rollouts"). A small cost per call, well below what a right answer is worth, makes a call pay only where
the model's own answer would often be wrong.
"""

from __future__ import annotations


def calls_in(completion) -> int:
    """Tool calls the model made in a completion (a message list; a plain-text one makes none)."""
    if not isinstance(completion, list):
        return 0
    return sum(len(m.get("tool_calls") or []) for m in completion
               if isinstance(m, dict) and m.get("role", "assistant") == "assistant")


def tool_cost(completions, *, cost: float = 0.1, **kwargs) -> list[float]:
    """-cost for each tool call (0 for none). Never positive: there is nothing to gain by gaming it but
    calling less, which is what it asks for."""
    return [-cost * calls_in(c) for c in completions]
