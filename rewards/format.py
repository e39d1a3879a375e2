"""Format rewards: does the completion follow `<think>…</think><answer>…</answer>`?"""

from __future__ import annotations

import re

from ladder.rewards.text import completion_text

FULL = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)
ANSWER_ONLY = re.compile(r"<answer>.*?</answer>", re.DOTALL)


def format_reward(completions, **kwargs) -> list[float]:
    """1.0 for exactly <think>…</think><answer>…</answer> (whitespace allowed), 0.5 for an answer
    block without that shape, 0.0 otherwise."""
    out = []
    for c in completions:
        text = completion_text(c)
        out.append(1.0 if FULL.match(text) else 0.5 if ANSWER_ONLY.search(text) else 0.0)
    return out


def length_penalty(completions, max_chars: int = 400, **kwargs) -> list[float]:
    """A gentle push towards short answers: -0.1 * min(1, characters / max_chars)."""
    return [-0.1 * min(1.0, len(completion_text(c)) / max_chars) for c in completions]
